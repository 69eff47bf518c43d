"""Crash-safe files for the bank: atomic replacement and checksummed array containers.

A state file is ``MAGIC | u64 header length | sha256(header) | header (JSON) | payloads``.
The header lists every array (name, dtype, shape, offset, nbytes, sha256 of its bytes), so a
truncated or altered file is caught on load with a :class:`BankFileError`, never read as
garbage. Files are written to a temporary name in the same folder, fsynced, then renamed over
the old one, so a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"TGRAGMB1"
_PREFIX = struct.Struct("<8sQ32s")
_ALIGN = 64


class BankFileError(ValueError):
    """A bank file is missing, truncated, corrupted or of another format."""


def fsync_dir(folder: Path) -> None:
    # Make the rename itself durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, chunks: Iterable[bytes | memoryview]) -> None:
    """Write ``chunks`` to ``path`` atomically (temp file in the same folder, fsync, replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def byte_view(arr: np.ndarray) -> memoryview:
    """The raw bytes of an array (C order), without a copy when it is already contiguous."""
    return np.ascontiguousarray(arr).reshape(-1).view(np.uint8).data


def sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def write_state(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Atomically write ``meta`` (JSON-able) and named arrays to one checksummed file."""
    entries: list[dict[str, Any]] = []
    payloads: list[memoryview] = []
    offset = 0
    for name, arr in arrays.items():
        data = np.ascontiguousarray(arr)
        view = byte_view(data)
        pad = (-offset) % _ALIGN
        offset += pad
        entries.append(
            {
                "name": name,
                "dtype": data.dtype.str,
                "shape": list(data.shape),
                "offset": offset,
                "nbytes": data.nbytes,
                "sha256": sha256(view),
                "pad": pad,
            }
        )
        payloads.append(view)
        offset += data.nbytes
    header = json.dumps({"meta": meta, "arrays": entries}, sort_keys=True).encode()
    prefix = _PREFIX.pack(MAGIC, len(header), hashlib.sha256(header).digest())

    def chunks() -> Iterable[bytes | memoryview]:
        yield prefix
        yield header
        for entry, view in zip(entries, payloads, strict=True):
            yield bytes(int(entry["pad"]))
            yield view

    atomic_write(path, chunks())


def read_state(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a file written by :func:`write_state`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise BankFileError(f"{path}: no bank state file") from exc
    except OSError as exc:
        raise BankFileError(f"{path}: cannot read: {exc}") from exc
    if len(raw) < _PREFIX.size:
        raise BankFileError(f"{path}: truncated ({len(raw)} bytes, not even a header)")
    magic, hlen, hsum = _PREFIX.unpack_from(raw)
    if magic != MAGIC:
        raise BankFileError(f"{path}: not a memory bank file (bad magic {magic!r})")
    start = _PREFIX.size
    if len(raw) < start + hlen:
        raise BankFileError(f"{path}: truncated inside the header")
    header = raw[start : start + hlen]
    if hashlib.sha256(header).digest() != hsum:
        raise BankFileError(f"{path}: header checksum mismatch (file corrupted)")
    try:
        doc = json.loads(header)
        meta, entries = doc["meta"], doc["arrays"]
    except (ValueError, KeyError) as exc:  # cannot happen unless written by something else
        raise BankFileError(f"{path}: unreadable header: {exc}") from exc
    body = memoryview(raw)[start + hlen :]
    arrays: dict[str, np.ndarray] = {}
    for e in entries:
        lo, hi = e["offset"], e["offset"] + e["nbytes"]
        if hi > len(body):
            raise BankFileError(
                f"{path}: truncated: array {e['name']!r} needs bytes up to {hi}, file has {len(body)}"
            )
        view = body[lo:hi]
        if sha256(view) != e["sha256"]:
            raise BankFileError(f"{path}: checksum mismatch in array {e['name']!r} (file corrupted)")
        arrays[e["name"]] = np.frombuffer(view, dtype=np.dtype(e["dtype"])).reshape(e["shape"]).copy()
    if len(body) != (entries[-1]["offset"] + entries[-1]["nbytes"] if entries else 0):
        raise BankFileError(f"{path}: unexpected trailing bytes (file corrupted)")
    return meta, arrays
