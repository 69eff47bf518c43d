"""Time expressions in English text, turned into :class:`TimeInterval`.

Used by the fact extractor, to anchor each sentence of a transcript or a Wikipedia page to the time
it talks about (:func:`find_times`), and by retrieval, to read the time scope of a question
(:func:`parse_query_scope`). Everything is regular expressions over the raw text: one small family
per kind of expression ("May 7, 2024", "Q3 FY24", "the third quarter", "last year", ...). Candidates
from every family are collected in one pass and the longest non-overlapping ones kept; neighbours
are then joined into ranges ("from 1916 to 1920") or opened ("since 2005", "until 1935").

Relative expressions ("last quarter", a bare "third quarter") resolve against
``TimeContext.reference``. When ``fiscal_year_start_month`` is not 1, expressions that say "fiscal"
or "FY", and relative ones that name no year ("this year", "the third quarter"), use the fiscal
calendar, since a company's call means its own reporting periods; a plain "2024" or "Q3 2024" stays
calendar.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from .model import Granularity, QueryScope, TimeInterval

__all__ = ["TimeContext", "TimeMention", "find_times", "parse_date", "parse_query_scope", "parse_time"]

_G = Granularity


@dataclass(frozen=True)
class TimeContext:
    """What relative expressions resolve against, and where fiscal years start."""

    reference: TimeInterval | None = None  # the document's own time (its period or its date)
    fiscal_year_start_month: int = 1  # FY N starts in this month of year N-1 when != 1

    def __post_init__(self) -> None:
        fs = self.fiscal_year_start_month
        if isinstance(fs, bool) or not isinstance(fs, int) or not 1 <= fs <= 12:
            raise ValueError(f"fiscal_year_start_month must be an int in 1..12, got {fs!r}")


@dataclass(frozen=True)
class TimeMention:
    """One time expression found in a text."""

    text: str  # the matched words: text[start:end]
    start: int
    end: int
    interval: TimeInterval
    relative: bool  # resolved against the context's reference
    comparative: bool  # the period something is compared against, not the one reported


@dataclass
class _Cand:
    start: int
    end: int
    interval: TimeInterval | None  # None: a blocker ("February 30, 2024") that must not leave "2024" behind
    relative: bool = False
    kind: str = "point"  # point | range | after | before | past
    comparative: bool = False


class _NoReference(ValueError):
    """A relative expression with nothing to resolve it against: the candidate is dropped."""


# ---- vocabulary ---------------------------------------------------------------------------
_DASHES = r"\-‐‑‒–—−"
_D = f"[{_DASHES}]"
_APOS = "['’‘`]"
_Y4 = r"(?:1[0-9]{3}|2[01][0-9]{2})"  # the years we believe in: 1000..2199
_END = r"(?![\w%]|[.,][0-9])"  # a number really ends here: not "2024x", "2024%", "2024.5", "2,024,000"
# not the tail of a bigger number or an amount: "$2024", "4,2024", "555-2024" (phone numbers)
_NOT_AFTER_NUM = rf"(?<![\w$€£¥#+])(?<![0-9][.,/:{_DASHES}])"

_MONTH_NUM = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
_MONTH_WORDS = tuple(_MONTH_NUM)  # pre-check: families that need a month name
_DIGIT = re.compile("[0-9]")
_MONTH_CAP = "(?:January|February|March|April|May|June|July|August|September|October|November|December)"


def _month(name: str) -> str:
    return (
        rf"(?P<{name}>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
        rf"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b\.?"
    )


_ORD_NUM = {
    "first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
    "final": 4, "last": 4, "front": 1, "back": 2, "latter": 2,
}  # fmt: skip
_Q_ORD = r"(?P<ord>first|second|third|fourth|final|last|1st|2nd|3rd|4th)"
_H_ORD = r"(?P<ord>first|second|1st|2nd|front|back|latter)"
_NUM_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}  # fmt: skip
_NUM = r"(?P<n>an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|[0-9]{1,2})"
# relative-word -> offset in periods, after _norm() ("the prior" -> "prior", "the" -> "")
_OFFSETS = {
    "": 0, "this": 0, "current": 0, "same": 0, "that": 0, "full": 0, "this full": 0, "entire": 0, "whole": 0,
    "last": -1, "previous": -1, "prior": -1, "preceding": -1, "past": -1, "trailing": -1,
    "next": 1, "coming": 1, "upcoming": 1, "following": 1,
}  # fmt: skip
_REL_WORD = (
    r"this|current|the\s+current|the\s+same|the|full|the\s+full|this\s+full|the\s+entire|the\s+whole"
    r"|last|previous|prior|the\s+last|the\s+previous|the\s+prior|the\s+preceding"
    r"|next|the\s+next|the\s+coming|the\s+upcoming|the\s+following"
)
# a year, possibly fiscal or calendar: "2024", "fiscal 2024", "fiscal year '24", "FY24", "CY2024", "'24"
_YEAR_PART = (
    rf"(?:(?:fiscal(?:\s+year)?|calendar(?:\s+year)?)\s+{_APOS}?[0-9]{{2}}(?:[0-9]{{2}})?"
    rf"|(?:FY|CY)\s?{_APOS}?[0-9]{{2}}(?:[0-9]{{2}})?|{_Y4}|{_APOS}[0-9]{{2}})"
)
_REL_OF = r"(?P<relw>this|last|next|prior|previous|the\s+prior|the\s+previous|the\s+current|the\s+same|the|that)\s+(?:fiscal\s+|calendar\s+)?year\b(?!\s*[0-9])"
_UNIT_AFTER = re.compile(
    r"\s*(?:%|per\s*cent\b|(?:million|billion|thousand|units?|stores?|shares?|employees?|barrels?|bbls?|boe"
    r"|people|persons|customers?|locations?|restaurants?|homes?|houses?|tons?|tonnes?|acres?|miles?|km"
    r"|kilomet(?:er|re)s?|met(?:er|re)s?|feet|ft|pounds?|lbs?|dollars?|euros?|points|bps|basis\s+points"
    r"|students?|patients?|jobs|vehicles?|cars|wells?|rigs?|contracts|accounts|users|subscribers?"
    r"|franchises|outlets?|branches|beds|rooms|seats|troops|soldiers|copies|pages|items|transactions?"
    r"|hours|MW|GW|MWh|GWh|mcf|mmbtu|households?|workers?|staff|positions|doors|SKUs?)\b)",
    re.I,
)
_NOT_YEAR_BEFORE = re.compile(
    r"(?:\b(?:no|nos|number|route|flight|model|item|room|suite|exhibit|rule|section|chapter|highway"
    r"|interstate|patent|serial|tel|phone|fax|ext|page|pp)\.?|[#$€£¥])\s*$",
    re.I,
)


def _norm(word: str) -> str:
    w = " ".join(word.lower().split())
    return "" if w == "the" else w.removeprefix("the ")


def _count(word: str) -> int:
    return _NUM_WORDS.get(word.lower()) or int(word)


def _two_digit(yy: int, pivot: int = 50) -> int:
    return 2000 + yy if yy < pivot else 1900 + yy


def _year_part(s: str) -> tuple[int, bool]:
    """(year, fiscal) for a _YEAR_PART match."""
    digits = re.search(r"[0-9]+$", s)
    if digits is None:
        raise ValueError(s)
    n = int(digits.group())
    year = _two_digit(n) if len(digits.group()) == 2 else n
    if not 1000 <= year <= 2199:
        raise ValueError(s)
    return year, s.lower().startswith(("fiscal", "fy"))


# ---- calendar arithmetic ------------------------------------------------------------------
def _add_months(d: date, n: int) -> date:
    k = d.year * 12 + d.month - 1 + n
    y, m = divmod(k, 12)
    return date(y, m + 1, min(d.day, calendar.monthrange(y, m + 1)[1]))


def _period(year: int, part: int, per_year: int, fs: int) -> TimeInterval:
    """Part ``part`` (1-based) of (fiscal) year ``year`` cut into ``per_year`` equal parts."""
    if fs == 1 or per_year == 12:
        if per_year == 4:
            return TimeInterval.quarter(year, part)
        if per_year == 2:
            return TimeInterval.half(year, part)
        return TimeInterval.year(year) if per_year == 1 else TimeInterval.month(year, part)
    start = _add_months(date(year - 1, fs, 1), 12 // per_year * (part - 1))
    end = _add_months(start, 12 // per_year)
    gran, label = {1: (_G.YEAR, ""), 2: (_G.HALF, f"-H{part}"), 4: (_G.QUARTER, f"-Q{part}")}[per_year]
    return TimeInterval(start, end, gran, f"FY{year:04d}{label}")


def _index_of(d: date, per_year: int, fs: int) -> int:
    """Absolute index (year * per_year + part - 1) of the period containing ``d``."""
    months = 12 // per_year
    if fs == 1 or per_year == 12:
        return d.year * per_year + (d.month - 1) // months
    fy = d.year + (1 if d.month >= fs else 0)
    return fy * per_year + (d.month - fs) % 12 // months


def _from_index(i: int, per_year: int, fs: int) -> TimeInterval:
    return _period(i // per_year, i % per_year + 1, per_year, fs)


def _ref(ctx: TimeContext) -> TimeInterval:
    r = ctx.reference
    if r is None or (r.start is None and r.end is None):
        raise _NoReference("no reference time")
    return r


def _anchor(r: TimeInterval) -> date:
    """The reference's middle day: it picks the year and quarter that relative words mean."""
    if r.start is not None:
        return r.start if r.end is None else r.start + timedelta(days=(r.end - r.start).days // 2)
    assert r.end is not None  # _ref() turned always() away
    return r.end - timedelta(days=1)


def _last_day(r: TimeInterval) -> date:
    # a document about a year or a span is written at its end, so "this quarter" is its last one
    if r.granularity in (_G.DAY, _G.MONTH, _G.QUARTER) or r.end is None:
        return _anchor(r)
    return r.end - timedelta(days=1)


def _shift(r: TimeInterval, months: int, ctx: TimeContext) -> TimeInterval:
    """``r`` moved by whole months, keeping its granularity and canonical label."""
    if r.start is None or r.end is None:
        raise ValueError("unbounded reference")
    s, e = _add_months(r.start, months), _add_months(r.end, months)
    if r.granularity is _G.DAY:
        return TimeInterval.day(s)
    per = {_G.MONTH: 12, _G.QUARTER: 4, _G.HALF: 2, _G.YEAR: 1}.get(r.granularity)
    if per and s.day == 1 and e.day == 1:
        for fs in (1, ctx.fiscal_year_start_month):
            p = _from_index(_index_of(s, per, fs), per, fs)
            if p.start == s and p.end == e:
                return p
    return TimeInterval(s, e, r.granularity)


def _span(start: date | None, end: date | None, gran: Granularity = _G.RANGE) -> TimeInterval:
    return TimeInterval(start, end, gran)


# ---- families: regex + handler -------------------------------------------------------------
Handler = Callable[["re.Match[str]", TimeContext, str], "_Cand | list[_Cand] | None"]


@dataclass(frozen=True)
class _Family:
    regex: re.Pattern[str]
    handler: Handler
    digit: bool = True  # needs a digit in the text
    words: tuple[str, ...] = ()  # needs one of these in the lower-cased text (a cheap pre-check)
    ref: bool = False  # needs a reference


def _c(
    m: re.Match[str],
    iv: TimeInterval | None,
    relative: bool = False,
    group: int | str = 0,
    kind: str = "point",
    comparative: bool = False,
) -> _Cand:
    return _Cand(m.start(group), m.end(group), iv, relative, kind, comparative)


def _h_day(m: re.Match[str], ctx: TimeContext, text: str) -> _Cand:
    mon = m["m"]
    month = int(mon) if mon.isdigit() else _MONTH_NUM[mon.lower()[:3]]
    year = int(m["y"])
    try:
        if not 1000 <= year <= 2199:
            raise ValueError(year)
        return _c(m, TimeInterval.day(date(year, month, int(m["d"]))))
    except ValueError:
        return _c(m, None)  # "February 30, 2024", "13/45/2024": not a time, and no year either


def _h_day_range(m: re.Match[str], ctx: TimeContext, text: str) -> _Cand | None:
    y, mo = int(m["y"]), _MONTH_NUM[m["m"].lower()[:3]]
    first, last = date(y, mo, int(m["d1"])), date(y, mo, int(m["d2"]))
    return _c(m, _span(first, last + timedelta(days=1)), kind="range") if first < last else None


def _h_month_year(m: re.Match[str], ctx: TimeContext, text: str) -> _Cand:
    y = m["y"]
    year = _two_digit(int(y[1:])) if not y[0].isdigit() else int(y)
    return _c(m, TimeInterval.month(year, _MONTH_NUM[m["m"].lower()[:3]]))


def _h_month_rel(m: re.Match[str], ctx: TimeContext, text: str) -> _Cand:
    """ "June 3", "in March": the year comes from the reference."""
    year, mon = _anchor(_ref(ctx)).year, _MONTH_NUM[m["m"].lower()[:3]]
    if m.groupdict().get("d"):
        return _c(m, TimeInterval.day(date(year, mon, int(m["d"]))), True)
    return _c(m, TimeInterval.month(year, mon), True, group="m")


def _h_part(per_year: int) -> Handler:
    """Quarters (per_year=4) and halves (2), with a year or relative to the reference."""

    def handle(m: re.Match[str], ctx: TimeContext, text: str) -> _Cand | None:
        g = m.groupdict()
        word = (g.get("ord") or "").lower()
        part = _ORD_NUM[word] if word else int(g["p"])
        if not 1 <= part <= per_year:
            return _c(m, None)  # "Q5 2024"
        fiscal = bool(g.get("fis") or g.get("fis2") or g.get("fq"))
        fs = ctx.fiscal_year_start_month
        if g.get("yy") or g.get("yr"):
            year, fy = (_two_digit(int(g["yy"])), False) if g.get("yy") else _year_part(g["yr"])
            return _c(m, _period(year, part, per_year, fs if fiscal or fy else 1))
        if word == "last" and not g.get("relw"):
            return None  # "last quarter" is the previous one: the relative family owns it
        ref = _ref(ctx)
        if g.get("relw"):  # "fourth quarter of last year"
            k = _OFFSETS[_norm(g["relw"])]
            year = _index_of(_anchor(ref), 1, fs) + k
            return _c(m, _period(year, part, per_year, fs), True, comparative=k < 0)
        # no year: the one nearest the reference's own period, ties to the reference's year
        a = _index_of(_anchor(ref), per_year, fs)
        ay = a // per_year
        year = min((ay - 1, ay, ay + 1), key=lambda y: (abs(y * per_year + part - 1 - a), y != ay))
        return _c(m, _period(year, part, per_year, fs), True)

    return handle


def _h_year(m: re.Match[str], ctx: TimeContext, text: str) -> _Cand | list[_Cand] | None:
    if _NOT_YEAR_BEFORE.search(text, max(0, m.start() - 12), m.start()) or _UNIT_AFTER.match(text, m.end()):
        return None  # "No. 1999", "2024 units", "2024 %"
    y = int(m["y"])
    y2s, sep = m["y2"], (m["sep"] or "").strip()
    if y2s is None:
        return _c(m, TimeInterval.year(y))
    if len(y2s) == 4:
        y2 = int(y2s)
        if y2 > y:
            return _c(m, _span(date(y, 1, 1), date(y2 + 1, 1, 1)), kind="range")
        # "2016-1975" is no range; keep the two years apart
        return [
            _Cand(m.start("y"), m.end("y"), TimeInterval.year(y)),
            _c(m, TimeInterval.year(y2), group="y2"),
        ]
    yy = int(y2s)
    if sep in "-/" and 1 <= yy <= 12 and yy != (y + 1) % 100:
        return _c(m, TimeInterval.month(y, yy))  # "2024-05" (ISO month); "2010-11" is a season
    y2 = y - y % 100 + yy
    y2 += 100 if y2 <= y else 0  # "1999-00"
    return _c(m, _span(date(y, 1, 1), date(y2 + 1, 1, 1)), kind="range")  # "1916-20", "1995–96"


def _h_fiscal_year(m: re.Match[str], ctx: TimeContext, text: str) -> _Cand:
    year, fiscal = _year_part(m.group())
    return _c(m, _period(year, 1, 1, ctx.fiscal_year_start_month) if fiscal else TimeInterval.year(year))


def _h_decade(m: re.Match[str], ctx: TimeContext, text: str) -> _Cand:
    y = int(m["y"]) if m["y"] else _two_digit(int(m["yy"]), pivot=20)
    return _c(m, TimeInterval.decade(y))


def _h_rel_quarter(m: re.Match[str], ctx: TimeContext, text: str) -> _Cand:
    """ "this quarter", "the prior quarter", "next quarter", "two quarters ago"."""
    ref, fs, n = _ref(ctx), ctx.fiscal_year_start_month, m["n"]
    k = -_count(n) if n else _OFFSETS[_norm(m["w"])]
    if ref.granularity is _G.QUARTER and ref.bounded:
        return _c(m, _shift(ref, 3 * k, ctx), True)
    return _c(m, _from_index(_index_of(_last_day(ref), 4, fs) + k, 4, fs), True)


def _h_year_ago_period(m: re.Match[str], ctx: TimeContext, text: str) -> _Cand:
    """ "the prior-year quarter", "the same period last year": the reference, one year back."""
    ref, fs = _ref(ctx), ctx.fiscal_year_start_month
    if m["yr"]:  # "the same quarter in 2023": the reference's quarter, in that year
        year, fiscal = _year_part(m["yr"])
        fs = fs if fiscal else 1
        return _c(m, _period(year, _index_of(_anchor(ref), 4, fs) % 4 + 1, 4, fs), True, comparative=True)
    unit = (m["u"] or m["u2"]).lower()
    if unit == "period" or ref.granularity is {"quarter": _G.QUARTER, "month": _G.MONTH}[unit]:
        iv = _shift(ref, -12, ctx)
    elif unit == "quarter":
        iv = _from_index(_index_of(_last_day(ref), 4, fs) - 4, 4, fs)
    else:
        iv = TimeInterval.month(_anchor(ref).year - 1, _anchor(ref).month)
    return _c(m, iv, True, comparative=True)


def _h_rel_year(m: re.Match[str], ctx: TimeContext, text: str) -> _Cand:
    """ "this year", "the prior year", "next fiscal year", "a year ago", "two years ago"."""
    ref, n, f = _ref(ctx), m["n"], (m["f"] or "").lower()
    k = (-_count(n) if n else -1) if m["ago"] else _OFFSETS[_norm(m["w"])]  # "year-ago" has no n
    fs = 1 if f == "calendar" else ctx.fiscal_year_start_month
    if m["ago"] and k == -1 and ref.granularity in (_G.QUARTER, _G.MONTH) and ref.bounded:
        iv = _shift(ref, -12, ctx)  # earnings calls say "a year ago" for the same quarter of the prior year
    elif ref.granularity is _G.YEAR and ref.bounded and not f:
        iv = _shift(ref, 12 * k, ctx)
    else:
        iv = _from_index(_index_of(_anchor(ref), 1, fs) + k, 1, fs)
    return _c(m, iv, True, comparative=k == -1)


def _h_ytd(m: re.Match[str], ctx: TimeContext, text: str) -> _Cand:
    ref = _ref(ctx)
    start = _from_index(
        _index_of(_last_day(ref), 1, ctx.fiscal_year_start_month), 1, ctx.fiscal_year_start_month
    )
    return _c(m, _span(start.start, ref.end), True)


def _h_rel_month(m: re.Match[str], ctx: TimeContext, text: str) -> _Cand:
    ref, n = _ref(ctx), m["n"]
    k = -_count(n) if n else _OFFSETS[_norm(m["w"])]
    if ref.granularity is _G.MONTH:
        return _c(m, _shift(ref, k, ctx), True)
    if ref.granularity is not _G.DAY or ref.start is None:
        raise _NoReference("month words need a day or month reference")
    return _c(m, _shift(TimeInterval.month(ref.start.year, ref.start.month), k, ctx), True)


def _h_rel_day(m: re.Match[str], ctx: TimeContext, text: str) -> _Cand:
    ref = _ref(ctx)
    if ref.granularity is not _G.DAY or ref.start is None:
        raise _NoReference("'today' needs a day reference")
    k = {"today": 0, "yesterday": -1, "tomorrow": 1}[m.group().lower()]
    return _c(m, TimeInterval.day(ref.start + timedelta(days=k)), True)


def _h_rel_span(m: re.Match[str], ctx: TimeContext, text: str) -> _Cand | None:
    """ "the past two years" (back N periods through the current one), "the next 3 quarters"."""
    ref = _ref(ctx)
    n = _count(m["n"])
    per = {"years": 1, "quarters": 4, "months": 12}[m["u"].lower()]
    fs = 1 if (m["f"] or "").lower() == "calendar" else ctx.fiscal_year_start_month
    cur = _index_of(ref.end - timedelta(days=1) if ref.end else _anchor(ref), per, fs)
    if _OFFSETS[_norm(m["w"])] < 0:
        iv = _span(_from_index(cur - n, per, fs).start, _from_index(cur, per, fs).end)
        return _c(m, iv, True, kind="past")
    return _c(m, _span(_from_index(cur + 1, per, fs).start, _from_index(cur + n, per, fs).end), True)


# pieces shared by the families below
_DAY = r"(?P<d>[0-9]{1,2})(?:st|nd|rd|th)?"
_DAYS = rf"(?P<d1>[0-9]{{1,2}})\s*{_D}\s*(?P<d2>[0-9]{{1,2}})"  # "5–7"
_DSEP = r"(?:\s*,\s*|\s+)"  # "May 7, 2024", "May 7 2024", "May 3 , 2010" (TimeQA spacing)
_MONTH_ABBR_CAP = r"(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?|Oct|Nov|Dec)\.?"
_MONTH_LEAD = (
    r"(?i:in|during|since|until|through|by|from|to|of|for|early|late|mid|end\s+of|beginning\s+of|and)"
)
_NO_OVER = rf"(?![\s{_DASHES}]+(?:over|on)[\s{_DASHES}]+(?:quarter|year))"  # not "quarter-over-quarter"
_PART_YEAR = rf"\s*(?:,\s*|of\s+|{_D}\s*)?(?P<yr>{_YEAR_PART})"  # " 2024", " of 2024", "'24", "-2024"
_PART_SUFFIX = (
    rf"(?:(?:\s*,\s*|\s+(?:(?:of|in)\s+)?(?:the\s+)?)(?P<yr>{_YEAR_PART}){_END}|\s+of\s+{_REL_OF})?"
)
_YEAR_FIRST = rf"{_NOT_AFTER_NUM}(?P<yr>{_YEAR_PART})"
_I = re.I
_M, _Q, _H = _MONTH_WORDS, ("q",), ("h",)
_FAMILIES: tuple[_Family, ...] = (
    # full dates: "May 7, 2024", "Sept. 3, 2024"; "7 May 2024", "7th of May, 2024"; ISO; US "05/07/2024"
    _Family(re.compile(rf"\b{_month('m')}\s*{_DAY}{_DSEP}(?P<y>{_Y4}){_END}", _I), _h_day, words=_M),
    _Family(re.compile(rf"(?<![0-9.,])\b{_DAY}\s+(?:of\s+)?{_month('m')}{_DSEP}(?P<y>{_Y4}){_END}", _I), _h_day, words=_M),
    _Family(re.compile(rf"(?<![0-9./{_DASHES}])(?P<y>{_Y4})(?P<s>[-/])(?P<m>[0-9]{{1,2}})(?P=s)(?P<d>[0-9]{{1,2}})(?![0-9]|[-/][0-9])"), _h_day),
    _Family(re.compile(r"(?<![0-9./\-])(?P<m>[0-9]{1,2})/(?P<d>[0-9]{1,2})/(?P<y>[0-9]{4})(?![0-9]|/[0-9])"), _h_day),
    # day ranges: "5–7 May 1912", "May 5-7, 2024"
    _Family(re.compile(rf"(?<![0-9.,])\b{_DAYS}\s+{_month('m')}\s*,?\s*(?P<y>{_Y4}){_END}", _I), _h_day_range, words=_M),
    _Family(re.compile(rf"\b{_month('m')}\s*{_DAYS}\s*,?\s*(?P<y>{_Y4}){_END}", _I), _h_day_range, words=_M),
    # months: "March 1980", "Feb 2016", "March, 1980", "March of 1980", "Feb '16"
    _Family(re.compile(rf"\b{_month('m')}(?:\s*,\s*|\s+(?:of\s+)?)(?P<y>{_Y4}|{_APOS}[0-9]{{2}}){_END}", _I), _h_month_year, words=_M),
    # "June 3", "in March": capitalised month names only, so that "may" stays a verb
    _Family(re.compile(rf"\b(?P<m>{_MONTH_CAP}|{_MONTH_ABBR_CAP})\s+{_DAY}\b(?!\s*[,.]?\s*[0-9]|\s*%)"), _h_month_rel, words=_M, ref=True),
    _Family(re.compile(rf"\b{_MONTH_LEAD}[\s{_DASHES}]+(?P<m>{_MONTH_CAP})\b(?!\s*,?\s*[0-9]|\s+of\s+[0-9])"), _h_month_rel, digit=False, words=_M, ref=True),
    # quarters: "Q3 2024", "Q3'24", "Q3 FY24", "Q4 of 2026", "FQ3"; "3Q24", "3Q 2024"; "2024-Q3", "FY2024 Q3"; bare "Q3", "3Q"
    _Family(re.compile(rf"\b(?P<fq>F)?Q(?P<p>[0-9])(?:{_PART_YEAR})?{_END}", _I), _h_part(4), words=_Q),
    _Family(re.compile(rf"\b(?P<p>[0-9])Q(?:(?P<yy>[0-9]{{2}})|\s*(?P<yr>{_YEAR_PART}))?{_END}", _I), _h_part(4), words=_Q),
    _Family(re.compile(rf"{_YEAR_FIRST}\s*{_D}?\s*Q(?P<p>[0-9]){_END}", _I), _h_part(4), words=_Q),
    # "third quarter of 2024", "the third quarter of fiscal 2024", "fiscal third quarter", "second-quarter", "2024 third quarter"
    _Family(re.compile(rf"\b(?:(?P<fis>fiscal)\s+)?{_Q_ORD}(?:\s+(?P<fis2>fiscal))?[\s{_DASHES}]+quarter\b{_NO_OVER}{_PART_SUFFIX}", _I), _h_part(4), digit=False, words=("quarter",)),
    _Family(re.compile(rf"{_YEAR_FIRST}\s+(?:(?P<fis>fiscal)\s+)?{_Q_ORD}[\s{_DASHES}]+quarter\b", _I), _h_part(4), words=("quarter",)),
    # halves: "H1 2026", "1H26", "2026-H1", "first half of 2026", "the back half" (bare "H1" is too ambiguous)
    _Family(re.compile(rf"\bH(?P<p>[12]){_PART_YEAR}{_END}", _I), _h_part(2), words=_H),
    _Family(re.compile(rf"\b(?P<p>[0-9])H(?:(?P<yy>[0-9]{{2}})|\s*(?P<yr>{_YEAR_PART})){_END}", _I), _h_part(2), words=_H),
    _Family(re.compile(rf"{_YEAR_FIRST}\s*{_D}?\s*H(?P<p>[12]){_END}", _I), _h_part(2), words=_H),
    _Family(re.compile(rf"\b(?:(?P<fis>fiscal)\s+)?{_H_ORD}(?:\s+(?P<fis2>fiscal))?[\s{_DASHES}]+half\b{_PART_SUFFIX}", _I), _h_part(2), digit=False, words=("half",)),
    # years: "1965", "1916-1920", "1916 – 1920", "1916-20", "1995–96", "2024-05"
    _Family(re.compile(rf"{_NOT_AFTER_NUM}(?P<y>{_Y4})(?:(?P<sep>\s*[{_DASHES}/]\s*)(?P<y2>{_Y4}|[0-9]{{2}})(?![0-9]))?(?![\w%]|[.,][0-9]|[-/][0-9])"), _h_year),
    # "fiscal 2025", "fiscal year 2025", "FY25", "FY 2025", "calendar 2024", "CY24"
    _Family(re.compile(rf"\b(?:(?:fiscal|calendar)(?:\s+year)?\s+{_APOS}?|(?:FY|CY)\s?{_APOS}?)(?:[0-9]{{4}}|[0-9]{{2}}){_END}", _I), _h_fiscal_year, words=("fiscal", "fy", "calendar", "cy")),
    # decades: "the 1990s", "1940's", "the '90s"
    _Family(re.compile(rf"{_NOT_AFTER_NUM}(?:(?P<y>1[0-9]{{2}}0|20[0-9]0|21[0-9]0){_APOS}?|(?<![\w'’‘]){_APOS}(?P<yy>[0-9]0))s\b"), _h_decade, words=("0s", "0's", "0’s")),
    # relative to the reference: "this quarter", "the prior quarter", "two quarters ago"
    _Family(re.compile(rf"\b(?:(?P<w>{_REL_WORD})\s+(?:fiscal\s+)?quarter\b{_NO_OVER}|{_NUM}\s+quarters?\s+ago\b)", _I), _h_rel_quarter, digit=False, words=("quarter",), ref=True),
    # "the prior-year quarter", "the year-ago period", "the same quarter last year", "the same quarter in 2023"
    _Family(re.compile(
        rf"\b(?:(?:the\s+)?(?:prior|previous|last|same)[\s{_DASHES}]+year(?:{_APOS}s)?|(?:the\s+)?year[\s{_DASHES}]+ago|(?:the\s+)?comparable)\s+(?P<u>quarter|period|month)\b"
        r"|\b(?:the\s+)?same\s+(?P<u2>quarter|period|month)\s+(?:of\s+|in\s+)?(?:last\s+year|(?:the\s+)?(?:prior|previous)\s+year|a\s+year\s+ago)\b"
        rf"|\b(?:the\s+)?same\s+(?:quarter|period)\s+(?:of|in)\s+(?P<yr>{_YEAR_PART}){_END}", _I),
        _h_year_ago_period, digit=False, words=("quarter", "period", "month"), ref=True),
    # "this year", "the full year", "full-year", "last year", "next fiscal year", "a year ago", "two years ago", "year-ago"
    _Family(re.compile(
        rf"\b(?:(?P<w>{_REL_WORD})[\s{_DASHES}]+(?:(?P<f>fiscal|calendar)\s+)?year\b{_NO_OVER}(?![\s{_DASHES}]+(?:to[\s{_DASHES}]+date|ago)\b)"
        rf"(?!\s+(?:fiscal\s+)?{_APOS}?[0-9])|(?P<ago>{_NUM}\s+years?\s+ago|year[\s{_DASHES}]+ago)\b)", _I),
        _h_rel_year, digit=False, words=("year",), ref=True),
    # "year-to-date", "YTD"; "last month", "two months ago"; "today"; "the past two years", "the next 3 quarters"
    _Family(re.compile(rf"\b(?:year[\s{_DASHES}]+to[\s{_DASHES}]+date|ytd)\b", _I), _h_ytd, digit=False, words=("date", "ytd"), ref=True),
    _Family(re.compile(rf"\b(?:(?P<w>{_REL_WORD}|past)\s+month\b|{_NUM}\s+months?\s+ago\b)", _I), _h_rel_month, digit=False, words=("month",), ref=True),
    _Family(re.compile(r"\b(?:today|yesterday|tomorrow)\b", _I), _h_rel_day, digit=False, words=("today", "yesterday", "tomorrow"), ref=True),
    _Family(re.compile(rf"\b(?:the\s+)?(?P<w>past|last|previous|prior|trailing|preceding|next|coming|following|upcoming)\s+{_NUM}\s+(?:(?P<f>fiscal|calendar)\s+)?(?P<u>years|quarters|months)\b", _I), _h_rel_span, digit=False, words=("years", "quarters", "months"), ref=True),
)  # fmt: skip


# ---- joining: ranges, open ends, comparison cues ------------------------------------------
_PAIR_GAP = re.compile(rf"\s*(?P<c>{_D}+|to|until|till|through|thru|and)\s*(?:the\s+)?", re.I)
_PAIR_LEAD = re.compile(r"\b(?P<w>from|between)\s+(?:the\s+)?$", re.I)
_TAIL_LEAD = re.compile(r"\b(?:from|since)\s+(?:the\s+)?$", re.I)  # "since 2019 to present"
_OPEN_TAIL = re.compile(
    rf"\s*(?:(?:{_D}+|to|until|till|through)\s*(?:the\s+)?(?:present|now|today|date)\b|{_D}+\s*\?|\s+onwards?\b|\s+and\s+beyond\b)",
    re.I,
)
_QMARK_LEAD = re.compile(rf"\?\s*{_D}+\s*$")
_OPEN_LEAD = re.compile(
    r"\b(?:(?P<since>(?:ever\s+)?since)|(?P<until>until|till|til|through|thru|up\s+(?:to|until))"
    r"|(?P<before>before|prior\s+to|earlier\s+than)|(?P<after>after|following|later\s+than)|(?P<by>by))"
    r"\s+(?:the\s+)?(?P<eo>(?:end|close)\s+of\s+(?:the\s+)?)?$",
    re.I,
)
_CUE = re.compile(
    r"(?:\bcompared?\s+(?:with|to|against)|\bin\s+comparison\s+(?:with|to)|\bversus|\bvs\b\.?|\brelative\s+to|\bagainst"
    r"|\b(?:up|down|increased?|decreased?|rose|risen|fell|fallen|grew|grown|declined?|improved?|higher|lower|changed?)\s+from"
    r"|(?:%|\bpercent|\bpoints|\bbps|\bup|\bdown|\bgrowth|\bincrease|\bdecrease|\bdecline|\bimprovement)\s+over)"
    r"(?:\s+[^\s;!?]+){0,5}?\s*$",
    re.I,
)
_BY_GRANULARITIES = (_G.YEAR, _G.MONTH, _G.DAY, _G.DECADE)


def _pair(text: str, lead_from: int, a: _Cand, b: _Cand) -> _Cand | None:
    """ "from A to B", "between A and B", "A–B", "A until B" as one range."""
    g = _PAIR_GAP.fullmatch(text, a.end, b.start)
    if g is None or a.interval is None or b.interval is None:
        return None
    lead = _PAIR_LEAD.search(text, lead_from, a.start)
    if g["c"].lower() == "and" and (lead is None or lead["w"].lower() != "between"):
        return None
    ia, ib = a.interval, b.interval
    in_order = ia.start_ordinal <= ib.start_ordinal
    if lead is None and not in_order:
        return None  # "2016-1975" is no range; "between 2026-Q2 and 2025-Q1" is, read in order
    if (ia.start, ia.end) == (ib.start, ib.end):
        iv = ia  # "between Q4 2026 and Q4 2026" is that quarter
    elif in_order:  # "from 2018 to Jun 2018" ends in June
        iv = TimeInterval.from_ordinals(ia.start_ordinal, ib.end_ordinal, _G.RANGE)
    else:
        iv = TimeInterval.from_ordinals(ib.start_ordinal, max(ia.end_ordinal, ib.end_ordinal), _G.RANGE)
    return _Cand(lead.start() if lead else a.start, b.end, iv, a.relative or b.relative, "range")


def _open(text: str, lead_from: int, a: _Cand, limit: int) -> _Cand | None:
    """ "since 2005", "until 1935", "before 1990", "after 2010", "by 1999", "2017-present", "1796- ?"."""
    iv = a.interval
    if iv is None:
        return None
    if a.kind == "range":
        lead = _PAIR_LEAD.search(text, lead_from, a.start)
        return replace(a, start=lead.start()) if lead else None
    if a.kind != "point":
        return None
    tail = _OPEN_TAIL.match(text, a.end, limit)
    if tail:
        lead = _TAIL_LEAD.search(text, lead_from, a.start)
        begin = lead.start() if lead else a.start
        return _Cand(begin, tail.end(), _span(iv.start, None), a.relative, "after", a.comparative)
    qmark = _QMARK_LEAD.search(text, lead_from, a.start)
    if qmark:
        return _Cand(qmark.start(), a.end, _span(None, iv.end), a.relative, "before", a.comparative)
    m = _OPEN_LEAD.search(text, lead_from, a.start)
    if m is None:
        return None
    bounds: tuple[date | None, date | None]
    if m["since"] or m["after"]:
        bounds, kind = (iv.end if m["after"] else iv.start, None), "after"
    elif m["before"]:
        bounds, kind = (None, iv.end if m["eo"] else iv.start), "before"
    elif m["until"] or m["eo"] or (not a.relative and iv.granularity in _BY_GRANULARITIES):
        bounds, kind = (None, iv.end), "before"  # "by" only for plain dates: not "driven by Q4 sales"
    else:
        return None
    return _Cand(m.start(), a.end, _span(*bounds), a.relative, kind, a.comparative)


def _join(text: str, atoms: list[_Cand]) -> list[_Cand]:
    out: list[_Cand] = []
    prev_end, i = 0, 0
    while i < len(atoms):
        a = atoms[i]
        b = atoms[i + 1] if i + 1 < len(atoms) else None
        lead_from = max(prev_end, a.start - 48)
        joined = None
        if b is not None and a.kind == b.kind == "point":
            joined = _pair(text, lead_from, a, b)
        i += 2 if joined else 1
        if joined is None:
            joined = _open(text, lead_from, a, b.start if b else len(text)) or a
        if _CUE.search(text, max(prev_end, joined.start - 64), joined.start):
            joined.comparative = True
        out.append(joined)
        prev_end = joined.end
    return out


def _scan(text: str, ctx: TimeContext) -> list[_Cand]:
    """All time expressions, joined into ranges; the shared core of the public functions."""
    if not isinstance(text, str) or not text:
        return []
    low = text.lower()
    has_digit = _DIGIT.search(text) is not None
    has_ref = ctx.reference is not None and (ctx.reference.start is not None or ctx.reference.end is not None)
    cands: list[_Cand] = []
    for fam in _FAMILIES:
        if (fam.digit and not has_digit) or (fam.ref and not has_ref):
            continue
        if fam.words and not any(w in low for w in fam.words):
            continue
        for m in fam.regex.finditer(text):
            try:
                got = fam.handler(m, ctx, text)
            except (ValueError, OverflowError, KeyError):
                continue  # out-of-range dates, relative words without a reference: not a mention
            if isinstance(got, list):
                cands.extend(got)
            elif got is not None:
                cands.append(got)
    # longest match wins; at equal length the earlier family (listed first above) wins
    cands.sort(key=lambda c: (c.start - c.end, c.start))
    taken: list[_Cand] = []
    for c in cands:
        if all(c.end <= t.start or c.start >= t.end for t in taken):
            taken.append(c)
    taken.sort(key=lambda c: c.start)
    try:
        return _join(text, [c for c in taken if c.interval is not None])
    except (ValueError, OverflowError):  # an empty joined interval: keep the atoms as they are
        return [c for c in taken if c.interval is not None]


# ---- public API ---------------------------------------------------------------------------
def find_times(text: str, context: TimeContext | None = None) -> list[TimeMention]:
    """All time mentions in ``text``, non-overlapping and in order."""
    return [
        TimeMention(text[c.start : c.end], c.start, c.end, c.interval, c.relative, c.comparative)
        for c in _scan(text, context or TimeContext())
        if c.interval is not None
    ]


_FILLER = re.compile(r"(?:\s|[.,;:!?()\[\]]|\b(?:in|on|during|the|of)\b)*", re.I)


def parse_time(text: str, context: TimeContext | None = None) -> TimeInterval | None:
    """The whole string as one time ("2024-Q3", "May 7, 2024", "fiscal 2024"), else None."""
    if not isinstance(text, str):
        return None
    s = text.strip()
    iso = re.fullmatch(r"([0-9]{4})-([0-9]{2})", s)  # "2024-05" in a date field is a month, not a season
    if iso:
        try:
            return TimeInterval.month(int(iso[1]), int(iso[2]))
        except ValueError:
            return None
    found = _scan(s, context or TimeContext())
    if len(found) != 1 or found[0].interval is None:
        return None
    c = found[0]
    return c.interval if _FILLER.fullmatch(s[: c.start] + " " + s[c.end :]) else None


_PD_ISO = re.compile(
    r"(?P<y>[0-9]{4,6})(?P<s>[-/])(?P<m>[0-9]{1,2})(?:(?P=s)(?P<d>[0-9]{1,2})"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?)?"
)
_PD_FORMS = (
    _PD_ISO,
    re.compile(r"(?P<y>[0-9]{4,6})"),
    re.compile(rf"{_month('m')}\s*(?P<d>[0-9]{{1,2}})(?:st|nd|rd|th)?\s*,?\s*(?P<y>[0-9]{{4}})", re.I),
    re.compile(
        rf"(?P<d>[0-9]{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_month('m')}\s*,?\s*(?P<y>[0-9]{{4}})", re.I
    ),
    re.compile(rf"{_month('m')}\s*,?\s*(?P<y>[0-9]{{4}})", re.I),
)


def parse_date(value: str) -> date:
    """Strict date for user input: "2024-05-07", "2024-05", "2024", "May 7, 2024", "07 May 2024"."""
    s = value.strip() if isinstance(value, str) else ""
    m = next((m for f in _PD_FORMS if (m := f.fullmatch(s))), None)
    if m is None:
        raise ValueError(
            f"cannot read {value!r} as a date: use YYYY-MM-DD, YYYY-MM, YYYY, 'May 7, 2024' or '7 May 2024'"
        )
    g = m.groupdict()
    year = int(g["y"])
    mon = g.get("m") or "1"
    month = int(mon) if mon.isdigit() else _MONTH_NUM[mon.lower()[:3]]
    day = int(g.get("d") or 1)
    if not 1 <= year <= 9999:
        raise ValueError(f"invalid date {value!r}: year {year} is outside 1..9999")
    if not 1 <= month <= 12:
        raise ValueError(f"invalid date {value!r}: month {month} is outside 1..12")
    try:
        return date(year, month, day)
    except ValueError:
        last = calendar.monthrange(year, month)[1]
        raise ValueError(
            f"invalid date {value!r}: {year:04d}-{month:02d} has days 1..{last}, not {day}"
        ) from None


_SCOPE_LEAD = re.compile(
    r"\b(?:(?:in|on|during|over|for|at|of|as\s+of|throughout|within)\s+)?(?:the\s+)?(?:(?:time\s+)?period\s+(?:of\s+)?)?$",
    re.I,
)
# a span that brings its own word ("from", "since", "after") takes only "during the period" before it
_SPAN_LEAD = re.compile(
    r"\b(?:(?:during|in|over|throughout|within)\s+)?(?:the\s+)?(?:time\s+)?period\s+$", re.I
)
_LIST_SEP = re.compile(r"\s*(?:,|and|or|&|,\s*and|,\s*or)\s*", re.I)
_RELATION = {"point": "at", "range": "between", "after": "after", "past": "after", "before": "before"}


def parse_query_scope(question: str, now: date | None = None) -> QueryScope:
    """The time a question asks about; relative phrases resolve against ``now`` (default today)."""
    everything = QueryScope(TimeInterval.always(), "all", "")
    if not isinstance(question, str) or not question.strip():
        return everything
    today = now or date.today()
    if isinstance(today, datetime):  # a datetime is a date too, but its day is what counts
        today = today.date()
    found = _scan(question, TimeContext(TimeInterval.day(today) if today < date.max else None))
    if not found:
        return everything
    # what the question reports on, not what it compares against; explicit spans over points
    main = [c for c in found if not c.comparative] or found
    spans = [c for c in main if c.kind != "point"]
    if spans:
        group = [spans[-1]]
    else:
        points = [c for c in main if not c.relative] or main
        group = [points[-1]]
        for c in reversed(points[:-1]):  # "in Q1 2024 and Q3 2024": a list is one scope
            if not _LIST_SEP.fullmatch(question, c.end, group[0].start):
                break
            group.insert(0, c)
    first, last = group[0], group[-1]
    leads = _SCOPE_LEAD if first.kind in ("point", "past") else _SPAN_LEAD
    lead = leads.search(question, 0, first.start)
    start = lead.start() if lead and lead.group() else first.start
    text = question[start : last.end]
    if len(group) > 1:
        ivs = [c.interval for c in group if c.interval is not None]
        span = TimeInterval.from_ordinals(
            min(i.start_ordinal for i in ivs), max(i.end_ordinal for i in ivs), _G.RANGE
        )
        return QueryScope(span, "between", text)
    iv = first.interval
    assert iv is not None
    if first.kind == "past":  # "in the past two years": from N periods back, onwards
        iv = _span(iv.start, None)
    return QueryScope(iv, _RELATION[first.kind], text)
