"""Typed data model: documents, chunks, entities, facts, time.

Every public type is a frozen dataclass. Times are half-open intervals of calendar days,
``[start, end)``, with ``None`` for an unbounded side, so "1916-1920" and "until 1935" and
"since 2005" are all the same kind of object and overlap tests are one comparison each way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from enum import Enum
from typing import Any


class Granularity(str, Enum):
    """How precisely a time is known. Ordered from finest to coarsest by ``rank``."""

    DAY = "day"
    MONTH = "month"
    QUARTER = "quarter"
    HALF = "half"
    YEAR = "year"
    DECADE = "decade"
    RANGE = "range"  # an explicit span: "1916-1920", "from Q2 2024 to Q4 2024", "until 1935"
    UNKNOWN = "unknown"  # no time stated: valid at all times as far as we know

    @property
    def rank(self) -> int:
        return _GRANULARITY_RANK[self]


_GRANULARITY_RANK = {g: i for i, g in enumerate(Granularity)}

# Ordinal-day sentinels used for unbounded interval sides in storage and in numpy arrays.
MIN_ORDINAL = 0
MAX_ORDINAL = date.max.toordinal() + 1


@dataclass(frozen=True)
class TimeInterval:
    """A half-open interval of days ``[start, end)``; ``None`` means unbounded on that side."""

    start: date | None
    end: date | None
    granularity: Granularity = Granularity.RANGE
    label: str = ""  # canonical text, e.g. "2024-Q3", "1916..1920"; filled in by the constructors

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"empty time interval: start {self.start} is not before end {self.end}")
        if not self.label:
            object.__setattr__(self, "label", _default_label(self))

    # ---- constructors -------------------------------------------------------------------
    @classmethod
    def day(cls, d: date) -> TimeInterval:
        end = None if d == date.max else d + timedelta(days=1)
        return cls(d, end, Granularity.DAY, d.isoformat())

    @classmethod
    def month(cls, year: int, month: int) -> TimeInterval:
        if not 1 <= month <= 12:
            raise ValueError(f"month must be 1..12, got {month}")
        end = _first_of(year + 1, 1) if month == 12 else _first_of(year, month + 1)
        return cls(date(year, month, 1), end, Granularity.MONTH, f"{year:04d}-{month:02d}")

    @classmethod
    def quarter(cls, year: int, quarter: int) -> TimeInterval:
        if not 1 <= quarter <= 4:
            raise ValueError(f"quarter must be 1..4, got {quarter}")
        end = _first_of(year + 1, 1) if quarter == 4 else _first_of(year, 3 * quarter + 1)
        return cls(date(year, 3 * quarter - 2, 1), end, Granularity.QUARTER, f"{year:04d}-Q{quarter}")

    @classmethod
    def half(cls, year: int, half: int) -> TimeInterval:
        if half not in (1, 2):
            raise ValueError(f"half must be 1 or 2, got {half}")
        end = _first_of(year, 7) if half == 1 else _first_of(year + 1, 1)
        return cls(date(year, 1 if half == 1 else 7, 1), end, Granularity.HALF, f"{year:04d}-H{half}")

    @classmethod
    def year(cls, year: int) -> TimeInterval:
        return cls(date(year, 1, 1), _first_of(year + 1, 1), Granularity.YEAR, f"{year:04d}")

    @classmethod
    def decade(cls, first_year: int) -> TimeInterval:
        first_year -= first_year % 10
        return cls(
            date(first_year, 1, 1), _first_of(first_year + 10, 1), Granularity.DECADE, f"{first_year:04d}s"
        )

    @classmethod
    def span(cls, first: TimeInterval, last: TimeInterval) -> TimeInterval:
        """From the start of ``first`` to the end of ``last`` (either may be unbounded)."""
        return cls(first.start, last.end, Granularity.RANGE)

    @classmethod
    def always(cls) -> TimeInterval:
        return cls(None, None, Granularity.UNKNOWN, "always")

    # ---- queries ------------------------------------------------------------------------
    @property
    def start_ordinal(self) -> int:
        return MIN_ORDINAL if self.start is None else self.start.toordinal()

    @property
    def end_ordinal(self) -> int:
        return MAX_ORDINAL if self.end is None else self.end.toordinal()

    @property
    def bounded(self) -> bool:
        return self.start is not None and self.end is not None

    @property
    def days(self) -> int | None:
        return (self.end - self.start).days if self.start and self.end else None

    def overlaps(self, other: TimeInterval) -> bool:
        return self.start_ordinal < other.end_ordinal and other.start_ordinal < self.end_ordinal

    def contains(self, other: TimeInterval) -> bool:
        return self.start_ordinal <= other.start_ordinal and other.end_ordinal <= self.end_ordinal

    def contains_date(self, d: date) -> bool:
        return self.start_ordinal <= d.toordinal() < self.end_ordinal

    @classmethod
    def from_ordinals(cls, start: int, end: int, granularity: Granularity, label: str = "") -> TimeInterval:
        return cls(
            None if start <= MIN_ORDINAL else date.fromordinal(start),
            None if end >= MAX_ORDINAL else date.fromordinal(end),
            granularity,
            label,
        )


def _first_of(year: int, month: int) -> date | None:
    """The first day of a month; None (unbounded) past the end of the calendar, year 9999."""
    return date(year, month, 1) if year <= date.max.year else None


def _default_label(t: TimeInterval) -> str:
    if t.start is None and t.end is None:
        return "always"
    left = t.start.isoformat() if t.start else ""
    right = (t.end - timedelta(days=1)).isoformat() if t.end else ""
    return f"{left}..{right}"


class EntityType(str, Enum):
    ORGANIZATION = "organization"
    PERSON = "person"
    PRODUCT = "product"
    PLACE = "place"
    OTHER = "other"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def content_hash(text: str) -> str:
    """The document id: a hash of the text, so re-ingesting the same text is a no-op."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Document:
    """A text with the time it belongs to.

    ``date`` is when the document was written or published. ``period`` is the time it reports on
    when that differs (an earnings call for fiscal Q4 2024 held in February 2025). Sentences that
    name no time of their own are anchored to ``period`` if given, else ``date``; relative
    expressions ("last quarter") are resolved against the same reference. ``subject`` is the
    entity the document is about (a company, a page title): the default subject of its facts.
    """

    text: str
    date: date | None = None
    period: TimeInterval | None = None
    subject: str | None = None
    aliases: tuple[str, ...] = ()
    source: str | None = None  # a file name or URL, shown in citations
    key: str | None = None  # the caller's own stable identifier, unique in a store
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    id: str = ""  # content hash of ``text``; computed when empty

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(
                f"Document.text must be str, not {type(self.text).__name__} (decode bytes as UTF-8 first)"
            )
        if not self.id:
            object.__setattr__(self, "id", content_hash(self.text))

    @property
    def reference_time(self) -> TimeInterval | None:
        if self.period is not None:
            return self.period
        return TimeInterval.day(self.date) if self.date is not None else None


@dataclass(frozen=True)
class Chunk:
    id: str
    doc_id: str
    ordinal: int
    text: str
    start: int  # character offsets into the document text
    end: int


@dataclass(frozen=True)
class Entity:
    id: int
    name: str
    type: EntityType
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class EntityMention:
    """An entity as one extractor saw it in one chunk, before resolution."""

    text: str
    type: EntityType
    start: int = -1  # offsets in the chunk text, -1 when unknown
    end: int = -1
    alias_of: str | None = None  # another mention's name this one also names: a ticker after a company


@dataclass(frozen=True)
class FactDraft:
    """A fact as an extractor produced it, before entity resolution and merging.

    ``text`` is the sentence that states the fact: it is what retrieval ranks and what an answer
    cites. ``subject`` and ``mentions`` are surface strings resolved to entities at ingest.
    """

    subject: str
    relation: str
    object: str
    time: TimeInterval
    text: str
    value: float | None = None
    unit: str | None = None
    mentions: tuple[str, ...] = ()
    confidence: float = 0.5
    time_explicit: bool = False  # True when the sentence itself names the time


@dataclass(frozen=True)
class Extraction:
    entities: tuple[EntityMention, ...]
    facts: tuple[FactDraft, ...]


@dataclass(frozen=True)
class Source:
    """One chunk that stated a fact, and when we learned it."""

    doc_id: str
    chunk_id: str
    ingested_at: datetime
    document_source: str | None = None


@dataclass(frozen=True)
class Fact:
    """A temporal fact: (subject, relation, object, valid time), with every source that stated it.

    Facts are bi-temporal: ``time`` is when the fact holds in the world, ``first_ingested_at`` when
    the store first learned it. Identical statements at different valid times are different facts.
    """

    id: int
    subject_id: int
    subject: str
    relation: str
    object: str
    time: TimeInterval
    text: str
    value: float | None
    unit: str | None
    confidence: float
    first_ingested_at: datetime
    sources: tuple[Source, ...] = ()
    entity_ids: tuple[int, ...] = ()


class TimeLevel(str, Enum):
    YEAR = "year"
    QUARTER = "quarter"
    MONTH = "month"
    DAY = "day"


@dataclass(frozen=True)
class TimeNode:
    """A node of the year > quarter > month > day hierarchy, with an extractive summary."""

    id: str  # "2024", "2024-Q3", "2024-07", "2024-07-15"
    level: TimeLevel
    parent: str | None
    interval: TimeInterval
    summary: str = ""
    dirty: bool = True
    fact_count: int = 0
    summary_fact_ids: tuple[int, ...] = ()  # the facts the summary quotes; a parent builds on them


class EvidenceKind(str, Enum):
    FACT = "fact"
    SUMMARY = "summary"
    CHUNK = "chunk"


@dataclass(frozen=True)
class Evidence:
    """One retrieved item, ready to put in front of a reader: text, time, source and score."""

    text: str
    time: TimeInterval
    score: float
    kind: EvidenceKind = EvidenceKind.FACT
    doc_id: str | None = None
    source: str | None = None
    item_id: str = ""  # "fact:12", "summary:2024-Q3", "chunk:<id>"
    subject: str | None = None
    tokens: int = 0


@dataclass(frozen=True)
class QueryScope:
    """The time a question asks about. ``interval`` is always(), for questions naming no time."""

    interval: TimeInterval
    relation: str = "all"  # "at", "before", "after", "between", "all"
    text: str = ""  # the words of the question that set the scope

    @property
    def unbounded(self) -> bool:
        return self.interval.start is None and self.interval.end is None


@dataclass(frozen=True)
class RetrievalResult:
    question: str
    scope: QueryScope
    evidence: tuple[Evidence, ...]
    abstained: bool = False
    reason: str = ""  # why it abstained, in words a user can act on
    entities: tuple[str, ...] = ()  # store entities the question was matched to
    as_of: datetime | None = None


@dataclass(frozen=True)
class Citation:
    text: str
    time: str
    source: str | None
    doc_id: str | None
    item_id: str

    @classmethod
    def of(cls, ev: Evidence) -> Citation:
        return cls(ev.text, ev.time.label, ev.source, ev.doc_id, ev.item_id)


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    citations: tuple[Citation, ...] = ()
    abstained: bool = False
    reason: str = ""
    retrieval: RetrievalResult | None = None
