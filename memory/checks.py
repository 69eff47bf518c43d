"""Input validation: bad input fails here with a ValueError that names the problem."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_vectors(x: Any, dim: int, name: str = "vectors") -> np.ndarray:
    """``x`` as a C-contiguous float32 (n, dim) array of finite values."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} must be a numeric (n, {dim}) array: {exc}") from exc
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}), got {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{name} contain NaN or infinite values (or overflow float32) in {len(rows)} row(s), "
            f"first row {int(rows[0])}"
        )
    return out


def as_ids(ids: Any, name: str = "ids") -> np.ndarray:
    """``ids`` as a 1-D int64 array of distinct values (none of them -1, the 'missing' id)."""
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D integer array, got shape {arr.shape}")
    if arr.size and (arr.dtype.kind not in "iu" or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} do not fit in int64")
    out = arr.astype(np.int64, copy=False)
    if (out == -1).any():
        raise ValueError(f"{name} must not contain -1: it marks a missing search result")
    if out.size > 1:
        srt = np.sort(out)
        dup = srt[1:] == srt[:-1]
        if dup.any():
            raise ValueError(f"{name} contain duplicates, e.g. {int(srt[1:][dup][0])}")
    return out


def as_k(k: Any, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"{name} must be a positive integer, got {k!r}")
    return int(k)
