"""Answers that combine several pieces of evidence: the value of a measure per period or per entity.

- "In which quarter of 2024 was X's margin highest?": each period's value, then the max (or min).
- "What was X's headcount in each quarter of 2022?": each period's value, in time order.
- "What were the operating margins of A, B and C in Q3 2024?": each entity's value, in the
  question's order.
Each evidence piece offers its first value; the piece that shares most words with the asked measure
wins its period (or entity).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .extract.mentions import find_mentions
from .extract.values import find_values
from .model import Evidence, Granularity
from .text import name_key, words

_SUPERLATIVE = re.compile(
    r"\b(highest|lowest|largest|smallest|most|least|best|worst|biggest|greatest|peak|maximum|minimum|strongest|weakest)\b",
    re.IGNORECASE,
)
_LOW_WORDS = {"lowest", "smallest", "least", "worst", "minimum", "weakest"}
_EACH_PERIOD = re.compile(
    r"\b(?:each|every) (?:quarter|year|month|half)\b|\bquarter by quarter\b", re.IGNORECASE
)
# Words that frame the question rather than name the measure compared.
_FRAME_WORDS = frozenset(
    """quarter year month period fiscal half highest lowest largest smallest most least best worst biggest
    greatest peak maximum minimum strongest weakest achieve achieved experience experienced report reported
    record recorded post posted see saw have had each every""".split()
)


@dataclass(frozen=True)
class Picked:
    label: str  # period label or entity name
    value: str
    number: float
    evidence: int  # index into the evidence


def measure_words(question: str) -> set[str]:
    """The question's words minus its entities, its times and its framing: what is measured."""
    found = set(words(question)) - _FRAME_WORDS
    for m in find_mentions(question):
        found -= set(words(m.text))
    return {w for w in found if not w.isdigit() and not re.fullmatch(r"q[1-4]", w)}


def asks_each_period(question: str) -> bool:
    return bool(_EACH_PERIOD.search(question))


def asks_extreme(question: str) -> bool | None:
    """True for "highest"-like, False for "lowest"-like, None when there is no superlative."""
    words_found = [w.lower() for w in _SUPERLATIVE.findall(question)]
    if not words_found:
        return None
    return not any(w in _LOW_WORDS for w in words_found)


_PERIOD_GRANULARITY = {
    "quarter": Granularity.QUARTER,
    "year": Granularity.YEAR,
    "month": Granularity.MONTH,
    "half": Granularity.HALF,
}
_PERIOD_NAMED = re.compile(r"\b(quarter|year|month|half)\b", re.IGNORECASE)


def per_period(question: str, evidence: Sequence[Evidence]) -> list[Picked]:
    """The best value for each period the evidence covers, in time order.

    Only evidence that mentions the measure counts, and only periods of the kind the question
    names ("which quarter" compares quarters, not a year's guidance).
    """
    measure = measure_words(question)
    named = _PERIOD_NAMED.search(question)
    wanted = _PERIOD_GRANULARITY[named.group(1).lower()] if named else None
    best: dict[str, tuple[float, Picked]] = {}
    for i, ev in enumerate(evidence):
        if not ev.time.bounded or ev.time.label in ("", "always"):
            continue
        if wanted is not None and ev.time.granularity is not wanted:
            continue
        picked = _first_value(ev, i, ev.time.label)
        if picked is None:
            continue
        overlap = len(measure & set(words(ev.text))) / max(len(measure), 1)
        if measure and overlap == 0:
            continue
        if ev.time.label not in best or overlap > best[ev.time.label][0]:
            best[ev.time.label] = (overlap, picked)
    order = sorted(best, key=lambda label: evidence[best[label][1].evidence].time.start_ordinal)
    return [best[label][1] for label in order]


def per_entity(question: str, entities: Sequence[str], evidence: Sequence[Evidence]) -> list[Picked]:
    """The best value for each asked entity, in the order the question names them."""
    measure = measure_words(question)
    out = []
    for name in entities:
        key = name_key(name)
        candidates = [(i, ev) for i, ev in enumerate(evidence) if ev.subject and name_key(ev.subject) == key]
        scored = []
        for i, ev in candidates:
            picked = _first_value(ev, i, name)
            if picked is not None:
                scored.append((len(measure & set(words(ev.text))), -i, picked))
        if scored:
            out.append(max(scored)[2])
    return out


def _first_value(ev: Evidence, index: int, label: str) -> Picked | None:
    values = find_values(ev.text)
    if not values:
        return None
    return Picked(label, values[0].text, values[0].number, index)
