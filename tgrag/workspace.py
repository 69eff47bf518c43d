"""A store opened for use: the system of record, its derived indexes, and the models that feed it.

Ingest, summaries and retrieval all work on a ``Workspace``; the SDK creates one per store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .config import DEFAULT_VECTOR_INDEX, Config
from .embed import Embedder
from .errors import StoreConfigMismatch
from .extract import Extractor
from .index.derived import DerivedIndexes
from .store.base import GraphStore
from .store.lock import WriterLock

log = logging.getLogger(__name__)

INDEX_DIR = "index"


@dataclass
class Workspace:
    path: Path
    config: Config
    store: GraphStore
    embedder: Embedder
    extractor: Extractor
    lock: WriterLock
    indexes: DerivedIndexes

    @classmethod
    def open(
        cls, path: Path, config: Config, store: GraphStore, embedder: Embedder, extractor: Extractor
    ) -> Workspace:
        recorded = store.get_meta("embedder")
        if recorded is not None and recorded != embedder.name:
            raise StoreConfigMismatch(
                f"store {path} was built with embedder {recorded!r}, not {embedder.name!r}; "
                "open it with the same embedder or ingest into a new store"
            )
        indexes = _open_indexes(store, path, embedder, config)
        lock = WriterLock(path / "write.lock", config.lock_timeout_s)
        return cls(path, config, store, embedder, extractor, lock, indexes)

    def refresh_if_stale(self) -> None:
        """Another process may have written since we loaded: reload the derived indexes."""
        if self.store.generation() != self.indexes.generation:
            self.reload()

    def reload(self) -> None:
        self.indexes = _open_indexes(self.store, self.path, self.embedder, self.config)

    def save_indexes(self) -> None:
        self.indexes.save(self.path / INDEX_DIR, self.store.generation())

    def record_choices(self) -> None:
        """Inside a write: the embedder the store is built with, and the vector index it runs on
        (later opens that name none use it)."""
        if self.store.get_meta("embedder") is None:
            self.store.set_meta("embedder", self.embedder.name)
            self.store.set_meta("dim", str(self.embedder.dim))
        if self.store.get_meta("vector_index") != self.indexes.vector_spec:
            self.store.set_meta("vector_index", self.indexes.vector_spec)


def vector_index_spec(config: Config, store: GraphStore) -> str:
    """The configured vector index, else the one the store was last written with, else faiss flat."""
    return config.vector_index or store.get_meta("vector_index") or DEFAULT_VECTOR_INDEX


def _open_indexes(store: GraphStore, path: Path, embedder: Embedder, config: Config) -> DerivedIndexes:
    return DerivedIndexes.open(store, path / INDEX_DIR, embedder.dim, vector_index_spec(config, store))
