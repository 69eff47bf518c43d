"""SQLite (WAL) implementation of ``GraphStore``: the embedded default, no server needed."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import StoreCorruptedError, StoreError
from ..model import (
    Chunk,
    Document,
    Entity,
    EntityType,
    Fact,
    Granularity,
    Source,
    TimeInterval,
    TimeLevel,
    TimeNode,
)
from .base import STORES, DeleteOutcome, DocumentRecord, FactRow, GraphStore, NewFact

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents(
    id TEXT PRIMARY KEY, key TEXT UNIQUE, subject TEXT, aliases TEXT NOT NULL, source TEXT,
    date TEXT, period_start INTEGER, period_end INTEGER, period_label TEXT,
    metadata TEXT NOT NULL, text TEXT NOT NULL, ingested_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(
    num INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, doc_id TEXT NOT NULL, ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL, end INTEGER NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE TABLE IF NOT EXISTS entities(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entity_aliases(
    key TEXT PRIMARY KEY, entity_id INTEGER NOT NULL, alias TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS entity_aliases_entity ON entity_aliases(entity_id);
CREATE TABLE IF NOT EXISTS facts(
    id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, subject_id INTEGER NOT NULL,
    relation TEXT NOT NULL, object TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,
    granularity TEXT NOT NULL, time_label TEXT NOT NULL, text TEXT NOT NULL, value REAL, unit TEXT,
    confidence REAL NOT NULL, first_ingested_at REAL NOT NULL, projected INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS fact_sources(
    fact_id INTEGER NOT NULL, chunk_num INTEGER NOT NULL, doc_id TEXT NOT NULL,
    confidence REAL NOT NULL, ingested_at REAL NOT NULL, PRIMARY KEY(fact_id, chunk_num));
CREATE INDEX IF NOT EXISTS fact_sources_doc ON fact_sources(doc_id);
CREATE TABLE IF NOT EXISTS fact_entities(
    fact_id INTEGER NOT NULL, entity_id INTEGER NOT NULL, PRIMARY KEY(fact_id, entity_id));
CREATE INDEX IF NOT EXISTS fact_entities_entity ON fact_entities(entity_id);
CREATE TABLE IF NOT EXISTS time_nodes(
    num INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, level TEXT NOT NULL, parent TEXT,
    start INTEGER NOT NULL, end INTEGER NOT NULL, summary TEXT NOT NULL DEFAULT '',
    summary_facts TEXT NOT NULL DEFAULT '[]', dirty INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS fact_nodes(
    fact_id INTEGER NOT NULL, node_id TEXT NOT NULL, PRIMARY KEY(fact_id, node_id));
CREATE INDEX IF NOT EXISTS fact_nodes_node ON fact_nodes(node_id);
CREATE TABLE IF NOT EXISTS vectors(
    kind TEXT NOT NULL, id INTEGER NOT NULL, text_hash TEXT NOT NULL, vec BLOB NOT NULL,
    PRIMARY KEY(kind, id));
CREATE INDEX IF NOT EXISTS vectors_text ON vectors(kind, text_hash);
"""

DB_NAME = "store.sqlite"


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


def _ts(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=timezone.utc)


class SQLiteStore(GraphStore):
    """One SQLite database file in the store folder. Thread use: one writer, many readers."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, or no permission: a user error, not a bug
            raise StoreError(f"cannot use {self.path} as a store folder: {exc.strerror}") from None
        db = self.path / DB_NAME
        try:
            self._db = sqlite3.connect(db, isolation_level=None, check_same_thread=False, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=OFF")
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "meta" not in tables:
                raise StoreError(
                    f"{db} is an SQLite database of another program, not a tgrag store; use another folder"
                )
            self._db.executescript(_SCHEMA)
            version = self.get_meta("schema_version")
            if version is None:
                self.set_meta("schema_version", SCHEMA_VERSION)
                self.set_meta("generation", "0")
            elif version != SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path} has schema version {version}; this tgrag reads {SCHEMA_VERSION}"
                )
        except sqlite3.DatabaseError as exc:
            raise StoreCorruptedError(
                f"{db} is not a readable tgrag store ({exc}). Restore it from a backup, or move it aside "
                "and ingest the documents again."
            ) from None
        self._in_tx = False

    # ---- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; the generation counter moves so derived indexes know they are stale."""
        if self._in_tx:
            raise StoreError("nested transactions are not supported")
        self._db.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        try:
            yield
            self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        finally:
            self._in_tx = False

    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    def integrity_check(self) -> str:
        return str(self._db.execute("PRAGMA quick_check").fetchone()[0])

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # ---- documents ----------------------------------------------------------------------------
    def known_documents(self, ids: Iterable[str]) -> set[str]:
        ids = list(ids)
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            found.update(
                r[0] for r in self._db.execute(f"SELECT id FROM documents WHERE id IN ({marks})", part)
            )
        return found

    def document_id_for_key(self, key: str) -> str | None:
        row = self._db.execute("SELECT id FROM documents WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def add_document(self, doc: Document, chunks: Sequence[Chunk], ingested_at: datetime) -> dict[str, int]:
        period = doc.period
        self._db.execute(
            "INSERT INTO documents VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                doc.id,
                doc.key,
                doc.subject,
                json.dumps(list(doc.aliases)),
                doc.source,
                doc.date.isoformat() if doc.date else None,
                period.start_ordinal if period else None,
                period.end_ordinal if period else None,
                period.label if period else None,
                json.dumps(doc.metadata, default=str),
                doc.text,
                _ts(ingested_at),
            ),
        )
        nums: dict[str, int] = {}
        for c in chunks:
            cur = self._db.execute(
                "INSERT INTO chunks(id, doc_id, ordinal, start, end, text) VALUES (?,?,?,?,?,?)",
                (c.id, c.doc_id, c.ordinal, c.start, c.end, c.text),
            )
            nums[c.id] = int(cur.lastrowid or 0)
        return nums

    def documents(self) -> list[DocumentRecord]:
        rows = self._db.execute(
            "SELECT d.id, d.key, d.subject, d.source, d.date, d.period_label, d.ingested_at, "
            "(SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.id) FROM documents d ORDER BY d.ingested_at, d.id"
        )
        return [DocumentRecord(*r) for r in rows]

    def document_text(self, doc_id: str) -> str | None:
        row = self._db.execute("SELECT text FROM documents WHERE id = ?", (doc_id,)).fetchone()
        return None if row is None else str(row[0])

    def chunk_rows(self, nums: Sequence[int] | None = None) -> list[tuple[int, Chunk]]:
        sql = "SELECT num, id, doc_id, ordinal, text, start, end FROM chunks"
        rows = self._select_in(sql, "num", nums, order="num")
        return [(r[0], Chunk(r[1], r[2], r[3], r[4], r[5], r[6])) for r in rows]

    def delete_document(self, doc_id: str) -> DeleteOutcome | None:
        db = self._db
        if db.execute("SELECT 1 FROM documents WHERE id = ?", (doc_id,)).fetchone() is None:
            return None
        touched = [
            r[0] for r in db.execute("SELECT DISTINCT fact_id FROM fact_sources WHERE doc_id = ?", (doc_id,))
        ]
        db.execute("DELETE FROM fact_sources WHERE doc_id = ?", (doc_id,))
        removed: list[int] = []
        kept: list[int] = []
        nodes: set[str] = set()
        for fid in touched:
            nodes.update(r[0] for r in db.execute("SELECT node_id FROM fact_nodes WHERE fact_id = ?", (fid,)))
            left = db.execute(
                "SELECT confidence, ingested_at FROM fact_sources WHERE fact_id = ?", (fid,)
            ).fetchall()
            if left:
                kept.append(fid)
                miss = float(np.prod([1.0 - c for c, _ in left]))
                db.execute(
                    "UPDATE facts SET confidence = ?, first_ingested_at = ? WHERE id = ?",
                    (1.0 - miss, min(t for _, t in left), fid),
                )
            else:
                removed.append(fid)
        candidates: set[int] = set()
        for fid in removed:
            candidates.update(
                r[0] for r in db.execute("SELECT entity_id FROM fact_entities WHERE fact_id = ?", (fid,))
            )
            db.execute("DELETE FROM facts WHERE id = ?", (fid,))
            db.execute("DELETE FROM fact_entities WHERE fact_id = ?", (fid,))
            db.execute("DELETE FROM fact_nodes WHERE fact_id = ?", (fid,))
        orphans = [
            e
            for e in sorted(candidates)
            if db.execute("SELECT 1 FROM fact_entities WHERE entity_id = ? LIMIT 1", (e,)).fetchone() is None
        ]
        for e in orphans:
            db.execute("DELETE FROM entities WHERE id = ?", (e,))
            db.execute("DELETE FROM entity_aliases WHERE entity_id = ?", (e,))
        # Ancestors too: a parent's summary quotes its children's facts, so it may quote a removed one.
        frontier = set(nodes)
        while frontier:
            marks = ",".join("?" * len(frontier))
            parents = {
                r[0]
                for r in db.execute(
                    f"SELECT parent FROM time_nodes WHERE id IN ({marks}) AND parent IS NOT NULL",
                    list(frontier),
                )
            }
            frontier = parents - nodes
            nodes |= parents
        chunk_nums = [r[0] for r in db.execute("SELECT num FROM chunks WHERE doc_id = ?", (doc_id,))]
        db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
        self.delete_vectors("fact", removed)
        self.delete_vectors("entity", orphans)
        self.delete_vectors("chunk", chunk_nums)
        self.mark_dirty(nodes)
        return DeleteOutcome(
            doc_id, tuple(removed), tuple(kept), tuple(orphans), tuple(chunk_nums), tuple(sorted(nodes))
        )

    # ---- entities -----------------------------------------------------------------------------
    def add_entity(self, name: str, type: EntityType, aliases: Sequence[str]) -> int:
        cur = self._db.execute("INSERT INTO entities(name, type) VALUES (?, ?)", (name, type.value))
        entity_id = int(cur.lastrowid or 0)
        self.add_aliases(entity_id, [name, *aliases])
        return entity_id

    def add_aliases(self, entity_id: int, aliases: Sequence[str]) -> None:
        from ..text import name_key

        for alias in aliases:
            key = name_key(alias)
            if key:
                self._db.execute(
                    "INSERT OR IGNORE INTO entity_aliases(key, entity_id, alias) VALUES (?, ?, ?)",
                    (key, entity_id, alias),
                )

    def entity_ids_for_keys(self, keys: Iterable[str]) -> dict[str, int]:
        rows = self._select_in("SELECT key, entity_id FROM entity_aliases", "key", list(keys))
        return {str(k): int(e) for k, e in rows}

    def entities(self, ids: Sequence[int] | None = None) -> list[Entity]:
        rows = self._select_in("SELECT id, name, type FROM entities", "id", ids, order="id")
        aliases: dict[int, list[str]] = {}
        for eid, alias in self._select_in("SELECT entity_id, alias FROM entity_aliases", "entity_id", ids):
            aliases.setdefault(int(eid), []).append(str(alias))
        return [
            Entity(
                int(r[0]),
                str(r[1]),
                EntityType(r[2]),
                tuple(a for a in aliases.get(int(r[0]), []) if a != r[1]),
            )
            for r in rows
        ]

    # ---- facts --------------------------------------------------------------------------------
    def upsert_fact(
        self, fact: NewFact, doc_id: str, chunk_num: int, ingested_at: datetime
    ) -> tuple[int, bool]:
        """Insert a fact, or add this chunk to the provenance of the identical fact already stored."""
        db = self._db
        now = _ts(ingested_at)
        row = db.execute(
            "SELECT id, confidence, first_ingested_at FROM facts WHERE key = ?", (fact.key,)
        ).fetchone()
        created = row is None
        if row is None:
            cur = db.execute(
                "INSERT INTO facts(key, subject_id, relation, object, start, end, granularity, time_label, text,"
                " value, unit, confidence, first_ingested_at, projected) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    fact.key,
                    fact.subject_id,
                    fact.relation,
                    fact.object,
                    fact.start,
                    fact.end,
                    fact.granularity,
                    fact.time_label,
                    fact.text,
                    fact.value,
                    fact.unit,
                    fact.confidence,
                    now,
                    int(fact.projected),
                ),
            )
            fact_id = int(cur.lastrowid or 0)
            db.executemany(
                "INSERT OR IGNORE INTO fact_entities(fact_id, entity_id) VALUES (?, ?)",
                [(fact_id, e) for e in {fact.subject_id, *fact.entity_ids}],
            )
            db.executemany(
                "INSERT OR IGNORE INTO fact_nodes(fact_id, node_id) VALUES (?, ?)",
                [(fact_id, n) for n in fact.node_ids],
            )
        else:
            fact_id = int(row[0])
            exists = db.execute(
                "SELECT 1 FROM fact_sources WHERE fact_id = ? AND chunk_num = ?", (fact_id, chunk_num)
            ).fetchone()
            if exists is None:
                # Independent sources agreeing raise confidence (noisy-or).
                merged = 1.0 - (1.0 - float(row[1])) * (1.0 - fact.confidence)
                # A fact some source reports as observed is observed, whoever forecast it before.
                db.execute(
                    "UPDATE facts SET confidence = ?, first_ingested_at = ?, projected = projected AND ? WHERE id = ?",
                    (merged, min(float(row[2]), now), int(fact.projected), fact_id),
                )
        db.execute(
            "INSERT OR IGNORE INTO fact_sources(fact_id, chunk_num, doc_id, confidence, ingested_at) VALUES (?,?,?,?,?)",
            (fact_id, chunk_num, doc_id, fact.confidence, now),
        )
        return fact_id, created

    def facts(self, ids: Sequence[int]) -> list[Fact]:
        if not ids:
            return []
        rows = self._select_in(
            "SELECT f.id, f.subject_id, e.name, f.relation, f.object, f.start, f.end, f.granularity, f.time_label,"
            " f.text, f.value, f.unit, f.confidence, f.first_ingested_at FROM facts f"
            " JOIN entities e ON e.id = f.subject_id",
            "f.id",
            ids,
        )
        sources: dict[int, list[Source]] = {}
        for fid, doc_id, chunk_id, t, src in self._select_in(
            "SELECT s.fact_id, s.doc_id, c.id, s.ingested_at, d.source FROM fact_sources s"
            " JOIN chunks c ON c.num = s.chunk_num JOIN documents d ON d.id = s.doc_id",
            "s.fact_id",
            ids,
            order="s.ingested_at, c.num",
        ):
            sources.setdefault(int(fid), []).append(Source(doc_id, chunk_id, _dt(t), src))
        ents: dict[int, list[int]] = {}
        for fid, eid in self._select_in("SELECT fact_id, entity_id FROM fact_entities", "fact_id", ids):
            ents.setdefault(int(fid), []).append(int(eid))
        by_id = {
            int(r[0]): Fact(
                id=int(r[0]),
                subject_id=int(r[1]),
                subject=str(r[2]),
                relation=str(r[3]),
                object=str(r[4]),
                time=TimeInterval.from_ordinals(int(r[5]), int(r[6]), Granularity(r[7]), str(r[8])),
                text=str(r[9]),
                value=r[10],
                unit=r[11],
                confidence=float(r[12]),
                first_ingested_at=_dt(float(r[13])),
                sources=tuple(sources.get(int(r[0]), ())),
                entity_ids=tuple(sorted(ents.get(int(r[0]), ()))),
            )
            for r in rows
        }
        return [by_id[i] for i in ids if i in by_id]

    def fact_rows(self, ids: Sequence[int] | None = None) -> Iterator[FactRow]:
        ents: dict[int, list[int]] = {}
        for fid, eid in self._select_in("SELECT fact_id, entity_id FROM fact_entities", "fact_id", ids):
            ents.setdefault(int(fid), []).append(int(eid))
        first_source: dict[int, tuple[str, int]] = {}
        for fid, doc_id, chunk_num in self._select_in(
            "SELECT fact_id, doc_id, chunk_num FROM fact_sources",
            "fact_id",
            ids,
            order="ingested_at DESC, chunk_num DESC",
        ):
            first_source[int(fid)] = (str(doc_id), int(chunk_num))  # the last row written is the earliest
        rows = self._select_in(
            "SELECT id, subject_id, text, start, end, granularity, time_label, first_ingested_at, confidence,"
            " projected FROM facts",
            "id",
            ids,
            order="id",
        )
        for r in rows:
            fid = int(r[0])
            doc_id, chunk_num = first_source.get(fid, ("", -1))
            yield FactRow(
                fid,
                int(r[1]),
                str(r[2]),
                int(r[3]),
                int(r[4]),
                str(r[5]),
                str(r[6]),
                float(r[7]),
                doc_id,
                chunk_num,
                float(r[8]),
                tuple(sorted(ents.get(fid, ()))),
                bool(r[9]),
            )

    # ---- time hierarchy -----------------------------------------------------------------------
    def add_time_nodes(self, nodes: Sequence[TimeNode]) -> None:
        self._db.executemany(
            "INSERT OR IGNORE INTO time_nodes(id, level, parent, start, end) VALUES (?,?,?,?,?)",
            [
                (n.id, n.level.value, n.parent, n.interval.start_ordinal, n.interval.end_ordinal)
                for n in nodes
            ],
        )

    def mark_dirty(self, node_ids: Iterable[str]) -> None:
        self._db.executemany("UPDATE time_nodes SET dirty = 1 WHERE id = ?", [(n,) for n in node_ids])

    def time_nodes(self, ids: Sequence[str] | None = None, dirty_only: bool = False) -> list[TimeNode]:
        sql = (
            "SELECT n.id, n.level, n.parent, n.start, n.end, n.summary, n.dirty, n.summary_facts,"
            " (SELECT COUNT(*) FROM fact_nodes f WHERE f.node_id = n.id) FROM time_nodes n"
        )
        if dirty_only:
            sql += " WHERE n.dirty = 1"
        rows = self._select_in(sql, "n.id", ids, order="n.start, n.end DESC", where_prefix=not dirty_only)
        return [
            TimeNode(
                id=str(r[0]),
                level=TimeLevel(r[1]),
                parent=r[2],
                interval=TimeInterval.from_ordinals(
                    int(r[3]), int(r[4]), _LEVEL_GRANULARITY[TimeLevel(r[1])], str(r[0])
                ),
                summary=str(r[5]),
                dirty=bool(r[6]),
                fact_count=int(r[8]),
                summary_fact_ids=tuple(json.loads(r[7])),
            )
            for r in rows
        ]

    def time_node_nums(self) -> dict[str, int]:
        return {str(i): int(n) for i, n in self._db.execute("SELECT id, num FROM time_nodes")}

    def node_fact_ids(self, node_id: str) -> list[int]:
        return [
            int(r[0])
            for r in self._db.execute(
                "SELECT fact_id FROM fact_nodes WHERE node_id = ? ORDER BY fact_id", (node_id,)
            )
        ]

    def set_summaries(self, summaries: dict[str, tuple[str, tuple[int, ...]]]) -> dict[str, int]:
        """Store summaries and clear dirty flags; nodes with an empty summary and no children go away."""
        nums: dict[str, int] = {}
        for node_id, (summary, fact_ids) in summaries.items():
            if (
                not summary
                and self._db.execute(
                    "SELECT 1 FROM time_nodes WHERE parent = ? LIMIT 1", (node_id,)
                ).fetchone()
                is None
            ):
                num = self._db.execute("SELECT num FROM time_nodes WHERE id = ?", (node_id,)).fetchone()
                self._db.execute("DELETE FROM time_nodes WHERE id = ?", (node_id,))
                if num is not None:
                    self.delete_vectors("node", [int(num[0])])
                continue
            self._db.execute(
                "UPDATE time_nodes SET summary = ?, summary_facts = ?, dirty = 0 WHERE id = ?",
                (summary, json.dumps(list(fact_ids)), node_id),
            )
            row = self._db.execute("SELECT num FROM time_nodes WHERE id = ?", (node_id,)).fetchone()
            if row is not None:
                nums[node_id] = int(row[0])
        return nums

    # ---- vectors ------------------------------------------------------------------------------
    def put_vectors(
        self, kind: str, ids: Sequence[int], vectors: np.ndarray, texts: Sequence[str] = ()
    ) -> None:
        hashes = [text_hash(t) for t in texts] if texts else [""] * len(ids)
        self._db.executemany(
            "INSERT OR REPLACE INTO vectors(kind, id, text_hash, vec) VALUES (?,?,?,?)",
            [
                (kind, int(i), h, np.asarray(v, dtype=np.float32).tobytes())
                for i, h, v in zip(ids, hashes, vectors, strict=True)
            ],
        )

    def get_vectors(self, kind: str, ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        rows = self._select_in(
            "SELECT id, vec FROM vectors WHERE kind = ?",
            "id",
            ids,
            params=(kind,),
            order="id",
            where_prefix=False,
        )
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        out_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        return out_ids, vecs.copy()

    def delete_vectors(self, kind: str, ids: Sequence[int]) -> None:
        self._db.executemany("DELETE FROM vectors WHERE kind = ? AND id = ?", [(kind, int(i)) for i in ids])

    def vectors_by_text(self, kind: str, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for h, vec in self._select_in(
            "SELECT text_hash, vec FROM vectors WHERE kind = ?",
            "text_hash",
            list(text_hashes),
            params=(kind,),
            where_prefix=False,
        ):
            found[str(h)] = np.frombuffer(vec, dtype=np.float32)
        return found

    def stats(self) -> dict[str, int]:
        q = self._db.execute
        return {
            "documents": q("SELECT COUNT(*) FROM documents").fetchone()[0],
            "chunks": q("SELECT COUNT(*) FROM chunks").fetchone()[0],
            "entities": q("SELECT COUNT(*) FROM entities").fetchone()[0],
            "facts": q("SELECT COUNT(*) FROM facts").fetchone()[0],
            "fact_sources": q("SELECT COUNT(*) FROM fact_sources").fetchone()[0],
            "time_nodes": q("SELECT COUNT(*) FROM time_nodes").fetchone()[0],
            "dirty_nodes": q("SELECT COUNT(*) FROM time_nodes WHERE dirty = 1").fetchone()[0],
            "generation": self.generation(),
        }

    # ---- helpers ------------------------------------------------------------------------------
    def _select_in(
        self,
        sql: str,
        column: str,
        values: Sequence[object] | None,
        params: tuple[object, ...] = (),
        order: str | None = None,
        where_prefix: bool = True,
    ) -> list[tuple]:
        """Run ``sql`` for all rows, or for rows whose ``column`` is in ``values`` (chunked)."""
        suffix = f" ORDER BY {order}" if order else ""
        if values is None:
            return self._db.execute(sql + suffix, params).fetchall()
        out: list[tuple] = []
        joiner = " WHERE " if where_prefix else " AND "
        values = list(values)
        for i in range(0, len(values), 900):
            part = values[i : i + 900]
            marks = ",".join("?" * len(part))
            out.extend(self._db.execute(f"{sql}{joiner}{column} IN ({marks}){suffix}", (*params, *part)))
        return out


_LEVEL_GRANULARITY = {
    TimeLevel.YEAR: Granularity.YEAR,
    TimeLevel.QUARTER: Granularity.QUARTER,
    TimeLevel.MONTH: Granularity.MONTH,
    TimeLevel.DAY: Granularity.DAY,
}


@STORES.register("sqlite")
def _sqlite(arg: str | None, *, path: Path, **_: object) -> GraphStore:
    return SQLiteStore(path)
