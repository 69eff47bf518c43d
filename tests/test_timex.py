"""Tests for tgrag.timex: time expressions -> TimeInterval. All sentences are made up for these tests."""

from __future__ import annotations

import contextlib
import time
from datetime import date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tgrag.model import Granularity, QueryScope, TimeInterval
from tgrag.timex import TimeContext, TimeMention, find_times, parse_date, parse_query_scope, parse_time

G = Granularity
D = date
Y, Q, H, M, DAY = (
    TimeInterval.year,
    TimeInterval.quarter,
    TimeInterval.half,
    TimeInterval.month,
    TimeInterval.day,
)
FAST = settings(max_examples=200, deadline=None)
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]  # fmt: skip


def ctx_q(year: int, quarter: int, fiscal: int = 1) -> TimeContext:
    return TimeContext(Q(year, quarter), fiscal)


def only(text: str, context: TimeContext | None = None) -> TimeMention:
    found = find_times(text, context)
    assert len(found) == 1, (text, found)
    return found[0]


def span(start: date | None, end: date | None) -> tuple[date | None, date | None]:
    return start, end


# ---- absolute forms -----------------------------------------------------------------------
ABSOLUTE = [
    # (sentence, mention text, expected interval)
    ("The call was held on May 7, 2024 at 8:30 a.m.", "May 7, 2024", DAY(D(2024, 5, 7))),
    ("Results dated May 07, 2024 were restated.", "May 07, 2024", DAY(D(2024, 5, 7))),
    ("He died on 7 May 2024 in Leeds .", "7 May 2024", DAY(D(2024, 5, 7))),
    ("The filing (2024-05-07) was late.", "2024-05-07", DAY(D(2024, 5, 7))),
    ("Signed 05/07/2024 by both parties.", "05/07/2024", DAY(D(2024, 5, 7))),
    ("The merger closed Sept. 3, 2024.", "Sept. 3, 2024", DAY(D(2024, 9, 3))),
    ("It opened on Sept 3 , 1931 .", "Sept 3 , 1931", DAY(D(1931, 9, 3))),
    ("Crowned on the 2nd of June, 1953 in London.", "2nd of June, 1953", DAY(D(1953, 6, 2))),
    ("She moved there in Feb 2016 .", "Feb 2016", M(2016, 2)),
    ("The strike began in March 1980 and spread.", "March 1980", M(1980, 3)),
    ("Elected in November, 1932 as governor.", "November, 1932", M(1932, 11)),
    ("The ISO month 2024-05 is in the filename.", "2024-05", M(2024, 5)),
    ("In 1965 , Michael purchased the estate .", "1965", Y(1965)),
    ("We plan to grow margins in 2024.", "2024", Y(2024)),
    ("The novel ( 1976 ) sold well.", "1976", Y(1976)),
    ("The Act of 1033 is obscure.", "1033", Y(1033)),
    ("Our fiscal 2025 outlook is unchanged.", "fiscal 2025", Y(2025)),
    ("For fiscal year 2025 we expect growth.", "fiscal year 2025", Y(2025)),
    ("FY2025 revenue guidance was raised.", "FY2025", Y(2025)),
    ("FY25 capex will be lower.", "FY25", Y(2025)),
    ("The FY 2025 plan is set.", "FY 2025", Y(2025)),
    ("In calendar 2024 volumes rose.", "calendar 2024", Y(2024)),
    ("Housing slumped in the 1990s .", "1990s", TimeInterval.decade(1990)),
    ("A 1940's locomotive was restored.", "1940's", TimeInterval.decade(1940)),
    ("Music from the '90s is back.", "'90s", TimeInterval.decade(1990)),
    # quarters
    ("Revenue in Q3 2024 was a record.", "Q3 2024", Q(2024, 3)),
    ("Q3'24 margins improved.", "Q3'24", Q(2024, 3)),
    ("Our Q3 FY24 bookings grew.", "Q3 FY24", Q(2024, 3)),
    ("3Q24 EPS beat consensus.", "3Q24", Q(2024, 3)),
    ("In 3Q 2024 we shipped more.", "3Q 2024", Q(2024, 3)),
    ("Margins in 2024-Q3 expanded.", "2024-Q3", Q(2024, 3)),
    ("Margins in 2024 Q3 expanded.", "2024 Q3", Q(2024, 3)),
    ("what was the margin in 2024-q3?", "2024-q3", Q(2024, 3)),
    ("Sales in the third quarter of 2024 grew 5%.", "third quarter of 2024", Q(2024, 3)),
    ("Third quarter 2024 sales grew.", "Third quarter 2024", Q(2024, 3)),
    ("This was the third quarter of fiscal 2024 for us.", "third quarter of fiscal 2024", Q(2024, 3)),
    ("Our fourth-quarter 2023 results were strong.", "fourth-quarter 2023", Q(2023, 4)),
    ("Net income from Q4 of 2026 onward is unknown.", "from Q4 of 2026 onward", TimeInterval(D(2026, 10, 1), None)),
    ("The 2024 third quarter was soft.", "2024 third quarter", Q(2024, 3)),
    ("Sales in the last quarter of 2024 slowed.", "last quarter of 2024", Q(2024, 4)),
    ("Our fiscal 2024 fourth quarter was strong.", "fiscal 2024 fourth quarter", Q(2024, 4)),
    # halves
    ("Launches are planned in the first half of 2026.", "first half of 2026", H(2026, 1)),
    ("H1 2026 will be soft.", "H1 2026", H(2026, 1)),
    ("We see 1H26 as a trough.", "1H26", H(2026, 1)),
    ("Margins in 2025-H2 recovered.", "2025-H2", H(2025, 2)),
]  # fmt: skip


@pytest.mark.parametrize(("sentence", "text", "expected"), ABSOLUTE)
def test_absolute_forms(sentence: str, text: str, expected: TimeInterval) -> None:
    m = only(sentence)
    assert m.text == text and sentence[m.start : m.end] == text
    assert (m.interval.start, m.interval.end, m.interval.granularity) == (
        expected.start,
        expected.end,
        expected.granularity,
    )
    assert m.interval.label == expected.label
    assert not m.relative


def test_fiscal_year_start_shifts_fiscal_forms_only() -> None:
    ctx = TimeContext(None, 2)  # FY2024 = Feb 2023 .. Jan 2024
    fy = only("fiscal 2024 was a good year", ctx).interval
    assert (fy.start, fy.end, fy.granularity, fy.label) == (D(2023, 2, 1), D(2024, 2, 1), G.YEAR, "FY2024")
    assert only("FY24", ctx).interval == fy
    q = only("Q3 FY24 orders", ctx).interval
    assert (q.start, q.end, q.granularity, q.label) == (D(2023, 8, 1), D(2023, 11, 1), G.QUARTER, "FY2024-Q3")
    assert only("the third quarter of fiscal 2024", ctx).interval == q
    assert only("Q3 2024 orders", ctx).interval == Q(2024, 3)  # no "fiscal": calendar
    assert only("calendar 2024", ctx).interval == Y(2024)
    assert only("in 2024", ctx).interval == Y(2024)


def test_fiscal_relative_quarter_uses_fiscal_calendar() -> None:
    ctx = TimeContext(DAY(D(2023, 9, 15)), 2)
    q = only("our fiscal third quarter", ctx).interval
    assert (q.start, q.end, q.label) == (D(2023, 8, 1), D(2023, 11, 1), "FY2024-Q3")
    assert only("the third quarter", ctx).interval == q


def test_fiscal_month_is_validated() -> None:
    with pytest.raises(ValueError, match="fiscal_year_start_month"):
        TimeContext(None, 13)


# ---- relative forms -----------------------------------------------------------------------
REF_Q1 = ctx_q(2024, 1)
RELATIVE = [
    # (sentence, context, mention text, expected, comparative)
    ("Growth in March was strong.", REF_Q1, "March", M(2024, 3), False),
    ("During the quarter we opened six stores.", REF_Q1, "the quarter", Q(2024, 1), False),
    ("This quarter was our best.", REF_Q1, "This quarter", Q(2024, 1), False),
    ("The current quarter looks fine.", REF_Q1, "The current quarter", Q(2024, 1), False),
    ("Last quarter we said otherwise.", REF_Q1, "Last quarter", Q(2023, 4), False),
    ("Versus the previous quarter, churn fell.", REF_Q1, "the previous quarter", Q(2023, 4), True),
    ("The prior quarter had a one-off.", REF_Q1, "The prior quarter", Q(2023, 4), False),
    ("Next quarter should be seasonal.", REF_Q1, "Next quarter", Q(2024, 2), False),
    ("Two quarters ago we raised prices.", REF_Q1, "Two quarters ago", Q(2023, 3), False),
    ("For the year, we expect 5% growth.", REF_Q1, "the year", Y(2024), False),
    ("This year we will open 40 stores.", REF_Q1, "This year", Y(2024), False),
    ("We raised the full year outlook.", REF_Q1, "the full year", Y(2024), False),
    ("Our full-year outlook is higher.", REF_Q1, "full-year", Y(2024), False),
    ("Last year was difficult.", REF_Q1, "Last year", Y(2023), True),
    ("Sales were up on the prior year.", REF_Q1, "the prior year", Y(2023), True),
    ("The previous year had a strike.", REF_Q1, "The previous year", Y(2023), True),
    ("Sales were $5 million a year ago.", REF_Q1, "a year ago", Q(2023, 1), True),
    ("Next year we expect a recovery.", REF_Q1, "Next year", Y(2025), False),
    ("Two years ago we entered Brazil.", REF_Q1, "Two years ago", Y(2022), False),
    ("Year-to-date volumes are up.", REF_Q1, "Year-to-date", TimeInterval(D(2024, 1, 1), D(2024, 4, 1)), False),
    ("Volumes year to date are up.", REF_Q1, "year to date", TimeInterval(D(2024, 1, 1), D(2024, 4, 1)), False),
    ("Compared with the prior-year quarter, margin rose.", REF_Q1, "the prior-year quarter", Q(2023, 1), True),
    ("Second-quarter premium growth was 8%.", REF_Q1, "Second-quarter", Q(2024, 2), False),
    ("The fourth quarter is our biggest.", REF_Q1, "fourth quarter", Q(2023, 4), False),
    ("In Q3 we expect a dip.", REF_Q1, "Q3", Q(2024, 3), False),
    ("The second half should improve.", REF_Q1, "second half", H(2024, 2), False),
    ("Margins in the fourth quarter of last year fell.", REF_Q1, "fourth quarter of last year", Q(2023, 4), True),
    ("Orders in the same quarter in 2023 were lower.", REF_Q1, "the same quarter in 2023", Q(2023, 1), True),
    ("Last month the index fell.", TimeContext(DAY(D(2024, 3, 10))), "Last month", M(2024, 2), False),
    ("This month the index rose.", TimeContext(DAY(D(2024, 3, 10))), "This month", M(2024, 3), False),
    ("Next month we launch.", TimeContext(DAY(D(2024, 12, 10))), "Next month", M(2025, 1), False),
    ("Yesterday the board met.", TimeContext(DAY(D(2024, 3, 1))), "Yesterday", DAY(D(2024, 2, 29)), False),
    ("We launched on June 3 in Ohio.", REF_Q1, "June 3", DAY(D(2024, 6, 3)), False),
]  # fmt: skip


@pytest.mark.parametrize(("sentence", "context", "text", "expected", "comparative"), RELATIVE)
def test_relative_forms(
    sentence: str, context: TimeContext, text: str, expected: TimeInterval, comparative: bool
) -> None:
    m = only(sentence, context)
    assert m.text == text
    assert (m.interval.start, m.interval.end, m.interval.granularity) == (
        expected.start,
        expected.end,
        expected.granularity,
    )
    assert m.relative
    assert m.comparative is comparative


@pytest.mark.parametrize(
    ("phrase", "ref", "expected"),
    [
        ("the fourth quarter", Q(2024, 1), Q(2023, 4)),
        ("the third quarter", Q(2024, 1), Q(2024, 3)),  # two back or two ahead: ties go to the own year
        ("the first quarter", Q(2024, 4), Q(2025, 1)),  # one ahead beats three back
        ("the second quarter", Q(2024, 4), Q(2024, 2)),
        ("the first quarter", DAY(D(2024, 11, 20)), Q(2025, 1)),  # a day reference uses its quarter
        ("the fourth quarter", Y(2024), Q(2024, 4)),
        ("the first half", Q(2024, 4), H(2024, 1)),
    ],
)
def test_bare_quarter_picks_nearest_year(phrase: str, ref: TimeInterval, expected: TimeInterval) -> None:
    assert only(phrase, TimeContext(ref)).interval == expected


def test_relative_mentions_are_skipped_without_reference() -> None:
    sentence = "Last quarter and the third quarter were weak; for the year and in March we expect more."
    assert find_times(sentence) == []
    assert [m.text for m in find_times("In the third quarter of 2024 it rose.")] == ["third quarter of 2024"]


def test_year_ago_against_a_day_is_the_previous_year() -> None:
    assert only("a year ago", TimeContext(DAY(D(2024, 5, 7)))).interval == Y(2023)


# ---- ranges and open ends -----------------------------------------------------------------
RANGES = [
    # (sentence, mention text, start, end)
    ("He served 1916-1920 in the Senate.", "1916-1920", D(1916, 1, 1), D(1921, 1, 1)),
    ("He served 1916–1920 in the Senate.", "1916–1920", D(1916, 1, 1), D(1921, 1, 1)),
    ("He served 1916 - 1920 in the Senate.", "1916 - 1920", D(1916, 1, 1), D(1921, 1, 1)),
    ("Walter Pike ( 1935–1941 ) was mayor .", "1935–1941", D(1935, 1, 1), D(1942, 1, 1)),
    ("He lived there from 1916 to 1920 .", "from 1916 to 1920", D(1916, 1, 1), D(1921, 1, 1)),
    ("Built between 1916 and 1920 by hand.", "between 1916 and 1920", D(1916, 1, 1), D(1921, 1, 1)),
    ("He taught 1916 until 1920 .", "1916 until 1920", D(1916, 1, 1), D(1921, 1, 1)),
    ("From Q2 2024 to Q4 2024 sales grew.", "From Q2 2024 to Q4 2024", D(2024, 4, 1), D(2025, 1, 1)),
    ("She led it from May 2020 to June 2021.", "from May 2020 to June 2021", D(2020, 5, 1), D(2021, 7, 1)),
    ("He edited it 1975 to Feb 2016 .", "1975 to Feb 2016", D(1975, 1, 1), D(2016, 3, 1)),
    ("Jane Roe ( 11 May 1912 – 18 January 1955 ) was a poet .", "11 May 1912 – 18 January 1955",
     D(1912, 5, 11), D(1955, 1, 19)),
    ("Chair 2017-present .", "2017-present", D(2017, 1, 1), None),
    ("Chair 2017–present .", "2017–present", D(2017, 1, 1), None),
    ("Since 2019 to present it has played here.", "Since 2019 to present", D(2019, 1, 1), None),
    ("He has lived there since 2005 .", "since 2005", D(2005, 1, 1), None),
    ("The line ran until 1935 .", "until 1935", None, D(1936, 1, 1)),
    ("The line ran till 1935 .", "till 1935", None, D(1936, 1, 1)),
    ("It was leased through 1935 .", "through 1935", None, D(1936, 1, 1)),
    ("It was built before 1990 .", "before 1990", None, D(1990, 1, 1)),
    ("It was rebuilt after 2010 .", "after 2010", D(2011, 1, 1), None),
    ("It was finished by 1999 .", "by 1999", None, D(2000, 1, 1)),
    ("Anna Holt ( 1796- ? ) was a painter .", "1796- ?", D(1796, 1, 1), None),
    ("Ezra Holt ( ?-1827 ) was a farmer .", "?-1827", None, D(1828, 1, 1)),
    ("He coached 1916-20 at Yale .", "1916-20", D(1916, 1, 1), D(1921, 1, 1)),
    ("In the 1999–00 season he scored.", "1999–00", D(1999, 1, 1), D(2001, 1, 1)),
    ("He played from 2018 to Jun 2018 .", "from 2018 to Jun 2018", D(2018, 1, 1), D(2018, 7, 1)),
    ("It ran 5–7 May 1912 in Paris .", "5–7 May 1912", D(1912, 5, 5), D(1912, 5, 8)),
    ("Debt is repaid by the end of 2026.", "by the end of 2026", None, D(2027, 1, 1)),
]  # fmt: skip


@pytest.mark.parametrize(("sentence", "text", "start", "end"), RANGES)
def test_ranges(sentence: str, text: str, start: date | None, end: date | None) -> None:
    m = only(sentence)
    assert m.text == text and sentence[m.start : m.end] == text
    assert span(m.interval.start, m.interval.end) == span(start, end)
    assert m.interval.granularity is G.RANGE


def test_reversed_years_are_not_a_range() -> None:
    found = find_times("Ledger 2016-1975 was found.")
    assert [m.interval for m in found] == [Y(2016), Y(1975)]


def test_past_years_span_back_from_reference() -> None:
    m = only("Over the past two years we doubled.", ctx_q(2024, 3))
    assert span(m.interval.start, m.interval.end) == span(D(2022, 1, 1), D(2025, 1, 1))


# ---- comparative cues ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sentence", "flags"),
    [
        ("Revenue in Q3 2024 rose 8% compared with Q3 2023.", [False, True]),
        ("Revenue in Q3 2024 rose 8% compared to Q3 2023.", [False, True]),
        ("Margins in 2024 versus 2023 improved.", [False, True]),
        ("Margins in 2024 vs. 2023 improved.", [False, True]),
        ("Margins in 2024 vs 2023 improved.", [False, True]),
        ("Sales were $4.1 billion in Q2 2024, up from $3.9 billion in Q2 2023.", [False, True]),
        ("Costs were $12 million in 2024, down from $15 million in 2023.", [False, True]),
        ("Units grew relative to 2022 levels.", [True]),
        ("In the third quarter of 2024, volume grew.", [False]),
    ],
)
def test_comparative_cues(sentence: str, flags: list[bool]) -> None:
    assert [m.comparative for m in find_times(sentence)] == flags


def test_comparative_relative_phrases() -> None:
    ctx = ctx_q(2024, 2)
    found = find_times("Revenue rose to $2.0 billion from $1.8 billion a year ago, over the prior year.", ctx)
    assert [(m.text, m.comparative) for m in found] == [("a year ago", True), ("the prior year", True)]
    assert found[0].interval == Q(2023, 2)


# ---- negatives ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sentence",
    [
        "Revenue was $2,024 million.",
        "We sold 2024 units last week.",
        "The company has 1,500 employees.",
        "The ratio was 2024.5 on average.",
        "Order 20245 shipped.",
        "Numbers 4,2024 were misprinted.",
        "Margin grew 2024% in the model.",
        "We opened 13 new stores.",
        "Leverage was 5.1 times EBITDA.",
        "Call 555-2024 or 1-800-555-1999 for details.",
        "There were 1200 stores and 1850 employees.",
        "Results in Q5 2024 are impossible.",
        "It happened on February 30, 2024.",
        "Dated 13/45/2024 by mistake.",
        "In the year 99999 nobody cares.",
        "We may see growth.",
        "Room 1204 was booked.",
        "",
    ],
)
def test_not_times(sentence: str) -> None:
    assert find_times(sentence) == []


def test_amounts_are_not_times_even_with_reference() -> None:
    assert find_times("We sold 2,024 cars and 2024 barrels; 5.1 times more.", REF_Q1) == []


# ---- earnings-call and Wikipedia-style sentences ------------------------------------------
def test_earnings_call_sentence() -> None:
    text = (
        "Third-quarter revenue was $1.2 billion, up 9% compared with the third quarter of 2023, "
        "and we now expect full-year 2024 EPS of $5.10."
    )
    found = find_times(text, ctx_q(2024, 3))
    assert [(m.text, m.interval, m.relative, m.comparative) for m in found] == [
        ("Third-quarter", Q(2024, 3), True, False),
        ("third quarter of 2023", Q(2023, 3), False, True),
        ("2024", Y(2024), False, False),
    ]


def test_wikipedia_sentence() -> None:
    text = "Newton D . Baker served as Secretary of War from 1916 to 1921 , and in 1928 he returned to Cleveland ."
    found = find_times(text)
    assert [(m.text, m.interval.label) for m in found] == [
        ("from 1916 to 1921", "1916-01-01..1921-12-31"),
        ("1928", "1928"),
    ]


# ---- parse_time ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-Q3", Q(2024, 3)),
        ("Q3 2024", Q(2024, 3)),
        ("May 7, 2024", DAY(D(2024, 5, 7))),
        ("fiscal 2024", Y(2024)),
        ("2024", Y(2024)),
        ("2024-05", M(2024, 5)),
        (" the third quarter of 2024 ", Q(2024, 3)),
        ("1916-1920", TimeInterval(D(1916, 1, 1), D(1921, 1, 1))),
    ],
)
def test_parse_time(text: str, expected: TimeInterval) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["", "hello", "revenue in 2024", "2024 and 2025", "Q5 2024", "last quarter"])
def test_parse_time_rejects(text: str) -> None:
    assert parse_time(text) is None


def test_parse_time_relative_needs_context() -> None:
    assert parse_time("last quarter", REF_Q1) == Q(2023, 4)


# ---- parse_date ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-07", D(2024, 5, 7)),
        (" 2024-05-07 ", D(2024, 5, 7)),
        ("2024-05-07T09:30:00Z", D(2024, 5, 7)),
        ("2024-05", D(2024, 5, 1)),
        ("2024", D(2024, 1, 1)),
        ("May 7, 2024", D(2024, 5, 7)),
        ("07 May 2024", D(2024, 5, 7)),
        ("0001-01-01", D(1, 1, 1)),
    ],
)
def test_parse_date(value: str, expected: date) -> None:
    assert parse_date(value) == expected


@pytest.mark.parametrize(
    "value", ["", "yesterday", "2024-13-01", "2024-13", "2024-02-30", "Feb 30, 2024", "0000", "99999", "10000-01-01",
              "2024-5-7x", "May 2024 and more"]
)  # fmt: skip
def test_parse_date_rejects_with_the_value_in_the_message(value: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_date(value)
    assert repr(value) in str(err.value)


# ---- parse_query_scope --------------------------------------------------------------------
NOW = D(2025, 6, 15)
SCOPES = [
    # (question, relation, start, end, text)
    ("Which company had the best margin in 2024-q3?", "at", D(2024, 7, 1), D(2024, 10, 1), "in 2024-q3"),
    ("What was revenue in Q3 2024?", "at", D(2024, 7, 1), D(2024, 10, 1), "in Q3 2024"),
    ("What were sales in the first quarter of 2024?", "at", D(2024, 1, 1), D(2024, 4, 1),
     "in the first quarter of 2024"),
    ("How many stores will open in 2025?", "at", D(2025, 1, 1), D(2026, 1, 1), "in 2025"),
    ("What was the tax rate during fiscal 2024?", "at", D(2024, 1, 1), D(2025, 1, 1), "during fiscal 2024"),
    ("What happened in May 2024?", "at", D(2024, 5, 1), D(2024, 6, 1), "in May 2024"),
    ("What was announced on May 7, 2024?", "at", D(2024, 5, 7), D(2024, 5, 8), "on May 7, 2024"),
    ("Which quarter was best in the first half of 2026?", "at", D(2026, 1, 1), D(2026, 7, 1),
     "in the first half of 2026"),
    ("What was the margin in each quarter of 2024?", "at", D(2024, 1, 1), D(2025, 1, 1), "of 2024"),
    ("How did margins develop over 2024?", "at", D(2024, 1, 1), D(2025, 1, 1), "over 2024"),
    ("Which quarter after 2023 had the lowest costs?", "after", D(2024, 1, 1), None, "after 2023"),
    ("Which quarter after 2024-Q1 was best?", "after", D(2024, 4, 1), None, "after 2024-Q1"),
    ("Which quarter after Q1 2024 was best?", "after", D(2024, 4, 1), None, "after Q1 2024"),
    ("What was cash in each quarter after 2024 Q1?", "after", D(2024, 4, 1), None, "after 2024 Q1"),
    ("What changed since 2020?", "after", D(2020, 1, 1), None, "since 2020"),
    ("What did it own before 2020?", "before", None, D(2020, 1, 1), "before 2020"),
    ("Who ran it until 2020?", "before", None, D(2021, 1, 1), "until 2020"),
    ("What was built by 2020?", "before", None, D(2021, 1, 1), "by 2020"),
    ("Which quarter was best between 2026-Q2 and 2025-Q1?", "between", D(2025, 1, 1), D(2026, 7, 1),
     "between 2026-Q2 and 2025-Q1"),
    ("Who was the mayor from 1969 to 1970?", "between", D(1969, 1, 1), D(1971, 1, 1), "from 1969 to 1970"),
    ("Who edited it from 1975 to Feb 2016?", "between", D(1975, 1, 1), D(2016, 3, 1), "from 1975 to Feb 2016"),
    ("How many stores opened during the period Q2 2026 to Q4 2026?", "between", D(2026, 4, 1), D(2027, 1, 1),
     "during the period Q2 2026 to Q4 2026"),
    ("What was net income in each quarter from Q4 of 2026 to Q3 of 2027?", "between", D(2026, 10, 1),
     D(2027, 10, 1), "from Q4 of 2026 to Q3 of 2027"),
    ("Who hosted the show 1974 to 1975?", "between", D(1974, 1, 1), D(1976, 1, 1), "1974 to 1975"),
    ("Which quarter was best between Q4 2026 and Q4 2026?", "between", D(2026, 10, 1), D(2027, 1, 1),
     "between Q4 2026 and Q4 2026"),
    ("What was revenue last quarter?", "at", D(2025, 1, 1), D(2025, 4, 1), "last quarter"),
    ("What was revenue last year?", "at", D(2024, 1, 1), D(2025, 1, 1), "last year"),
    ("What was revenue a year ago?", "at", D(2024, 1, 1), D(2025, 1, 1), "a year ago"),
    ("What is the outlook for this year?", "at", D(2025, 1, 1), D(2026, 1, 1), "for this year"),
    ("What launches next month?", "at", D(2025, 7, 1), D(2025, 8, 1), "next month"),
    ("How did margins change in the past two years?", "after", D(2023, 1, 1), None, "in the past two years"),
    ("What was the margin in the last 3 quarters?", "after", D(2024, 7, 1), None, "in the last 3 quarters"),
    ("Who chaired the club, founded in 1960, from 1960 to 1982?", "between", D(1960, 1, 1), D(1983, 1, 1),
     "from 1960 to 1982"),
    ("What was revenue in Q1 2024 and Q3 2024?", "between", D(2024, 1, 1), D(2024, 10, 1),
     "in Q1 2024 and Q3 2024"),
    ("What was revenue in Q3 2024 compared to Q3 2023?", "at", D(2024, 7, 1), D(2024, 10, 1), "in Q3 2024"),
]  # fmt: skip


@pytest.mark.parametrize(("question", "relation", "start", "end", "text"), SCOPES)
def test_query_scope(question: str, relation: str, start: date | None, end: date | None, text: str) -> None:
    scope = parse_query_scope(question, now=NOW)
    assert (scope.relation, scope.interval.start, scope.interval.end, scope.text) == (
        relation,
        start,
        end,
        text,
    )
    assert text in question


def test_query_scope_keeps_granularity_of_single_periods() -> None:
    assert parse_query_scope("in Q3 2024", NOW).interval == Q(2024, 3)
    assert parse_query_scope("between Q4 2026 and Q4 2026", NOW).interval == Q(2026, 4)
    assert parse_query_scope("IN 2024-Q3", NOW).interval == Q(2024, 3)


@pytest.mark.parametrize(
    "question",
    [
        "What is the company's strategy?",
        "Why was revenue $2,024 million?",
        "Did they open 13 new stores?",
        "Is leverage 5.1 times EBITDA?",
        "",
    ],
)
def test_query_without_time(question: str) -> None:
    assert parse_query_scope(question, NOW) == QueryScope(TimeInterval.always(), "all", "")


def test_query_scope_accepts_a_datetime_as_now() -> None:
    scope = parse_query_scope("What happened last quarter?", datetime(2025, 6, 15, 23, 59))
    assert scope.interval == Q(2025, 1)


def test_query_scope_defaults_to_today() -> None:
    scope = parse_query_scope("What happened this year?")
    assert scope.interval == Y(date.today().year)


# ---- properties ---------------------------------------------------------------------------
dates = st.dates(min_value=D(1000, 1, 1), max_value=D(2199, 12, 31))
years = st.integers(1000, 2199)
quarters = st.integers(1, 4)


@FAST
@given(dates)
def test_day_renderings_round_trip(d: date) -> None:
    name = MONTHS[d.month - 1]
    for text in (d.isoformat(), f"{name} {d.day}, {d.year}", f"{d.day} {name} {d.year}"):
        m = only(f"It happened on {text} .")
        assert m.interval == DAY(d) and m.text == text
    assert only(f"In {name[:3]} {d.year} it was over").interval == M(d.year, d.month)


@FAST
@given(years, quarters)
def test_quarter_forms(year: int, q: int) -> None:
    ordinal = ["first", "second", "third", "fourth"][q - 1]
    yy = f"{year % 100:02d}"
    forms = [f"Q{q} {year}", f"{year}-Q{q}", f"{year} Q{q}", f"{year}-q{q}", f"{ordinal} quarter of {year}",
             f"{ordinal} quarter {year}", f"{ordinal}-quarter {year}", f"{q}Q {year}", f"the {ordinal} quarter of fiscal {year}"]  # fmt: skip
    if 2000 <= year < 2050:  # two-digit years read as 20xx
        forms += [f"Q{q}'{yy}", f"Q{q} FY{yy}", f"{q}Q{yy}"]
    for form in forms:
        assert only(f"Revenue in {form} rose.").interval == Q(year, q), form


@FAST
@given(years, years)
def test_year_range(a: int, b: int) -> None:
    if a == b:
        return
    lo, hi = min(a, b), max(a, b)
    m = only(f"He served {lo}-{hi} abroad.")
    assert (m.interval.start, m.interval.end) == (D(lo, 1, 1), D(hi + 1, 1, 1))


@FAST
@given(st.integers(1001, 2198), quarters)
def test_last_quarter_is_the_previous_one(year: int, q: int) -> None:
    expected = Q(year, q - 1) if q > 1 else Q(year - 1, 4)
    assert only("Last quarter we grew.", ctx_q(year, q)).interval == expected
    assert only("a year ago", ctx_q(year, q)).interval == Q(year - 1, q)


# random text, and random strings of the pieces time expressions are made of
PIECES = [*"0123456789 -–/.,'?QHqFYfy", "Q3", "May ", "2024", "quarter ", "year ", "from ", "to ", "since ",
          "last ", "the ", "fiscal ", "ago ", "half ", "1999", "s "]  # fmt: skip
TEXTS = st.lists(st.sampled_from(PIECES), max_size=25).map("".join) | st.text(max_size=80)  # fmt: skip


@FAST
@given(TEXTS, st.sampled_from([None, REF_Q1, TimeContext(DAY(D(2024, 2, 29)), 7), TimeContext(Y(1000))]))
def test_find_times_never_raises_and_mentions_are_ordered(text: str, context: TimeContext | None) -> None:
    found = find_times(text, context)
    last_end = 0
    for m in found:
        assert last_end <= m.start < m.end <= len(text)
        assert text[m.start : m.end] == m.text
        last_end = m.end


@FAST
@given(TEXTS)
def test_parse_query_scope_never_raises(text: str) -> None:
    scope = parse_query_scope(text, NOW)
    assert scope.text in text
    assert scope.relation in {"at", "before", "after", "between", "all"}


@FAST
@given(TEXTS)
def test_parse_date_raises_only_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):  # any other exception fails the test
        parse_date(text)


def test_relative_reference_near_calendar_edges_does_not_raise() -> None:
    assert find_times("last year and next quarter", TimeContext(Y(1))) != []
    assert find_times("next year", TimeContext(DAY(D(9999, 12, 30)))) == []
    assert find_times("last quarter", TimeContext(TimeInterval.always())) == []
    assert find_times("since last year", TimeContext(TimeInterval(D(2020, 1, 1), None))) != []


def test_throughput_smoke() -> None:
    sentence = "In the third quarter of 2024, revenue rose 8% compared with $1.1 billion a year ago."
    ctx = ctx_q(2024, 3)
    t = time.perf_counter()
    for _ in range(2000):
        find_times(sentence, ctx)
    assert time.perf_counter() - t < 2.0  # generous: ~15k real sentences take well under 2 s
