"""The extractive answerer: no LLM. The best span of the expected kind from the best evidence.

The question's wording says what kind of answer it wants: a person or organisation ("who",
"which club"), a place ("where"), a value ("how much", "what was the margin"), a time ("when",
"which quarter"). Candidate spans of that kind are collected from the evidence, weighted by the
evidence's rank and score, and the best one is the answer, cited with its evidence's time and
source. "Which quarter had the highest X" compares the values of X across the evidence's periods.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from enum import Enum

from .extract.mentions import find_mentions
from .extract.values import find_values
from .model import Answer, Citation, EntityType, Evidence, RetrievalResult
from .text import name_key, words


class AnswerKind(str, Enum):
    ENTITY = "entity"
    PERSON = "person"
    PLACE = "place"
    VALUE = "value"
    TIME = "time"
    PERIOD_EXTREME = "period_extreme"  # "in which quarter was X highest"
    SENTENCE = "sentence"


_PERIOD_WORDS = r"(?:quarter|year|month|period|fiscal year|half)"
_SUPERLATIVE = re.compile(
    r"\b(highest|lowest|largest|smallest|most|least|best|worst|biggest|greatest|peak|maximum|minimum|strongest|weakest)\b",
    re.IGNORECASE,
)
_LOW_WORDS = {"lowest", "smallest", "least", "worst", "minimum", "weakest"}
_ORG_NOUNS = re.compile(
    r"\b(team|club|employer|company|university|college|school|party|organi[sz]ation|institution|band|label|"
    r"firm|agency|league|conference|network|publisher|church|unit|brigade|division|ship|station|channel|"
    r"court|body|group|federation|association|side|franchise|studio|newspaper|magazine|owner)\b",
    re.IGNORECASE,
)
_PLACE_NOUNS = r"(?:city|country|town|state|place|location|county|capital|region|venue|stadium)"
_VALUE_CUES = re.compile(r"\bhow (?:much|many)\b", re.IGNORECASE)
_METRIC_WORDS = re.compile(
    r"\b(revenues?|margins?|income|growth|rate|costs?|prices?|sales|eps|earnings|ebitda|cash|flow|ratio|guidance|"
    r"percentage|amount|value|profits?|loss(?:es)?|expenses?|debt|dividends?|utilization|occupancy|total|"
    r"billings|bookings|backlog|assets|liquidity|spend(?:ing)?|capex|orders|shipments|volume|share|shares|"
    r"production|throughput|leverage|yield|return|returns|salary|population|budget|valuation|payout)\b",
    re.IGNORECASE,
)


_FRAME_WORDS = frozenset(
    """quarter year month period fiscal half highest lowest largest smallest most least best worst biggest
    greatest peak maximum minimum strongest weakest achieve achieved experience experienced report reported
    record recorded post posted see saw have had""".split()
)


def question_kind(question: str) -> AnswerKind:
    q = question.strip().lower()
    if re.match(rf"^(?:in |during |for )?(?:which|what) {_PERIOD_WORDS}\b", q) and _SUPERLATIVE.search(q):
        return AnswerKind.PERIOD_EXTREME
    if re.match(r"^(?:when|what year|which year|in what year|in which year|what date|on what date)\b", q):
        return AnswerKind.TIME
    if re.match(r"^(?:who|whom|whose)\b", q):
        return AnswerKind.PERSON
    if re.match(r"^where\b", q) or re.match(rf"^(?:which|what) (?:\w+ ){{0,2}}?{_PLACE_NOUNS}\b", q):
        return AnswerKind.PLACE
    if _VALUE_CUES.search(q) or (re.match(r"^(?:what|which)\b", q) and _METRIC_WORDS.search(q)):
        return AnswerKind.VALUE
    if re.match(r"^(?:which|what|whom|who)\b", q) or _ORG_NOUNS.search(q):
        return AnswerKind.ENTITY
    return AnswerKind.SENTENCE


class ExtractiveAnswerer:
    name = "extractive"

    def __init__(self, evidence_considered: int = 8) -> None:
        self.evidence_considered = evidence_considered

    def answer(self, result: RetrievalResult) -> Answer:
        question = result.question
        if result.abstained or not result.evidence:
            return Answer(
                question, f"No answer: {result.reason or 'no evidence'}.", (), True, result.reason, result
            )
        evidence = list(result.evidence[: self.evidence_considered])
        kind = question_kind(question)
        if kind is AnswerKind.PERIOD_EXTREME:
            picked = _period_extreme(question, evidence)
            if picked is not None:
                text, used = picked
                return Answer(question, text, tuple(_cite(evidence[i]) for i in used), False, "", result)
        text, used = _best_span(question, kind, evidence)
        return Answer(question, text, tuple(_cite(evidence[i]) for i in used), False, "", result)


def _cite(ev: Evidence) -> Citation:
    return Citation(ev.text, ev.time.label, ev.source, ev.doc_id, ev.item_id)


def _weight(rank: int, ev: Evidence, top: float) -> float:
    return (max(ev.score, 0.0) / top if top > 0 else 1.0) / (1.0 + 0.35 * rank)


def _best_span(question: str, kind: AnswerKind, evidence: Sequence[Evidence]) -> tuple[str, list[int]]:
    q_keys = {name_key(m.text) for m in find_mentions(question)}
    q_words = set(words(question))
    top = max((e.score for e in evidence), default=1.0)
    scores: dict[str, float] = defaultdict(float)
    where: dict[str, list[int]] = defaultdict(list)
    surface: dict[str, str] = {}
    for i, ev in enumerate(evidence):
        w = _weight(i, ev, top)
        for cand, fit in _candidates(ev.text, kind):
            key = name_key(cand) if kind is not AnswerKind.VALUE else cand.lower()
            if not key or key in q_keys or (set(words(cand)) and set(words(cand)) <= q_words):
                continue  # the question's own words are not its answer
            scores[key] += w * fit
            where[key].append(i)
            surface.setdefault(key, cand)
        if kind is AnswerKind.TIME:
            key = ev.time.label
            if key and key != "always":
                scores[key] += w * 0.8
                where[key].append(i)
                surface.setdefault(key, _pretty_time(key))
    if not scores:
        return evidence[0].text, [0]
    best = max(scores, key=lambda k: (scores[k], -where[k][0]))
    return surface[best], sorted(set(where[best]))[:3]


def _candidates(text: str, kind: AnswerKind) -> list[tuple[str, float]]:
    """Spans of ``text`` that could answer, each with how well it fits the wanted kind."""
    if kind is AnswerKind.VALUE:
        return [(v.text, 1.0) for v in find_values(text)]
    if kind is AnswerKind.TIME:
        from .timex import find_times

        return [(t.text, 1.0) for t in find_times(text)]
    fits = {
        AnswerKind.PERSON: {EntityType.PERSON: 1.0, EntityType.ORGANIZATION: 0.7, EntityType.OTHER: 0.6},
        AnswerKind.PLACE: {EntityType.PLACE: 1.0, EntityType.ORGANIZATION: 0.6, EntityType.OTHER: 0.7},
        AnswerKind.ENTITY: {
            EntityType.ORGANIZATION: 1.0,
            EntityType.OTHER: 0.8,
            EntityType.PERSON: 0.6,
            EntityType.PLACE: 0.6,
            EntityType.PRODUCT: 0.6,
        },
        AnswerKind.SENTENCE: {t: 0.5 for t in EntityType},
    }[kind]
    out = [(m.text, fits.get(m.type, 0.3)) for m in find_mentions(text)]
    if kind is AnswerKind.SENTENCE and not out:
        out = [(text, 0.4)]
    return out


def _pretty_time(label: str) -> str:
    m = re.fullmatch(r"(\d{4})-Q([1-4])", label)
    return f"Q{m.group(2)} {m.group(1)}" if m else label


def _period_extreme(question: str, evidence: Sequence[Evidence]) -> tuple[str, list[int]] | None:
    """The period whose value is highest (or lowest) among evidence about the asked measure."""
    low = any(w.lower() in _LOW_WORDS for w in _SUPERLATIVE.findall(question))
    # What is compared: the question's words minus its entities, its times and the superlative.
    q_words = set(words(question)) - _FRAME_WORDS
    for m in find_mentions(question):
        q_words -= set(words(m.text))
    q_words = {w for w in q_words if not w.isdigit() and not re.fullmatch(r"q[1-4]", w)}
    best_by_period: dict[str, tuple[float, float, int]] = {}  # label -> (relevance, value, evidence index)
    for i, ev in enumerate(evidence):
        values = find_values(ev.text)
        if not values or not ev.time.bounded or ev.time.label in ("", "always"):
            continue
        overlap = len(q_words & set(words(ev.text))) / max(len(q_words), 1)
        current = best_by_period.get(ev.time.label)
        if current is None or overlap > current[0]:
            best_by_period[ev.time.label] = (overlap, values[0].number, i)
    if len(best_by_period) < 2:
        return None
    pick = (min if low else max)(best_by_period.items(), key=lambda kv: kv[1][1])
    return _pretty_time(pick[0]), sorted(v[2] for v in best_by_period.values())
