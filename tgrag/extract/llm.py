"""The LLM extractor (``llm:<LLM spec>``): a language model reads each chunk, a drop-in for ``rules``.

The prompt, its reply schema and the reply's validation live in ``llm_prompt`` (``FACTS_PROMPT``);
this module asks the model and decides what of its reply to keep. What the model says is not
trusted as is:

- each reply is validated against the schema; a malformed one is asked for again (``retries``
  times, with a reminder of what was wrong), then the chunk is skipped with a logged warning and
  an empty ``Extraction``, so that an ingest keeps going;
- times are read by ``tgrag.timex`` against the document's reference time (its period, else its
  date), exactly as ``rules`` reads them; a time that does not parse falls back to that reference;
- a fact's ``text`` is always a sentence of the chunk: a sentence the model paraphrased is mapped
  to the chunk's sentence with the best word overlap, or the fact is dropped (citations stay honest);
- values are matched to the figures written in the sentence, so units read as ``rules`` reads them.

All chunks of a document (or of several, ``extract_many``, which ingest uses per batch) go to
``llm.chat`` as one batch, so a server is kept busy. Validated replies are cached by a hash of
(model, prompt version, chunk text, reference time, subject): in memory by default, or in a SQLite
file shared between runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..llm.base import LLM, GenerationParams, LLMError, Message, create_llm
from ..model import Chunk, Document, EntityMention, EntityType, Extraction, FactDraft, TimeInterval
from ..text import fold, split_sentences, words
from ..timex import TimeContext, find_times, parse_time
from .base import EXTRACTORS
from .llm_prompt import (
    FACTS_PROMPT,
    PROMPT_VERSION,
    REPLY_SCHEMA,
    ChunkReply,
    EntityReply,
    ExtractionPrompt,
    FactReply,
    PromptContext,
    ReplyError,
    entity_type,
    facts_prompt,
    parse_reply,
    reminder,
    reply_from_json,
)
from .values import find_values

log = logging.getLogger(__name__)


# ---- the reply cache ----------------------------------------------------------------------------
class ReplyCache:
    """Validated replies by key: in memory, or in a SQLite file when a path is given."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._memory: dict[str, str] = {}
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, model TEXT NOT NULL, "
                    "prompt TEXT NOT NULL, reply TEXT NOT NULL)"
                )
            except sqlite3.DatabaseError as exc:
                raise ValueError(
                    f"llm extractor cache {self.path}: not a usable SQLite file ({exc})"
                ) from exc

    def get(self, key: str) -> str | None:
        with self._lock:
            if self._db is None:
                return self._memory.get(key)
            row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

    def put(self, key: str, model: str, prompt: str, reply: str) -> None:
        with self._lock:
            if self._db is None:
                self._memory[key] = reply
            else:
                self._db.execute(
                    "INSERT OR REPLACE INTO replies (key, model, prompt, reply) VALUES (?, ?, ?, ?)",
                    (key, model, prompt, reply),
                )

    def __len__(self) -> int:
        with self._lock:
            if self._db is None:
                return len(self._memory)
            return int(self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
                self.path = None  # closed: later use falls back to memory rather than failing


def cache_key(
    model: str, version: str, chunk_text: str, reference: TimeInterval | None, subject: str | None
) -> str:
    ref = None if reference is None else [reference.start_ordinal, reference.end_ordinal, reference.label]
    raw = json.dumps([model, version, chunk_text, ref, subject], ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


# ---- the extractor ------------------------------------------------------------------------------
@dataclass
class ExtractorStats:
    """Counts since the extractor was made: what the LLM cost and what was thrown away."""

    chunks: int = 0
    cached: int = 0
    llm_calls: int = 0  # calls of llm.chat (each a batch)
    requests: int = 0  # conversations sent, retries included
    retried: int = 0
    skipped: int = 0  # chunks given up on
    facts: int = 0
    facts_dropped: int = 0
    sentences_mapped: int = 0
    reasons: list[str] = field(default_factory=list)  # the last few skip reasons


@dataclass
class _Job:
    doc: Document
    chunk: Chunk
    key: str
    messages: list[Message]
    reply: ChunkReply | None = None
    error: str = ""


class LLMExtractor:
    """Entities and temporal facts by an LLM, validated, grounded in the chunk and cached."""

    name = "llm"

    def __init__(
        self,
        llm: LLM | str,
        *,
        cache: str | Path | ReplyCache | None = None,
        retries: int = 2,
        max_tokens: int = 1024,
        fiscal_year_start_month: int = 1,
        prompt: ExtractionPrompt = FACTS_PROMPT,
        min_overlap: float = 0.5,
        llm_options: dict[str, Any] | None = None,
        model_id: str | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        self._owns_llm = isinstance(llm, str)
        self.llm: LLM = create_llm(llm, **(llm_options or {})) if isinstance(llm, str) else llm
        self.cache = cache if isinstance(cache, ReplyCache) else ReplyCache(cache)
        self.retries = retries
        self.prompt = prompt
        self.params = GenerationParams(max_tokens=max_tokens, temperature=0.0, json_schema=prompt.schema)
        self.fiscal_year_start_month = fiscal_year_start_month
        self.min_overlap = min_overlap
        # Who answered, in the cache key: the LLM's name unless that is too vague (a folder called "model").
        self.model_id = model_id or self.llm.name
        self.stats = ExtractorStats()

    def extract(self, document: Document, chunks: Sequence[Chunk]) -> list[Extraction]:
        return self.extract_many([(document, chunks)])[0]

    def extract_many(self, items: Sequence[tuple[Document, Sequence[Chunk]]]) -> list[list[Extraction]]:
        """``extract`` for several documents with one LLM batch for all their chunks."""
        jobs: list[list[_Job]] = []
        pending: list[_Job] = []
        for doc, chunks in items:
            doc_jobs = []
            for chunk in chunks:
                job = self._job(doc, chunk)
                doc_jobs.append(job)
                if job.reply is None:
                    pending.append(job)
            jobs.append(doc_jobs)
        self._ask(pending)
        return [[self._extraction(j) for j in doc_jobs] for doc_jobs in jobs]

    def close(self) -> None:
        self.cache.close()
        if self._owns_llm:
            self.llm.close()

    # -- asking ----------------------------------------------------------------------------

    def _job(self, doc: Document, chunk: Chunk) -> _Job:
        self.stats.chunks += 1
        key = cache_key(self.model_id, self.prompt.version, chunk.text, doc.reference_time, doc.subject)
        job = _Job(doc, chunk, key, [])
        cached = self.cache.get(key)
        if cached is not None:
            try:
                job.reply = reply_from_json(json.loads(cached))
                self.stats.cached += 1
                return job
            except (ValueError, ReplyError):  # a stale or damaged entry: ask again
                log.info("llm extractor: unreadable cache entry for chunk %s, asking again", chunk.id)
        ctx = PromptContext(chunk.text, doc.subject, doc.date.isoformat() if doc.date else None, doc.period)
        job.messages = list(self.prompt.build(ctx))
        return job

    def _ask(self, pending: list[_Job]) -> None:
        for attempt in range(self.retries + 1):
            if not pending:
                return
            try:
                gens = self.llm.chat([j.messages for j in pending], self.params)
            except LLMError as exc:
                docs = ", ".join(dict.fromkeys(j.doc.id[:12] for j in pending))
                raise LLMError(f"llm extractor (documents {docs}): {exc}") from exc
            self.stats.llm_calls += 1
            self.stats.requests += len(pending)
            if len(gens) != len(pending):
                raise LLMError(f"llm extractor: {len(gens)} replies for {len(pending)} prompts")
            failed = []
            for job, gen in zip(pending, gens, strict=True):
                try:
                    job.reply = self.prompt.parse(gen.text)
                except ReplyError as exc:
                    # A reply cut short is the likelier cause than a model ignoring the schema.
                    cut = gen.finish_reason == "length"
                    job.error = (
                        f"the reply was cut at max_tokens={self.params.max_tokens} ({exc})"
                        if cut
                        else str(exc)
                    )
                    job.messages = [*job.messages, Message("assistant", gen.text[:2000]), reminder(job.error)]
                    failed.append(job)
                    continue
                self.cache.put(job.key, self.model_id, self.prompt.version, json.dumps(job.reply.to_json()))
            if failed and attempt < self.retries:
                self.stats.retried += len(failed)
            pending = failed
        for job in pending:
            reason = (
                f"document {job.doc.id[:12]} chunk {job.chunk.ordinal}: skipped after "
                f"{self.retries + 1} attempt(s): {job.error}"
            )
            log.warning("llm extractor: %s", reason)
            self.stats.skipped += 1
            self.stats.reasons = [*self.stats.reasons[-19:], reason]

    # -- turning a reply into an Extraction -------------------------------------------------

    def _extraction(self, job: _Job) -> Extraction:
        if job.reply is None:
            return Extraction((), ())
        doc, chunk, reply = job.doc, job.chunk, job.reply
        ctx = TimeContext(doc.reference_time, self.fiscal_year_start_month)
        entities: list[EntityMention] = []
        subject_key = fold(doc.subject) if doc.subject else None
        subject_type = EntityType.ORGANIZATION  # what a document is about, unless the model says otherwise
        known: set[str] = set()
        lowered, folded = chunk.text.lower(), fold(chunk.text)
        for e in reply.entities:
            key = fold(e.name)
            if not key or key in known:
                continue
            if key == subject_key:
                subject_type = entity_type(e.type, subject_type)
                continue
            if key not in folded:
                log.debug("llm extractor: entity %r is not in chunk %s; dropped", e.name, chunk.id)
                continue
            known.add(key)
            start = lowered.find(e.name.lower())
            end = start + len(e.name) if start >= 0 else -1
            entities.append(EntityMention(e.name, entity_type(e.type), start, end))
        if doc.subject:
            entities.insert(0, EntityMention(doc.subject, subject_type))
        sentences = [s.text for s in split_sentences(chunk.text)]
        names = [m.text for m in entities]
        facts: list[FactDraft] = []
        seen: set[tuple[str, str, str, str, str]] = set()
        for f in reply.facts:
            draft = self._fact(doc, chunk, f, sentences, names, ctx)
            if draft is None:
                self.stats.facts_dropped += 1
                continue
            ident = (draft.subject, draft.relation, draft.object, draft.time.label, draft.text)
            if ident not in seen:
                seen.add(ident)
                facts.append(draft)
        self.stats.facts += len(facts)
        return Extraction(tuple(entities), tuple(facts))

    def _fact(
        self,
        doc: Document,
        chunk: Chunk,
        f: FactReply,
        sentences: list[str],
        names: list[str],
        ctx: TimeContext,
    ) -> FactDraft | None:
        sentence = ground_sentence(f.sentence, sentences, self.min_overlap)
        if sentence is None:
            log.info(
                "llm extractor: document %s chunk %d: fact dropped, its sentence is not in the chunk: %r",
                doc.id[:12],
                chunk.ordinal,
                f.sentence[:120],
            )
            return None
        if sentence != f.sentence:
            self.stats.sentences_mapped += 1
        obj = f.object.strip()
        if not obj:
            log.info("llm extractor: chunk %s: fact without an object dropped: %r", chunk.id, sentence[:80])
            return None
        time = resolve_time(f.time, ctx)
        explicit = time is not None and bool(find_times(sentence, ctx))
        if time is None:
            time = ctx.reference or TimeInterval.always()
        value, unit = _value(sentence, f.value, f.unit)
        subject = _subject(f.subject, doc)
        mentions = [n for n in names if fold(n) in fold(sentence)]
        mentions += [subject] + ([doc.subject] if doc.subject else [])
        relation = " ".join(f.relation.lower().split()[:8]) or "states"
        return FactDraft(
            subject=subject,
            relation=relation,
            object=obj,
            time=time,
            text=sentence,
            value=value,
            unit=unit,
            mentions=tuple(dict.fromkeys(mentions)),
            confidence=0.6 + (0.2 if explicit else 0.0),
            time_explicit=explicit,
        )


# ---- helpers ------------------------------------------------------------------------------------
_SELF = {"we", "us", "our", "ours", "i", "the company", "company", "the group", "the firm", "management"}
_NO_TIME = {"", "null", "none", "n/a", "na", "unknown", "not stated", "unspecified"}
_RANGE_SEP = re.compile(r"\s*(?:\.\.|/|\bto\b|\bthrough\b|\buntil\b)\s*", re.IGNORECASE)


def _subject(name: str, doc: Document) -> str:
    """The model's subject, with "we" and the like read as the document's subject."""
    if name and fold(name) not in _SELF:
        return name
    return doc.subject or name or doc.source or f"document {doc.id[:8]}"


def resolve_time(text: str | None, ctx: TimeContext) -> TimeInterval | None:
    """The model's time string as an interval, read like a time in the text; None when it names none."""
    if text is None or fold(text).strip(" .") in _NO_TIME:
        return None
    whole = parse_time(text, ctx)
    if whole is not None:
        return whole
    # "2019..2021", "2024-04-01/2024-06-30": a normalised span the prose reader does not know.
    parts = _RANGE_SEP.split(text.strip())
    if len(parts) == 2:
        first, last = parse_time(parts[0], ctx), parse_time(parts[1], ctx)
        if first is not None and last is not None and first.start_ordinal < last.end_ordinal:
            return TimeInterval.span(first, last)
    found = find_times(text, ctx)
    main = [m for m in found if not m.comparative] or found
    return main[0].interval if main else None


def ground_sentence(claimed: str, sentences: Sequence[str], min_overlap: float = 0.5) -> str | None:
    """The chunk sentence a fact's claimed sentence is: itself, the one containing it, or the one
    sharing the most words (Dice >= ``min_overlap``); None when no sentence is close enough."""
    norm = " ".join(claimed.split())
    if not norm:
        return None
    for s in sentences:
        if s == norm:
            return s
    low = fold(norm)
    containing = [s for s in sentences if low in fold(s)]
    if containing:
        return min(containing, key=len)
    claimed_words = set(words(norm))
    if not claimed_words:
        return None
    best, best_score = None, 0.0
    for s in sentences:
        ws = set(words(s))
        if not ws:
            continue
        score = 2 * len(claimed_words & ws) / (len(claimed_words) + len(ws))
        if score > best_score:
            best, best_score = s, score
    return best if best_score >= min_overlap else None


_SCALES = (1.0, 1e3, 1e6, 1e9, 1e12)


def _value(sentence: str, value: float | None, unit: str | None) -> tuple[float | None, str | None]:
    """The figure as ``rules`` reads it from the sentence when the model's number is one of its
    figures ("4.1" "USD billion" -> 4.1e9 "USD"); else the model's own, as given."""
    if value is None:
        return None, None
    for v in find_values(sentence):
        if any(math.isclose(v.number, value * s, rel_tol=1e-9) for s in _SCALES):
            return v.number, v.unit
    unit = " ".join((unit or "").split()) or None
    return value, unit


@EXTRACTORS.register("llm")
def _llm(arg: str | None, *, fiscal_year_start_month: int = 1, **kwargs: Any) -> LLMExtractor:
    if not arg:
        raise ValueError(
            "the llm extractor needs an LLM spec: 'llm:openai:http://127.0.0.1:8000/v1#model' "
            "or 'llm:transformers:/path/to/model'"
        )
    return LLMExtractor(arg, fiscal_year_start_month=fiscal_year_start_month, **kwargs)


# The prompt's names are re-exported: ``tgrag.extract.llm`` is the one import for using the extractor.
__all__ = [
    "FACTS_PROMPT",
    "PROMPT_VERSION",
    "REPLY_SCHEMA",
    "ChunkReply",
    "EntityReply",
    "ExtractionPrompt",
    "ExtractorStats",
    "FactReply",
    "LLMExtractor",
    "PromptContext",
    "ReplyCache",
    "ReplyError",
    "cache_key",
    "facts_prompt",
    "ground_sentence",
    "parse_reply",
    "reminder",
    "resolve_time",
]
