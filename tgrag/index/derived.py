"""Everything derived from the store, kept in memory and persisted beside it.

On open, the files in ``<store>/index/`` are used when their manifest names the store's current
generation; otherwise (missing, stale after a crash, unreadable) they are rebuilt from SQLite,
which holds every vector and text. Writers save them after each ingest or delete.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import DEFAULT_VECTOR_INDEX
from ..fsutil import atomic_write_bytes
from ..model import EntityType, TimeInterval, TimeNode
from ..store.base import FactRow, GraphStore
from ..text import fold, name_key, with_subject
from . import compressed  # noqa: F401  (registers the "codebook" vector index)
from .catalog import FactCatalog
from .lexical import BM25Index, KeyedBM25
from .vector import VECTOR_INDEXES, VectorIndex

log = logging.getLogger(__name__)

KINDS = ("fact", "entity", "chunk", "node")
MANIFEST = "manifest.json"
FORMAT = 1


@dataclass(frozen=True)
class NodeEntry:
    num: int
    node: TimeNode


class DerivedIndexes:
    def __init__(self, dim: int, vector_spec: str = DEFAULT_VECTOR_INDEX) -> None:
        self.dim = dim
        self.vector_spec = vector_spec
        self.catalog = FactCatalog()
        self.lexical = BM25Index()
        self.chunk_lexical = KeyedBM25()  # passages by chunk number: context for the facts they hold
        self.vectors: dict[str, VectorIndex] = {k: VECTOR_INDEXES.create(vector_spec, dim=dim) for k in KINDS}
        self.entity_names: dict[int, str] = {}
        self.entity_types: dict[int, EntityType] = {}
        self.alias_keys: dict[str, int] = {}  # name_key(alias) -> entity id
        self.max_alias_words = 1
        self.nodes: dict[int, NodeEntry] = {}
        self.documents: dict[str, str | None] = {}  # document id -> source shown in citations
        self.generation = -1

    # ---- open / rebuild / save ------------------------------------------------------------------
    @classmethod
    def open(
        cls, store: GraphStore, folder: Path, dim: int, vector_spec: str = DEFAULT_VECTOR_INDEX
    ) -> DerivedIndexes:
        generation = store.generation()
        index = cls(dim, vector_spec)
        manifest = _read_manifest(folder)
        expected = {"generation": generation, "dim": dim, "vector_index": vector_spec}
        if manifest and all(manifest.get(k) == v for k, v in expected.items()):
            try:
                index._load_files(store, folder)
                index.generation = generation
                return index
            except Exception as exc:  # any unreadable file means: rebuild, the store has everything
                log.warning("index files in %s are unreadable (%s); rebuilding from the store", folder, exc)
                index = cls(dim, vector_spec)
        elif manifest:
            log.info(
                "index files in %s are stale (generation %s, store %s); rebuilding",
                folder,
                manifest.get("generation"),
                generation,
            )
        index.rebuild(store)
        index.generation = generation
        return index

    def rebuild(self, store: GraphStore) -> None:
        self.catalog = FactCatalog()
        self.lexical = BM25Index()
        self._load_small(store)
        rows = list(store.fact_rows())
        self.catalog.add(rows)
        self.lexical.add([self.indexed_text(r) for r in rows])
        self.chunk_lexical = KeyedBM25()
        subjects = {d.id: d.subject for d in store.documents()}
        chunks = store.chunk_rows()
        self.add_chunks(
            [num for num, _ in chunks], [with_subject(subjects.get(c.doc_id), c.text) for _, c in chunks]
        )
        for kind in KINDS:
            ids, vecs = store.get_vectors(kind)
            self.vectors[kind] = VECTOR_INDEXES.create(self.vector_spec, dim=self.dim)
            self.vectors[kind].add(ids, vecs)

    def _load_files(self, store: GraphStore, folder: Path) -> None:
        lexical = BM25Index.load(folder / "lexical.npz")
        with np.load(folder / "rows.npz") as data:
            row_ids = data["row_ids"]
        by_id = {r.id: r for r in store.fact_rows()}
        ordered: list[FactRow] = []
        dead: list[int] = []
        for i, fid in enumerate(row_ids):
            row = by_id.pop(int(fid), None)
            if row is None:  # a removed fact keeps its row, masked, so rows stay aligned with BM25
                row = FactRow(-1 - i, 0, "", 0, 1, "unknown", "", 0.0, "", -1, 0.0, ())
                dead.append(row.id)
            ordered.append(row)
        if by_id:
            raise ValueError(f"{len(by_id)} facts are missing from the index files")
        if len(lexical) != len(ordered):
            raise ValueError("lexical index and row map disagree")
        self.catalog.add(ordered)
        self.catalog.remove(dead)
        self.lexical = lexical
        self.chunk_lexical = KeyedBM25.load(folder / "chunks_lexical.npz")
        for kind in KINDS:
            loaded = VECTOR_INDEXES.create(self.vector_spec, dim=self.dim, path=folder / f"{kind}.faiss")
            if loaded.dim != self.dim:
                raise ValueError(f"{kind}.faiss has dimension {loaded.dim}, expected {self.dim}")
            self.vectors[kind] = loaded
        self._load_small(store)
        if len(self.vectors["fact"]) != self.catalog.alive_count:
            raise ValueError("fact vectors and fact rows disagree")

    def _load_small(self, store: GraphStore) -> None:
        """Entities and time nodes are small: always read fresh from the store."""
        self.entity_names.clear()
        self.entity_types.clear()
        self.alias_keys.clear()
        for e in store.entities():
            self.add_entity(e.id, e.name, e.type, e.aliases)
        self.documents = {d.id: d.source or d.subject for d in store.documents()}
        self.nodes.clear()
        nums = store.time_node_nums()
        for node in store.time_nodes():
            self.nodes[nums[node.id]] = NodeEntry(nums[node.id], node)

    def save(self, folder: Path, generation: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for kind in KINDS:
            self.vectors[kind].save(folder / f"{kind}.faiss")
        self.lexical.save(folder / "lexical.npz")
        self.chunk_lexical.save(folder / "chunks_lexical.npz")
        row_ids = np.where(self.catalog.alive, self.catalog.ids, -1)
        buf = _npz_bytes(row_ids=row_ids)
        atomic_write_bytes(folder / "rows.npz", buf)
        manifest = {
            "format": FORMAT,
            "generation": generation,
            "dim": self.dim,
            "vector_index": self.vector_spec,
        }
        atomic_write_bytes(folder / MANIFEST, json.dumps(manifest).encode())
        self.generation = generation

    # ---- incremental updates --------------------------------------------------------------------
    def indexed_text(self, row: FactRow) -> str:
        return with_subject(self.entity_names.get(row.subject_id), row.text)

    def add_facts(self, rows: list[FactRow], vectors: np.ndarray) -> None:
        self.catalog.add(rows)
        self.lexical.add([self.indexed_text(r) for r in rows])
        self.vectors["fact"].add(np.array([r.id for r in rows], dtype=np.int64), vectors)

    def add_chunks(self, nums: list[int], indexed_texts: list[str]) -> None:
        self.chunk_lexical.add(nums, indexed_texts)

    def remove_chunks(self, nums: list[int]) -> None:
        self.chunk_lexical.remove(nums)
        self.vectors["chunk"].remove(np.array(nums, dtype=np.int64))

    def remove_facts(self, fact_ids: list[int]) -> None:
        rows = self.catalog.remove(fact_ids)
        self.lexical.remove(rows)
        self.vectors["fact"].remove(np.array(fact_ids, dtype=np.int64))

    def add_entity(self, entity_id: int, name: str, type: EntityType, aliases: tuple[str, ...] = ()) -> None:
        self.entity_names[entity_id] = name
        self.entity_types[entity_id] = type
        self.add_aliases(entity_id, (name, *aliases))

    def add_aliases(self, entity_id: int, aliases: tuple[str, ...] | list[str]) -> None:
        for alias in aliases:
            key = name_key(alias)
            if key and key not in self.alias_keys:
                self.alias_keys[key] = entity_id
                self.max_alias_words = max(self.max_alias_words, key.count(" ") + 1)

    def remove_entities(self, entity_ids: tuple[int, ...]) -> None:
        gone = set(entity_ids)
        for eid in gone:
            self.entity_names.pop(eid, None)
            self.entity_types.pop(eid, None)
        for key in [k for k, v in self.alias_keys.items() if v in gone]:
            del self.alias_keys[key]
        self.vectors["entity"].remove(np.array(sorted(gone), dtype=np.int64))

    def set_node(self, num: int, node: TimeNode) -> None:
        self.nodes[num] = NodeEntry(num, node)

    def remove_node(self, num: int) -> None:
        self.nodes.pop(num, None)

    # ---- lookups --------------------------------------------------------------------------------
    def entities_in(self, text: str) -> list[tuple[int, str]]:
        """Store entities named in ``text`` (longest alias first), as (id, the words that named it).

        A one-word alias counts only where the text capitalises it: "Bill" the person is named in
        "Thanks, Bill" but not in "book-to-bill".
        """
        raw = re.findall(r"[A-Za-z0-9]+", re.sub(r"['’]s\b", " ", text))
        tokens = [fold(t) for t in raw]
        found: list[tuple[int, str]] = []
        seen: set[int] = set()
        i = 0
        while i < len(tokens):
            for n in range(min(self.max_alias_words, len(tokens) - i), 0, -1):
                key = " ".join(tokens[i : i + n])
                eid = self.alias_keys.get(key)
                if eid is not None and (n > 1 or (len(key) > 2 and raw[i][0].isupper())):
                    if eid not in seen:
                        seen.add(eid)
                        found.append((eid, key))
                    i += n
                    break
            else:
                i += 1
        return found

    def nodes_in(self, scope: TimeInterval) -> list[NodeEntry]:
        return [e for e in self.nodes.values() if scope.contains(e.node.interval) and e.node.summary]


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()
