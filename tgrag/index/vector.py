"""Vector indexes behind one protocol. The default is exact inner product (faiss flat)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from ..fsutil import atomic_write
from ..registry import Registry


class VectorIndex(Protocol):
    dim: int

    def __len__(self) -> int: ...
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...
    def remove(self, ids: np.ndarray) -> None: ...
    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n_queries, k); missing results have id -1. ``allowed`` restricts ids."""
        ...

    def save(self, path: Path) -> None: ...


VECTOR_INDEXES: Registry[VectorIndex] = Registry("vector index")


def _bitmap_selector(allowed: np.ndarray) -> tuple[faiss.IDSelector, np.ndarray]:
    """A faiss selector over non-negative ids; the bitmap must outlive the search call."""
    size = int(allowed.max()) + 1 if len(allowed) else 1
    mask = np.zeros(size, dtype=bool)
    mask[allowed] = True
    bitmap = np.packbits(mask, bitorder="little")
    # faiss reads the size in bytes; ids past the end are rejected.
    return faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)), bitmap


class FaissIndex:
    """A faiss index wrapped with our ids (``IndexIDMap2``), filtering and atomic persistence."""

    def __init__(self, index: faiss.Index) -> None:
        self._index = index
        self.dim = index.d

    @classmethod
    def flat(cls, dim: int) -> FaissIndex:
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))

    @classmethod
    def load(cls, path: Path) -> FaissIndex:
        return cls(faiss.read_index(str(path)))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
            )

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))  # type: ignore[arg-type]  # faiss wraps arrays

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self)))
        if len(self) == 0 or (allowed is not None and len(allowed) == 0):
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if allowed is None:
            scores, ids = self._index.search(queries, k)
        else:
            selector, _keep_alive = _bitmap_selector(np.asarray(allowed, dtype=np.int64))
            params = faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]  # the stubs miss kwargs
            scores, ids = self._index.search(queries, k, params=params)
        return scores, ids

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (all must be present)."""
        if len(ids) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self._index.reconstruct_batch(np.asarray(ids, dtype=np.int64))

    def save(self, path: Path) -> None:
        atomic_write(path, lambda tmp: faiss.write_index(self._index, tmp))


@VECTOR_INDEXES.register("faiss-flat")
def _flat(arg: str | None, *, dim: int, path: Path | None = None, **_: object) -> VectorIndex:
    """An empty exact index, or the one saved at ``path``."""
    return FaissIndex.load(path) if path is not None else FaissIndex.flat(dim)
