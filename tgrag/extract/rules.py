"""The offline extractor: no LLM, no download. One informative sentence -> one or more facts.

A sentence is informative when it has a number, a time or a named entity, or is long enough to
say something (eight words) on its own. Its facts are anchored
to the times it names: the first time that is not a comparison point is the primary one (the
document's own period or date when it names none); each comparison point ("compared with 3.1% a
year ago") becomes a fact of its own, carrying the values written nearest to it. The subject is
the entity the sentence opens with, else the document's subject; the relation is the words
between the subject and the first value; the object is the values (or the next entity).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..model import Chunk, Document, EntityMention, EntityType, Extraction, FactDraft, TimeInterval
from ..text import split_sentences
from ..timex import TimeContext, TimeMention, find_times
from .base import EXTRACTORS
from .mentions import find_mentions, find_tickers
from .values import Value, find_values

_CHATTER = re.compile(
    r"^(?:thank(?:s| you)|good (?:morning|afternoon|evening|day)|hi\b|hello|yes\b|yeah|okay|ok\b|sure|great|"
    r"got it|understood|that's helpful|appreciate|congrat|operator\b|please go ahead|next question)",
    re.IGNORECASE,
)
_SPEAKER_RULE = re.compile(r"^\s*--\s*$")
_DIGIT = re.compile(r"\d")
MAX_FACTS_PER_SENTENCE = 3


class RuleExtractor:
    name = "rules"

    def __init__(self, fiscal_year_start_month: int = 1, min_words: int = 4) -> None:
        self.fiscal_year_start_month = fiscal_year_start_month
        self.min_words = min_words

    def extract(self, document: Document, chunks: Sequence[Chunk]) -> list[Extraction]:
        context = TimeContext(document.reference_time, self.fiscal_year_start_month)
        return [self._chunk(document, chunk, context) for chunk in chunks]

    def _chunk(self, doc: Document, chunk: Chunk, context: TimeContext) -> Extraction:
        entities: list[EntityMention] = []
        facts: list[FactDraft] = []
        if doc.subject:
            entities.append(EntityMention(doc.subject, _subject_type(doc.subject), -1, -1))
        lines = chunk.text.split("\n")
        for k, line in enumerate(lines):
            # Transcripts name speakers as "Name / -- / Title" on three lines: a role fact.
            if _SPEAKER_RULE.match(line) and 0 < k < len(lines) - 1:
                fact = _speaker_fact(doc, lines[k - 1].strip(), lines[k + 1].strip(), context)
                if fact is not None:
                    facts.append(fact)
                    entities.append(EntityMention(fact.subject, EntityType.PERSON))
        for sentence in split_sentences(chunk.text):
            text = sentence.text
            if len(text.split()) < self.min_words or _CHATTER.match(text):
                continue
            mentions = _with_tickers(text, find_mentions(text))
            times = find_times(text, context)
            values = _values_outside_times(text, times)
            if not (mentions or times or values or _DIGIT.search(text) or len(text.split()) >= 8):
                continue
            entities.extend(mentions)
            facts.extend(_sentence_facts(doc, text, mentions, times, values, context))
        return Extraction(tuple(entities), tuple(facts))


def _with_tickers(sentence: str, mentions: list[EntityMention]) -> list[EntityMention]:
    """A ticker in parentheses right after a name ("Apple Inc. (NASDAQ: AAPL)") is an alias of it."""
    tickers = find_tickers(sentence)
    if not tickers:
        return mentions
    out = list(mentions)
    for ticker, offset in tickers:
        owner = next((m for m in mentions if 0 <= offset - m.end <= 2 and m.text != ticker), None)
        if owner is not None:
            out = [m for m in out if m.text != ticker]
            out.append(
                EntityMention(
                    ticker, EntityType.ORGANIZATION, offset + 1, offset + 1 + len(ticker), owner.text
                )
            )
    return out


def _subject_type(name: str) -> EntityType:
    ms = find_mentions(f"about {name}")
    return ms[0].type if ms and ms[0].type is not EntityType.OTHER else EntityType.ORGANIZATION


def _values_outside_times(text: str, times: list[TimeMention]) -> list[Value]:
    return [v for v in find_values(text) if not any(t.start < v.end and v.start < t.end for t in times)]


def _sentence_facts(
    doc: Document,
    text: str,
    mentions: list[EntityMention],
    times: list[TimeMention],
    values: list[Value],
    context: TimeContext,
) -> list[FactDraft]:
    subject, subject_end = _subject(doc, text, mentions)
    primary = next((t for t in times if not t.comparative), None)
    anchors: list[tuple[TimeInterval, bool, int]] = []  # (time, explicit, position in the sentence)
    if primary is not None:
        anchors.append((primary.interval, True, primary.start))
    elif context.reference is not None:
        anchors.append((context.reference, False, -1))
    else:
        anchors.append((TimeInterval.always(), False, -1))
    for t in times:
        if t.comparative and all(t.interval != a[0] for a in anchors):
            anchors.append((t.interval, True, t.start))
    anchors = anchors[:MAX_FACTS_PER_SENTENCE]

    # A value belongs to a comparison point when a comparison cue leads into it ("compared with 3.1%
    # a year ago", "up from $3.9 billion last year"); every other value belongs to the primary time.
    assigned: dict[int, list[Value]] = {i: [] for i in range(len(anchors))}
    for v in values:
        assigned[_anchor_for(text, v, anchors)].append(v)

    others = [m for m in mentions if m.text != subject]
    mention_names = tuple(dict.fromkeys([m.text for m in mentions] + ([doc.subject] if doc.subject else [])))
    first_value = min((v.start for v in values if v.start >= subject_end), default=len(text))
    relation = _relation(_blank(text, times), subject_end, first_value)
    facts: list[FactDraft] = []
    for i, (time, explicit, _) in enumerate(anchors):
        vals = assigned[i]
        if i > 0 and not vals:
            continue  # a comparison point with no figure of its own adds nothing
        if vals:
            obj = "; ".join(v.text for v in vals[:3])
        elif others:
            obj = others[0].text
        else:
            obj = _tail(text, subject_end)
        confidence = 0.5 + (0.2 if explicit else 0.0) + (0.1 if subject_end > 0 else 0.0)
        facts.append(
            FactDraft(
                subject=subject,
                relation=relation,
                object=obj,
                time=time,
                text=text,
                value=vals[0].number if vals else None,
                unit=vals[0].unit if vals else None,
                mentions=mention_names,
                confidence=confidence,
                time_explicit=explicit,
            )
        )
    return facts


_COMPARISON_CUE = re.compile(r"\b(?:compared|versus|vs\.?|from|over|relative|against|than)\b", re.IGNORECASE)


def _anchor_for(text: str, v: Value, anchors: list[tuple[TimeInterval, bool, int]]) -> int:
    for i in range(1, len(anchors)):
        pos = anchors[i][2]
        if pos < v.end or pos - v.end > 40:
            continue  # the figure of a comparison is written just before its time
        if _COMPARISON_CUE.search(text[v.end : pos]):
            continue  # "$938 million compared to a year ago": the cue follows the figure
        if _COMPARISON_CUE.search(text[max(0, v.start - 40) : v.start]):
            return i
    return 0


def _subject(doc: Document, text: str, mentions: list[EntityMention]) -> tuple[str, int]:
    """(subject name, offset where the subject ends; 0 when the subject is implicit)."""
    names = {doc.subject.lower(), *(a.lower() for a in doc.aliases)} if doc.subject else set()
    for m in mentions:
        if m.text.lower() in names and m.start <= 40:
            return doc.subject or m.text, m.end
    for m in mentions:
        if m.start <= 25 and m.type is not EntityType.PRODUCT:
            return m.text, m.end
    if doc.subject:
        return doc.subject, 0
    if mentions:
        return mentions[0].text, 0
    return doc.source or f"document {doc.id[:8]}", 0


_RELATION_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_RELATION_STOP = {
    "the",
    "a",
    "an",
    "and",
    "that",
    "which",
    "in",
    "on",
    "at",
    "of",
    "our",
    "its",
    "their",
    "for",
    "was",
    "were",
    "is",
    "are",
    "to",
    "by",
    "with",
    "from",
    "as",
}


def _relation(text: str, begin: int, stop: int) -> str:
    if stop <= begin:
        stop = len(text)
    tokens = _RELATION_WORD.findall(text[begin:stop])
    while tokens and tokens[0].lower() in _RELATION_STOP:
        tokens.pop(0)
    while tokens and tokens[-1].lower() in _RELATION_STOP:
        tokens.pop()
    return " ".join(tokens[:8]).lower() or "states"


def _tail(text: str, begin: int) -> str:
    words = text[begin:].split()
    return " ".join(words[:10]).rstrip(".,;") if words else text


def _blank(text: str, times: list[TimeMention]) -> str:
    """The text with its time expressions replaced by spaces (offsets unchanged)."""
    for t in times:
        text = text[: t.start] + " " * (t.end - t.start) + text[t.end :]
    return text


def _speaker_fact(doc: Document, name: str, title: str, context: TimeContext) -> FactDraft | None:
    mentions = find_mentions(f"about {name}")
    if not mentions or mentions[0].text != name or not (2 <= len(name.split()) <= 4) or not title:
        return None
    if len(title.split()) > 12:
        return None
    time = context.reference or TimeInterval.always()
    org = f" of {doc.subject}" if doc.subject else ""
    return FactDraft(
        subject=name,
        relation="role",
        object=title,
        time=time,
        text=f"{name} -- {title}{org}".rstrip(".") + ".",  # "of Crocs, Inc." ends with its own period
        mentions=(name, *((doc.subject,) if doc.subject else ())),
        confidence=0.7,
        time_explicit=False,
    )


@EXTRACTORS.register("rules")
def _rules(arg: str | None, *, fiscal_year_start_month: int = 1, **_: object) -> RuleExtractor:
    return RuleExtractor(fiscal_year_start_month=fiscal_year_start_month)
