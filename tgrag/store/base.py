"""The ``GraphStore`` protocol: the system of record behind tgrag.

Kept small on purpose, in plain rows and ids, so a PostgreSQL backend is a matter of SQL. Every
index (faiss, BM25, the in-memory catalog) is derived from what a store holds and can be rebuilt
from it. Writes happen inside ``transaction()``; one ingest batch is one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np

from ..model import Chunk, Document, Entity, EntityType, Fact, TimeNode
from ..registry import Registry


@dataclass(frozen=True)
class NewFact:
    """A fact ready to store: entities resolved, keyed for merging."""

    key: str  # identity: same subject, relation, object and valid time -> same key
    subject_id: int
    relation: str
    object: str
    start: int  # ordinal days, half-open, with MIN_ORDINAL / MAX_ORDINAL for unbounded sides
    end: int
    granularity: str
    time_label: str
    text: str
    value: float | None
    unit: str | None
    confidence: float
    entity_ids: tuple[int, ...]
    node_ids: tuple[str, ...]  # time nodes the fact hangs under
    projected: bool = False  # its valid time starts after its document was written: a forecast


@dataclass(frozen=True)
class FactRow:
    """The columns the in-memory catalog and indexes are built from."""

    id: int
    subject_id: int
    text: str
    start: int
    end: int
    granularity: str
    time_label: str
    first_ingested_at: float  # unix seconds
    doc_id: str  # the first source's document
    chunk_num: int  # the first source's chunk
    confidence: float
    entity_ids: tuple[int, ...]
    projected: bool = False


@dataclass(frozen=True)
class DocumentRecord:
    id: str
    key: str | None
    subject: str | None
    source: str | None
    date: str | None
    period: str | None
    ingested_at: float
    chunk_count: int


@dataclass(frozen=True)
class DeleteOutcome:
    doc_id: str
    facts_removed: tuple[int, ...]
    facts_kept: tuple[int, ...]  # facts that lost this source but still have another
    entities_removed: tuple[int, ...]
    chunks_removed: tuple[int, ...]
    nodes_dirtied: tuple[str, ...]


class GraphStore(Protocol):
    path: Path

    def close(self) -> None: ...
    def transaction(self) -> AbstractContextManager[None]: ...
    def generation(self) -> int: ...
    def integrity_check(self) -> str: ...

    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...

    # documents and chunks
    def known_documents(self, ids: Iterable[str]) -> set[str]: ...
    def document_id_for_key(self, key: str) -> str | None: ...
    def add_document(
        self, doc: Document, chunks: Sequence[Chunk], ingested_at: datetime
    ) -> dict[str, int]: ...
    def document_text(self, doc_id: str) -> str | None: ...
    def documents(self) -> list[DocumentRecord]: ...
    def chunk_rows(self, nums: Sequence[int] | None = None) -> list[tuple[int, Chunk]]: ...
    def delete_document(self, doc_id: str) -> DeleteOutcome | None: ...

    # entities
    def add_entity(self, name: str, type: EntityType, aliases: Sequence[str]) -> int: ...
    def add_aliases(self, entity_id: int, aliases: Sequence[str]) -> None: ...
    def entity_ids_for_keys(self, keys: Iterable[str]) -> dict[str, int]: ...
    def entities(self, ids: Sequence[int] | None = None) -> list[Entity]: ...

    # facts
    def upsert_fact(
        self, fact: NewFact, doc_id: str, chunk_num: int, ingested_at: datetime
    ) -> tuple[int, bool]: ...
    def facts(self, ids: Sequence[int]) -> list[Fact]: ...
    def fact_rows(self, ids: Sequence[int] | None = None) -> Iterator[FactRow]: ...

    # time hierarchy
    def add_time_nodes(self, nodes: Sequence[TimeNode]) -> None: ...
    def mark_dirty(self, node_ids: Iterable[str]) -> None: ...
    def time_nodes(self, ids: Sequence[str] | None = None, dirty_only: bool = False) -> list[TimeNode]: ...
    def node_fact_ids(self, node_id: str) -> list[int]: ...
    def time_node_nums(self) -> dict[str, int]: ...
    def set_summaries(self, summaries: dict[str, tuple[str, tuple[int, ...]]]) -> dict[str, int]: ...

    # vectors, the source from which vector indexes are rebuilt
    def put_vectors(
        self, kind: str, ids: Sequence[int], vectors: np.ndarray, texts: Sequence[str] = ()
    ) -> None: ...
    def get_vectors(self, kind: str, ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]: ...
    def delete_vectors(self, kind: str, ids: Sequence[int]) -> None: ...
    def vectors_by_text(self, kind: str, text_hashes: Sequence[str]) -> dict[str, np.ndarray]: ...

    def stats(self) -> dict[str, int]: ...


STORES: Registry[GraphStore] = Registry("store")
