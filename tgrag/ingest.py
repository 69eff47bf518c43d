"""Incremental ingestion: documents -> chunks -> facts -> entities -> store, one transaction a batch.

Per batch: validate (bad documents are skipped with a logged reason), drop documents already
stored (same content hash), chunk, extract, embed what has not been embedded before (outside the
transaction: it is the slow part), then write everything in one transaction: documents, chunks,
entities, facts (an identical fact from another chunk merges provenance), time nodes marked dirty,
vectors. A process killed mid-ingest leaves the store at its last committed batch; running the
same ingest again skips what is there and completes the rest.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache

import numpy as np

from .chunking import chunk_document
from .extract.base import extract_batch
from .extract.mentions import find_mentions
from .hierarchy import attach_nodes, with_ancestors
from .model import Chunk, Document, EntityMention, EntityType, Extraction, FactDraft, TimeInterval, utcnow
from .resolve import EntityResolver
from .store.base import FactRow, NewFact
from .store.sqlite import text_hash
from .text import fold, is_binary, with_subject, words
from .workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedDocument:
    position: int  # index in the input sequence
    doc_id: str | None
    source: str | None
    reason: str


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    skipped: list[SkippedDocument] = field(default_factory=list)
    chunks: int = 0
    facts_created: int = 0
    facts_merged: int = 0
    entities_created: int = 0
    batches: int = 0
    dirty_nodes: int = 0  # time nodes awaiting a summary when the ingest ended (set by the SDK)
    summaries_recomputed: int = 0
    seconds: float = 0.0

    def merge(self, other: IngestReport) -> None:
        self.added += other.added
        self.skipped += other.skipped
        for name in ("chunks", "facts_created", "facts_merged", "entities_created", "batches"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class InvalidRecord:
    """An input record that could not become a Document, carried to ingest to be reported."""

    reason: str


def check_document(doc: object, max_chars: int) -> str | None:
    """Why a document cannot be ingested, or None when it can."""
    if isinstance(doc, InvalidRecord):
        return doc.reason
    if not isinstance(doc, Document):
        return f"not a Document but {type(doc).__name__}"
    if not isinstance(doc.text, str):
        return "text is not a string (decode bytes as UTF-8 first)"
    if not doc.text.strip():
        return "empty document"
    if is_binary(doc.text):
        return "binary content (NUL or control bytes)"
    if len(doc.text) > max_chars:
        return f"too large: {len(doc.text):,} characters (limit {max_chars:,}; raise IngestConfig.max_document_chars)"
    if "\ufffd" in doc.text[:10000] and doc.text.count("\ufffd") > len(doc.text) / 100:
        return "not valid UTF-8 text (many undecodable bytes)"
    # Dataclasses do not check types: a wrong one would fail deep inside extraction or SQLite.
    for name in ("subject", "source", "key"):
        value = getattr(doc, name)
        if value is not None and not isinstance(value, str):
            return f"{name} is not a string but {type(value).__name__}"
    if not isinstance(doc.aliases, (tuple, list)) or not all(isinstance(a, str) for a in doc.aliases):
        return "aliases is not a tuple of strings"
    if doc.date is not None and not isinstance(doc.date, date):
        return f"date is not a datetime.date but {type(doc.date).__name__}"
    if doc.period is not None and not isinstance(doc.period, TimeInterval):
        return f"period is not a TimeInterval but {type(doc.period).__name__}"
    return None


def ingest(
    ws: Workspace,
    documents: Iterable[object],  # anything: what is not a valid Document is skipped with a reason
    ingested_at: IngestTime = None,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Ingest documents in batches of ``config.ingest.batch_documents``; the caller holds the writer lock."""
    started = time.perf_counter()
    report = IngestReport()
    seen_ids: set[str] = set()
    seen_keys: dict[str, str] = {}
    for batch in _batches(documents, ws.config.ingest.batch_documents):
        fresh = _select_new(ws, batch, seen_ids, seen_keys, report)
        if fresh:
            report.merge(_ingest_batch(ws, fresh, _ingest_times(fresh, ingested_at)))
        if progress is not None:
            progress(len(batch))
    report.seconds = time.perf_counter() - started
    return report


def _select_new(
    ws: Workspace,
    batch: list[tuple[int, object]],
    seen_ids: set[str],
    seen_keys: dict[str, str],
    report: IngestReport,
) -> list[Document]:
    """The batch's valid documents that neither this input nor the store has already; the rest are
    reported as skipped at their input position, so callers can match skips to inputs."""
    accepted: list[tuple[int, Document]] = []
    for position, doc in batch:
        reason = check_document(doc, ws.config.ingest.max_document_chars)
        if reason is None:
            assert isinstance(doc, Document)
            if doc.id in seen_ids:
                reason = "duplicate of an earlier document in this input (same content)"
            elif doc.key is not None and seen_keys.get(doc.key, doc.id) != doc.id:
                reason = f"duplicate key {doc.key!r}: another document in this input has it"
        if reason is not None:
            _skip(report, position, doc, reason)
            continue
        assert isinstance(doc, Document)
        seen_ids.add(doc.id)
        if doc.key is not None:
            seen_keys[doc.key] = doc.id
        accepted.append((position, doc))
    known = ws.store.known_documents(d.id for _, d in accepted)
    fresh: list[Document] = []
    for position, doc in accepted:
        if doc.id in known:
            report.skipped.append(SkippedDocument(position, doc.id, doc.source, "already in the store"))
            continue
        other = ws.store.document_id_for_key(doc.key) if doc.key else None
        if other is not None and other != doc.id:
            _skip(
                report,
                position,
                doc,
                f"key {doc.key!r} already names document {other}; delete that one first",
            )
            continue
        fresh.append(doc)
    return fresh


def _skip(report: IngestReport, position: int, doc: object, reason: str) -> None:
    doc_id = doc.id if isinstance(doc, Document) else None
    source = doc.source if isinstance(doc, Document) else None
    log.warning(
        "skipped document %s%s: %s", doc_id or f"#{position}", f" ({source})" if source else "", reason
    )
    report.skipped.append(SkippedDocument(position, doc_id, source, reason))


def _batches(documents: Iterable[object], size: int) -> Iterator[list[tuple[int, object]]]:
    batch: list[tuple[int, object]] = []
    for position, doc in enumerate(documents):
        batch.append((position, doc))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class _Prepared:
    doc: Document
    chunks: list[Chunk]
    extractions: list[Extraction]


# When the store learns a document: now (None), a given time, or a time per document (a replay).
IngestTime = datetime | Callable[[Document], datetime] | None


def _ingest_times(docs: list[Document], ingested_at: IngestTime) -> list[datetime]:
    if callable(ingested_at):
        return [ingested_at(d) for d in docs]
    when = ingested_at or utcnow()
    return [when] * len(docs)


def _ingest_batch(ws: Workspace, docs: list[Document], ingested_at: list[datetime]) -> IngestReport:
    chunked = [(doc, chunk_document(doc, ws.config.ingest.chunk_words)) for doc in docs]
    # The whole batch in one call: an LLM extractor then sends all its chunks to the model at once.
    extractions = extract_batch(ws.extractor, chunked)
    prepared = [_Prepared(doc, chunks, ext) for (doc, chunks), ext in zip(chunked, extractions, strict=True)]
    vectors = _embed_fact_texts(ws, prepared)
    try:
        with ws.store.transaction():
            ws.record_choices()
            written = _write_batch(ws, prepared, vectors, ingested_at)
    except BaseException:
        ws.reload()  # entity additions were applied in memory; the store rolled back, so reload
        raise
    idx = ws.indexes
    idx.add_facts(written.new_rows, written.new_vectors)
    idx.add_chunks(list(written.chunk_texts), list(written.chunk_texts.values()))
    if written.chunk_vectors:
        ids = np.array(sorted(written.chunk_vectors), dtype=np.int64)
        idx.vectors["chunk"].add(ids, np.vstack([written.chunk_vectors[i] for i in ids]))
    idx.generation = ws.store.generation()
    return written.report


@dataclass
class _Written:
    """What one batch's transaction wrote, for the in-memory indexes to follow."""

    report: IngestReport
    new_rows: list[FactRow]
    new_vectors: np.ndarray
    chunk_vectors: dict[int, np.ndarray]  # chunk number -> mean of its facts' vectors
    chunk_texts: dict[int, str]  # chunk number -> the text its passage is indexed under


def _embed_fact_texts(ws: Workspace, prepared: list[_Prepared]) -> dict[str, np.ndarray]:
    """Vectors for every fact of the batch, by hash of its indexed text; known texts are reused.

    The subject written here is the extractor's; resolution may pick another spelling of the same
    entity, which only changes the prefix's wording, not what the vector is about.
    """
    texts = {}
    for p in prepared:
        for e in p.extractions:
            for f in e.facts:
                indexed = with_subject(f.subject, f.text)
                texts[text_hash(indexed)] = indexed
    known = ws.store.vectors_by_text("fact", list(texts))
    missing = [h for h in texts if h not in known]
    if missing:
        vecs = ws.embedder.embed([texts[h] for h in missing])
        known.update(zip(missing, vecs, strict=True))
    return known


def fact_key(subject_id: int, draft: FactDraft) -> str:
    """Identity of a fact: same subject, relation, object and valid time -> same fact."""
    rel = " ".join(words(draft.relation))
    obj = " ".join(fold(draft.object).split())
    raw = f"{subject_id}|{rel}|{obj}|{draft.time.start_ordinal}|{draft.time.end_ordinal}"
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def _write_batch(
    ws: Workspace, prepared: list[_Prepared], vectors: dict[str, np.ndarray], ingested_at: list[datetime]
) -> _Written:
    store = ws.store
    report = IngestReport(batches=1)
    resolver = EntityResolver(ws)
    new_rows: list[FactRow] = []
    new_vecs: list[np.ndarray] = []
    new_texts: list[str] = []
    merged_rows: set[int] = set()
    chunk_vecs: dict[int, np.ndarray] = {}
    chunk_texts: dict[int, str] = {}
    dirty: set[str] = set()
    for p, known_at in zip(prepared, ingested_at, strict=True):
        doc = p.doc
        ts = known_at.timestamp()
        nums = store.add_document(doc, p.chunks, known_at)
        report.added.append(doc.id)
        ws.indexes.documents[doc.id] = doc.source or doc.subject
        report.chunks += len(p.chunks)
        mentions: list[EntityMention] = [m for e in p.extractions for m in e.entities]
        mentions += [_mention(f.subject) for e in p.extractions for f in e.facts]
        mentions += [_mention(n) for e in p.extractions for f in e.facts for n in f.mentions]
        # Names given as aliases of another (tickers, the document's own aliases) join that entity.
        aliases: dict[str, tuple[str, ...]] = {doc.subject: doc.aliases} if doc.subject else {}
        alias_of = {m.text: m.alias_of for m in mentions if m.alias_of}
        for alias, owner in alias_of.items():
            aliases[owner] = (*aliases.get(owner, ()), alias)
        entity_ids = resolver.resolve([m for m in mentions if m.text not in alias_of], aliases)
        for alias, owner in alias_of.items():
            if owner in entity_ids:
                entity_ids[alias] = entity_ids[owner]
        for chunk, extraction in zip(p.chunks, extraction_list(p), strict=True):
            chunk_num = nums[chunk.id]
            chunk_texts[chunk_num] = with_subject(doc.subject, chunk.text)
            per_chunk: list[np.ndarray] = []
            for draft in extraction.facts:
                subject_id = entity_ids.get(draft.subject)
                if subject_id is None:
                    log.info("fact without a resolvable subject skipped: %r", draft.text[:80])
                    continue
                nodes = attach_nodes(draft.time)
                ents = {entity_ids[n] for n in draft.mentions if n in entity_ids} | {subject_id}
                fact = _new_fact(doc, draft, subject_id, tuple(sorted(ents)), tuple(n.id for n in nodes))
                chain = with_ancestors(nodes)
                store.add_time_nodes(chain)
                fact_id, created = store.upsert_fact(fact, doc.id, chunk_num, known_at)
                indexed = with_subject(draft.subject, draft.text)
                vec = vectors[text_hash(indexed)]
                per_chunk.append(vec)
                if created:
                    report.facts_created += 1
                    new_rows.append(_fact_row(fact_id, fact, ts, doc.id, chunk_num))
                    new_vecs.append(vec)
                    new_texts.append(indexed)
                    dirty.update(n.id for n in chain)
                else:
                    report.facts_merged += 1
                    merged_rows.add(fact_id)
            if per_chunk:
                mean = np.mean(per_chunk, axis=0)
                chunk_vecs[chunk_num] = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
    store.mark_dirty(dirty)
    if new_rows:
        store.put_vectors("fact", [r.id for r in new_rows], np.vstack(new_vecs), new_texts)
    if chunk_vecs:
        store.put_vectors("chunk", list(chunk_vecs), np.vstack(list(chunk_vecs.values())))
    if merged_rows:
        # A merged fact may be a fact created earlier in this same batch: refresh from the store.
        created_ids = {r.id for r in new_rows}
        refreshed = {r.id: r for r in store.fact_rows(sorted(merged_rows))}
        new_rows = [refreshed.get(r.id, r) for r in new_rows]
        ws.indexes.catalog.update_sources([r for fid, r in refreshed.items() if fid not in created_ids])
    report.entities_created = resolver.created
    vec_array = np.vstack(new_vecs) if new_vecs else np.zeros((0, ws.embedder.dim), np.float32)
    return _Written(report, new_rows, vec_array, chunk_vecs, chunk_texts)


def _new_fact(
    doc: Document, draft: FactDraft, subject_id: int, entity_ids: tuple[int, ...], node_ids: tuple[str, ...]
) -> NewFact:
    return NewFact(
        key=fact_key(subject_id, draft),
        subject_id=subject_id,
        relation=draft.relation,
        object=draft.object,
        start=draft.time.start_ordinal,
        end=draft.time.end_ordinal,
        granularity=draft.time.granularity.value,
        time_label=draft.time.label,
        text=draft.text,
        value=draft.value,
        unit=draft.unit,
        confidence=draft.confidence,
        entity_ids=entity_ids,
        node_ids=node_ids,
        projected=_projected(doc, draft),
    )


def _fact_row(fact_id: int, fact: NewFact, ingested_ts: float, doc_id: str, chunk_num: int) -> FactRow:
    return FactRow(
        fact_id,
        fact.subject_id,
        fact.text,
        fact.start,
        fact.end,
        fact.granularity,
        fact.time_label,
        ingested_ts,
        doc_id,
        chunk_num,
        fact.confidence,
        fact.entity_ids,
        fact.projected,
    )


def _projected(doc: Document, draft: FactDraft) -> bool:
    """A forecast: most of the fact's valid time lies after its document was written (or its period).

    "Our outlook for 2025" in a call held in February 2025 is about a year that has barely begun.
    """
    ends = []
    if doc.period is not None:
        ends.append(doc.period.end_ordinal)
    if doc.date is not None:
        ends.append(doc.date.toordinal() + 1)
    time = draft.time
    if not ends or time.start is None or time.end is None:
        return False
    return (time.start_ordinal + time.end_ordinal) / 2 >= max(ends)


def extraction_list(p: _Prepared) -> Sequence[Extraction]:
    if len(p.extractions) != len(p.chunks):
        raise ValueError(f"extractor returned {len(p.extractions)} results for {len(p.chunks)} chunks")
    return p.extractions


@lru_cache(maxsize=65536)
def _mention(name: str) -> EntityMention:
    """A name given as a fact's subject or mention, typed the way the mention rules would type it."""
    found = find_mentions(f"about {name}")
    return EntityMention(name, found[0].type if found and found[0].text == name else EntityType.OTHER)
