"""Numbers with units, kept as values: "$4.97 per barrel", "RMB 26.7 billion", "27.1%", "13 new stores"."""

from __future__ import annotations

import re
from dataclasses import dataclass

_CURRENCY = r"(?P<cur>US\$|HK\$|C\$|A\$|S\$|R\$|\$|€|£|¥|₩|(?:RMB|USD|EUR|GBP|JPY|HKD|KRW|CNY|INR|SGD)\s?)"
_NUMBER = r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
_SCALE = r"(?:\s?(?P<scale>thousand|million|billion|trillion|mn|bn|[mbk])\b)?"
_UNIT = (
    r"(?:\s?(?P<unit>%|percent\b|per\s?cent\b|percentage points?\b|basis points?\b|bps\b|bp\b|times\b|x\b|"
    r"per (?:share|barrel|boe|diluted share|ads|square foot|unit|ton|tonne|mwh)\b))?"
)
_COUNT_NOUN = (
    r"(?:\s(?P<noun>(?:new |net new |company-owned |net )?(?:stores|restaurants|locations|shares|employees|"
    r"customers|users|units|barrels|vehicles|deliveries|subscribers|members|clients|countries|markets|"
    r"properties|homes|orders|contracts|days|months|patients|sites|rigs|wells)\b))?"
)
_VALUE = re.compile(
    rf"(?<![\w.,]){_CURRENCY}?{_NUMBER}(?![\d,]*\d){_SCALE}{_UNIT}{_COUNT_NOUN}",
    re.IGNORECASE,
)
_SCALES = {
    "thousand": 1e3,
    "k": 1e3,
    "million": 1e6,
    "mn": 1e6,
    "m": 1e6,
    "billion": 1e9,
    "bn": 1e9,
    "b": 1e9,
    "trillion": 1e12,
}


# Symbols -> ISO codes, so "HK$10 million" and "HKD 10 million" carry the same unit.
_CURRENCY_CODES = {
    "$": "USD", "US$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₩": "KRW",
    "HK$": "HKD", "C$": "CAD", "A$": "AUD", "S$": "SGD", "R$": "BRL",
}  # fmt: skip


@dataclass(frozen=True)
class Value:
    text: str
    start: int
    end: int
    number: float
    unit: str | None


def find_values(sentence: str) -> list[Value]:
    out: list[Value] = []
    for m in _VALUE.finditer(sentence):
        cur, scale, unit, noun = m.group("cur"), m.group("scale"), m.group("unit"), m.group("noun")
        if not (cur or scale or unit or noun):
            continue  # a bare number (a count, a year, a page) is not a value we can label
        number = float(m.group("num").replace(",", ""))
        if scale:
            number *= _SCALES[scale.lower()]
        label: str | None
        if unit:
            low = unit.lower()
            label = (
                "%"
                if low in {"%", "percent", "per cent", "percentcent"} or low.startswith("per cent")
                else low
            )
        elif noun:
            label = noun.lower()
        else:
            label = None
        if cur:
            c = cur.strip().upper()
            label = _CURRENCY_CODES.get(c, c) + (f" {label}" if label else "")
        text = m.group(0).rstrip()
        out.append(Value(text, m.start(), m.start() + len(text), number, label))
    return out
