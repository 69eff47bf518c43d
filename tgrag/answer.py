"""The extractive answerer: no LLM. The best span of the expected kind from the best evidence.

A question frame says what kind of answer is wanted: a person ("who"), a place ("where"), a value
("how much", "what was the margin"), a time ("when"), or the thing its head noun names ("which
political party", "what football squad"). Candidate spans are collected from the top evidence and
scored by: the evidence's score and rank; how well the span fits the wanted kind (entity type
rules, and for a head noun the embedding similarity of noun and span); whether the span sits next
to a time that falls in the asked scope; and never being the question's own entities. "Which
quarter had the highest X" compares the values of X across the evidence's periods instead.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from . import aggregate
from .embed import Embedder
from .extract.mentions import find_mentions
from .extract.values import find_values
from .model import Answer, Citation, EntityType, Evidence, QueryScope, RetrievalResult
from .text import STOPWORDS, name_key, words
from .timex import find_times


class AnswerKind(str, Enum):
    ENTITY = "entity"
    PERSON = "person"
    PLACE = "place"
    VALUE = "value"
    TIME = "time"
    PERIOD_EXTREME = "period_extreme"  # "in which quarter was X highest"
    SENTENCE = "sentence"


_PERIOD_WORDS = r"(?:quarter|year|month|period|fiscal year|half)"
_PLACE_NOUNS = (
    r"(?:city|country|town|state|place|location|county|capital|region|venue|stadium|site|village|area)"
)
_PERSON_NOUNS = r"(?:person|man|woman|actor|actress|player|coach|manager|leader|president|head|editor|director|owner|chairman|ceo|occupant|author|singer|spouse|wife|husband)"
_VALUE_CUES = re.compile(r"\bhow (?:much|many)\b|\bnumber of\b", re.IGNORECASE)
_METRIC_WORDS = re.compile(
    r"\b(revenues?|margins?|income|growth|rate|costs?|prices?|sales|eps|earnings|ebitda|cash|flow|ratio|guidance|"
    r"percentage|amount|value|profits?|loss(?:es)?|expenses?|debt|dividends?|utilization|occupancy|total|"
    r"billings|bookings|backlog|assets|liquidity|spend(?:ing)?|capex|orders|shipments|volume|share|shares|"
    r"production|throughput|leverage|yield|return|returns|salary|population|budget|valuation|payout|"
    r"headcount|employees|customers|subscribers|users|stores)\b",
    re.IGNORECASE,
)
_WH = re.compile(r"\b(who|whom|whose|where|when|which|what)\b", re.IGNORECASE)


@dataclass(frozen=True)
class QuestionFrame:
    kind: AnswerKind
    noun: str | None = None  # the head noun phrase of "which/what <noun>": "political party"


def analyse(question: str) -> QuestionFrame:
    q = " ".join(question.strip().lower().split())
    if re.search(rf"\b(?:which|what) {_PERIOD_WORDS}\b", q) and aggregate.asks_extreme(q) is not None:
        return QuestionFrame(AnswerKind.PERIOD_EXTREME)
    if re.search(r"\b(?:when|what year|which year|what date|which date)\b", q):
        return QuestionFrame(AnswerKind.TIME)
    if _VALUE_CUES.search(q) or (re.match(r"^(?:what|which)\b", q) and _METRIC_WORDS.search(q)):
        return QuestionFrame(AnswerKind.VALUE)
    wh = _WH.search(q)
    if wh is None:
        return QuestionFrame(AnswerKind.SENTENCE)
    word = wh.group(1)
    if word in ("who", "whom", "whose"):
        return QuestionFrame(AnswerKind.PERSON, "person")
    if word == "where":
        return QuestionFrame(AnswerKind.PLACE, "place")
    noun = _head_noun(q[wh.end() :])
    if noun and re.search(rf"\b{_PERSON_NOUNS}\b", noun):
        return QuestionFrame(AnswerKind.PERSON, noun)
    if noun and re.search(rf"\b{_PLACE_NOUNS}\b", noun):
        return QuestionFrame(AnswerKind.PLACE, noun)
    return QuestionFrame(AnswerKind.ENTITY, noun)


def _head_noun(rest: str) -> str | None:
    """The noun phrase after which/what: "football team did ..." -> "football team"."""
    tokens = re.findall(r"[a-z][a-z'-]*", rest)
    out: list[str] = []
    for t in tokens:
        if t in STOPWORDS or t in {"did", "was", "were", "is", "are", "does", "do", "has", "had"}:
            break
        out.append(t)
        if len(out) == 3:
            break
    if out and out[0] in ("kind", "type", "name", "sort") and len(out) == 1:
        return None
    return " ".join(out) or None


def question_kind(question: str) -> AnswerKind:
    return analyse(question).kind


class ExtractiveAnswerer:
    name = "extractive"

    def __init__(self, embedder: Embedder | None = None, evidence_considered: int = 8) -> None:
        self.embedder = embedder  # optional: scores spans against the question's head noun
        self.evidence_considered = evidence_considered

    def answer(self, result: RetrievalResult) -> Answer:
        question = result.question
        if result.abstained or not result.evidence:
            return Answer(
                question, f"No answer: {result.reason or 'no evidence'}.", (), True, result.reason, result
            )
        frame = analyse(question)
        combined = _combined(question, frame, result)
        if combined is not None:
            text, used = combined
            return Answer(
                question, text, tuple(Citation.of(result.evidence[i]) for i in used), False, "", result
            )
        if frame.kind is AnswerKind.PERIOD_EXTREME:
            frame = QuestionFrame(AnswerKind.TIME)
        evidence = list(result.evidence[: self.evidence_considered])
        text, used = self._best_span(question, frame, evidence, result.scope, result.entities)
        return Answer(question, text, tuple(Citation.of(evidence[i]) for i in used), False, "", result)

    def _best_span(
        self,
        question: str,
        frame: QuestionFrame,
        evidence: Sequence[Evidence],
        scope: QueryScope,
        entities: Sequence[str],
    ) -> tuple[str, list[int]]:
        excluded = _question_keys(question, entities)
        q_words = set(words(question))
        top = max((e.score for e in evidence), default=1.0)
        found: list[tuple[str, str, float, float, int]] = []  # key, surface, fit, anchor, evidence index
        for i, ev in enumerate(evidence):
            times = [t for t in find_times(ev.text) if scope.unbounded or t.interval.overlaps(scope.interval)]
            spans = _candidates(ev.text, frame.kind)
            long_forms = {_initials(c): c for c, _, _ in spans if len(c.split()) > 1}
            for cand, fit, start in spans:
                cand = (
                    long_forms.get(cand.lower(), cand) if cand.isupper() else cand
                )  # "BNP" -> its long form
                key = name_key(cand) if frame.kind is not AnswerKind.VALUE else cand.lower()
                cand_words = set(words(cand))
                if (
                    not key
                    or key in excluded
                    or _is_acronym_of(cand, excluded)
                    or (cand_words and cand_words <= q_words)
                ):
                    continue  # the question's own words are not its answer
                found.append((key, cand, fit, _anchor(start, times), i))
            if frame.kind is AnswerKind.TIME and ev.time.label not in ("", "always"):
                found.append((ev.time.label, _pretty_time(ev.time.label), 0.8, 1.0, i))
        if not found:
            return evidence[0].text, [0]
        similarity = self._noun_similarity(frame, {f[1] for f in found})
        support: dict[str, list[float]] = defaultdict(list)
        where: dict[str, list[int]] = defaultdict(list)
        surface: dict[str, str] = {}
        for key, cand, fit, anchor, i in found:
            ev = evidence[i]
            weight = (max(ev.score, 0.0) / top if top > 0 else 1.0) / (1.0 + 0.35 * i)
            if frame.kind is AnswerKind.VALUE and _CORRECTION.search(ev.text):
                weight *= 1.5  # a statement that corrects a figure supersedes the figure it corrects
            noun_fit = similarity.get(cand, 0.5)
            support[key].append(weight * fit * anchor * (0.5 + noun_fit))
            where[key].append(i)
            surface.setdefault(key, cand)
        # The best mention decides; repeats add a little (a name said often is not thereby the answer).
        scores = {k: max(v) + 0.2 * (sum(v) - max(v)) for k, v in support.items()}
        best = max(scores, key=lambda k: (scores[k], -where[k][0]))
        return surface[best], sorted(set(where[best]))[:3]

    def _noun_similarity(self, frame: QuestionFrame, candidates: set[str]) -> dict[str, float]:
        """How much each span looks like the thing asked for ("political party" ~ "Jatiyo Party")."""
        if self.embedder is None or not frame.noun or frame.kind in (AnswerKind.VALUE, AnswerKind.TIME):
            return {}
        names = sorted(candidates)
        vectors = self.embedder.embed([f"a {frame.noun}", *names])
        sims = vectors[1:] @ vectors[0]
        # Rescale within the question: the best-looking span gets 1, the worst 0.
        lo, hi = float(sims.min()), float(sims.max())
        scaled = (sims - lo) / (hi - lo) if hi > lo else np.full(len(names), 0.5)
        return dict(zip(names, scaled.tolist(), strict=True))


def _combined(question: str, frame: QuestionFrame, result: RetrievalResult) -> tuple[str, list[int]] | None:
    """An answer built from several pieces of evidence: a period's extreme, or a list of values."""
    evidence = result.evidence
    if frame.kind is AnswerKind.PERIOD_EXTREME:
        picks = aggregate.per_period(question, evidence)
        high = aggregate.asks_extreme(question)
        if len(picks) >= 2 and high is not None:
            best = (max if high else min)(picks, key=lambda p: p.number)
            return _pretty_time(best.label), sorted(p.evidence for p in picks)
    if frame.kind is AnswerKind.VALUE:
        if aggregate.asks_each_period(question):
            picks = aggregate.per_period(question, evidence)
        elif len(result.entities) >= 2:
            picks = aggregate.per_entity(question, result.entities, evidence)
        else:
            picks = []
        if len(picks) >= 2:
            return ", ".join(p.value for p in picks), [p.evidence for p in picks]
    return None


def _question_keys(question: str, entities: Sequence[str]) -> set[str]:
    keys = {name_key(m.text) for m in find_mentions(question)} | {name_key(e) for e in entities}
    return {k for k in keys if k}


def _initials(name: str) -> str:
    return "".join(w[0] for w in name_key(name).split() if w not in STOPWORDS)


def _is_acronym_of(candidate: str, keys: set[str]) -> bool:
    """ "PFF" for "Pakistan Football Federation": an acronym of the question's own entity."""
    if not (candidate.isupper() and 2 <= len(candidate) <= 6):
        return False
    return any(_initials(k) == candidate.lower() for k in keys)


def _anchor(start: int, times: list) -> float:
    """1.0, raised up to 1.5 for a span written right next to a time inside the asked scope."""
    if start < 0 or not times:
        return 1.0
    distance = min(min(abs(start - t.start), abs(start - t.end)) for t in times)
    return 1.0 + 0.5 * math.exp(-distance / 40.0)


_STARTING_POINT = re.compile(r"\bfrom\s*$", re.IGNORECASE)
_CORRECTION = re.compile(r"\b(restated|restates|revised|revises|corrected|corrects|amended)\b", re.IGNORECASE)

_FITS = {
    AnswerKind.PERSON: {
        EntityType.PERSON: 1.0,
        EntityType.ORGANIZATION: 0.55,
        EntityType.OTHER: 0.7,
        EntityType.PLACE: 0.3,
        EntityType.PRODUCT: 0.3,
    },
    AnswerKind.PLACE: {
        EntityType.PLACE: 1.0,
        EntityType.ORGANIZATION: 0.7,
        EntityType.OTHER: 0.8,
        EntityType.PERSON: 0.3,
        EntityType.PRODUCT: 0.3,
    },
    AnswerKind.ENTITY: {
        EntityType.ORGANIZATION: 1.0,
        EntityType.OTHER: 0.9,
        EntityType.PERSON: 0.6,
        EntityType.PLACE: 0.6,
        EntityType.PRODUCT: 0.7,
    },
    AnswerKind.SENTENCE: dict.fromkeys(EntityType, 0.5),
}


def _candidates(text: str, kind: AnswerKind) -> list[tuple[str, float, int]]:
    """Spans of ``text`` that could answer: (span, fit to the wanted kind, offset)."""
    if kind is AnswerKind.VALUE:
        # A figure written right after "from" is where a change started ("restated to $449 million
        # from $455 million", "rose from 3% to 5%"), not the value asked about.
        return [
            (v.text, 0.3 if _STARTING_POINT.search(text[: v.start]) else 1.0, v.start)
            for v in find_values(text)
        ]
    if kind is AnswerKind.TIME:
        return [(t.text, 1.0, t.start) for t in find_times(text)]
    out = []
    for m in find_mentions(text):
        fit = _FITS[kind].get(m.type, 0.5)
        if kind is AnswerKind.PERSON and m.type is EntityType.OTHER and len(m.text.split()) == 1:
            fit *= 0.6  # people are usually named with two words or more
        out.append((m.text, fit, m.start))
    if kind is AnswerKind.SENTENCE and not out:
        out = [(text, 0.4, 0)]
    return out


def _pretty_time(label: str) -> str:
    m = re.fullmatch(r"(\d{4})-Q([1-4])", label)
    return f"Q{m.group(2)} {m.group(1)}" if m else label
