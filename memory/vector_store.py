"""Exact float32 vectors on disk: one append-only file, read through a memory map.

Rows are never rewritten (a removed vector's row stays as dead space), so a saved bank state
that names ``rows`` stays valid while later appends go past it. Integrity is checked per block
of rows with sha256; a save hashes only the blocks completed since the previous one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .persist import BankFileError, byte_view, fsync_dir, sha256

FILE = "vectors.f32"
BLOCK_ROWS = 4096


class VectorStore:
    """Append-only (rows, dim) float32 matrix in ``folder / vectors.f32``."""

    def __init__(self, folder: Path, dim: int) -> None:
        self.folder = Path(folder)
        self.path = self.folder / FILE
        self.dim = dim
        self.rows = 0
        self._hashes: list[str] = []  # sha256 of each complete block, in order
        self._map: np.memmap[Any, np.dtype[np.float32]] | None = None

    @property
    def row_bytes(self) -> int:
        return 4 * self.dim

    @classmethod
    def create(cls, folder: Path, dim: int) -> VectorStore:
        store = cls(folder, dim)
        store.folder.mkdir(parents=True, exist_ok=True)
        with open(store.path, "wb") as f:  # a fresh bank starts from an empty file
            os.fsync(f.fileno())
        fsync_dir(store.folder)
        return store

    @classmethod
    def open(cls, folder: Path, dim: int, manifest: dict[str, Any], verify: bool = True) -> VectorStore:
        """Open the file a saved state describes; rows appended after that save are dropped."""
        store = cls(folder, dim)
        rows = int(manifest["rows"])
        if int(manifest["block_rows"]) != BLOCK_ROWS or int(manifest["dim"]) != dim:
            raise BankFileError(f"{store.path}: vector file layout does not match this version")
        try:
            size = store.path.stat().st_size
        except FileNotFoundError as exc:
            raise BankFileError(f"{store.path}: exact vector file is missing") from exc
        need = rows * store.row_bytes
        if size < need:
            raise BankFileError(f"{store.path}: truncated: {size} bytes, the saved state needs {need}")
        if size > need:
            os.truncate(store.path, need)  # unreferenced rows from after the last save
        store.rows = rows
        store._hashes = list(manifest["blocks"])
        if len(store._hashes) != rows // BLOCK_ROWS:
            raise BankFileError(f"{store.path}: block checksum list does not match {rows} rows")
        if verify:
            for b, want in enumerate(store._hashes):
                if store._block_hash(b * BLOCK_ROWS, (b + 1) * BLOCK_ROWS) != want:
                    raise BankFileError(
                        f"{store.path}: checksum mismatch in rows of block {b} (file corrupted)"
                    )
            tail = store._block_hash(len(store._hashes) * BLOCK_ROWS, rows)
            if tail != manifest["tail"]:
                raise BankFileError(f"{store.path}: checksum mismatch in the last rows (file corrupted)")
        return store

    def _matrix(self) -> np.ndarray:
        if self.rows == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        if self._map is None or self._map.shape[0] != self.rows:
            self._map = np.memmap(self.path, dtype=np.float32, mode="r", shape=(self.rows, self.dim))
        return self._map

    def _block_hash(self, lo: int, hi: int) -> str:
        return sha256(byte_view(self._matrix()[lo:hi]))

    def append(self, x: np.ndarray) -> np.ndarray:
        """Append rows; returns their row numbers."""
        data = np.ascontiguousarray(x, dtype=np.float32)
        with open(self.path, "ab") as f:
            f.write(byte_view(data))
        first = self.rows
        self.rows += len(data)
        self._map = None
        return np.arange(first, self.rows, dtype=np.int64)

    def get(self, rows: np.ndarray) -> np.ndarray:
        """Rows (in the order asked) as a float32 array; reads each distinct row once, in file order."""
        if len(rows) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        if hi - lo == len(rows) and (len(rows) == 1 or bool((np.diff(rows) == 1).all())):
            return np.array(self._matrix()[lo:hi], dtype=np.float32)  # a run of rows: one slice
        uniq, inverse = np.unique(rows, return_inverse=True)
        return np.asarray(self._matrix()[uniq], dtype=np.float32)[inverse.ravel()]

    def sync(self) -> dict[str, Any]:
        """fsync the file and return its manifest (row count and block checksums)."""
        with open(self.path, "ab") as f:
            os.fsync(f.fileno())
        while len(self._hashes) < self.rows // BLOCK_ROWS:
            b = len(self._hashes)
            self._hashes.append(self._block_hash(b * BLOCK_ROWS, (b + 1) * BLOCK_ROWS))
        tail = self._block_hash(len(self._hashes) * BLOCK_ROWS, self.rows)
        return {
            "rows": self.rows,
            "dim": self.dim,
            "block_rows": BLOCK_ROWS,
            "blocks": list(self._hashes),
            "tail": tail,
        }

    def copy_to(self, folder: Path) -> None:
        """Copy the first ``rows`` rows into ``folder`` atomically (for save to another place)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{FILE}.tmp"
        with open(self.path, "rb") as src, open(tmp, "wb") as dst:
            remaining = self.rows * self.row_bytes
            while remaining > 0:
                buf = src.read(min(remaining, 1 << 24))
                if not buf:
                    raise BankFileError(f"{self.path}: shorter than its {self.rows} rows")
                dst.write(buf)
                remaining -= len(buf)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, folder / FILE)
        fsync_dir(folder)
