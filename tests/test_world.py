"""The generated evolving world: deterministic, consistent, its gold answers backed by its text."""

from __future__ import annotations

import bisect
import re
import time
from dataclasses import replace
from datetime import date
from functools import cache

import pytest

from eval.datasets import world as W
from eval.datasets.base import QAItem
from tgrag.extract.values import find_values
from tgrag.model import Document, TimeInterval
from tgrag.text import split_sentences
from tgrag.timex import TimeContext, find_times

SEEDS = (0, 1, 2)
METRIC_WORDS = (  # sentence keyword -> metric, the more specific first
    ("net income", "net income"),
    ("operating margin", "operating margin"),
    ("gross margin", "gross margin"),
    ("revenue", "revenue"),
    ("employees", "headcount"),
    ("customers", "customers"),
)


@cache
def small(seed: int = 0) -> W.World:
    return W.generate(replace(W.SCALES["small"], seed=seed))


def tickers(world: W.World) -> dict[str, str]:
    """Every name a company was ever known by -> its ticker (names are unique in a world)."""
    out: dict[str, str] = {}
    for d in world.documents:
        t = d.metadata["ticker"]
        for name in (d.subject or "", *d.aliases[1:]):
            assert out.setdefault(name, t) == t, f"{name} names two companies"
    return out


def truth(world: W.World) -> dict[tuple[str, str, str], str]:
    """(ticker, relation, period) -> the world's value."""
    names = tickers(world)
    return {(names[f.subject], f.relation, f.period): f.value for f in world.facts}


def number(value: str) -> float:
    return find_values(value)[0].number


def quarter_label(text: str) -> str:
    """ "Q3 2023" -> "2023-Q3"."""
    m = re.fullmatch(r"Q([1-4]) ([0-9]{4})", text)
    assert m, text
    return f"{m[2]}-Q{m[1]}"


def shift(label: str, quarters: int) -> str:
    y, q = int(label[:4]), int(label[-1])
    k = y * 4 + q - 1 + quarters
    return f"{k // 4}-Q{k % 4 + 1}"


def by_key(world: W.World) -> dict[str, Document]:
    return {d.key or "": d for d in world.documents}


# ---- determinism ----------------------------------------------------------------------------
def _fingerprint(world: W.World) -> tuple[object, ...]:
    docs = [(d.text, d.date, d.key, d.period, d.subject, d.aliases, d.metadata) for d in world.documents]
    qs = [(q.id, q.question, q.golden_answers, q.evidence, q.metadata) for q in world.questions]
    return docs, qs, world.slices, world.facts


def test_same_seed_same_world_and_other_seed_other_world() -> None:
    a = W.generate(replace(W.SCALES["small"], seed=5))
    b = W.generate(replace(W.SCALES["small"], seed=5))
    assert _fingerprint(a) == _fingerprint(b)
    c = W.generate(replace(W.SCALES["small"], seed=6))
    assert [d.text for d in a.documents] != [d.text for d in c.documents]
    assert [q.question for q in a.questions] != [q.question for q in c.questions]


def test_keep_facts_off_counts_the_same_facts() -> None:
    counted = W.generate(replace(W.SCALES["small"], keep_facts=False))
    assert counted.facts == []
    assert counted.fact_count() == small().fact_count() == len(small().facts)
    assert [d.text for d in counted.documents] == [d.text for d in small().documents]


# ---- gold answers and evidence --------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_every_question_type_is_present(seed: int) -> None:
    world = small(seed)
    types = {q.metadata["type"] for q in world.questions}
    assert types == set(W.QUESTION_TYPES)
    reasons = {q.metadata["reason"] for q in world.questions if not q.answerable}
    assert {"after_coverage", "before_coverage", "unknown_entity"} <= reasons
    assert len({q.id for q in world.questions}) == len(world.questions)
    for t in W.QUESTION_TYPES:
        assert sum(q.metadata["type"] == t for q in world.questions) <= world.config.questions_per_type


def _check_support(q: QAItem, facts: dict[tuple[str, str, str], str]) -> None:
    kind, meta = q.metadata["type"], q.metadata
    if kind == "unanswerable":
        assert q.golden_answers == () and q.evidence == () and meta["reason"]
        return
    assert len(q.golden_answers) == 1 and q.evidence
    gold = q.golden_answers[0]
    if kind in ("point", "before", "after", "between", "relative", "as_of"):
        assert any(gold in s for s in q.evidence), (q.question, gold, q.evidence)
        return
    values = [facts[(meta["company"], meta["relation"], p)] for p in meta["period"]]
    assert len(values) == len(q.evidence) == 4
    for v, s in zip(values, q.evidence, strict=True):
        assert v in s, (v, s)
    if kind == "enumeration":
        assert gold.split(", ") == values
    else:  # comparison: the answer's quarter holds the extreme
        nums = [number(v) for v in values]
        best = max(nums) if "highest" in q.question else min(nums)
        assert nums.count(best) == 1
        assert meta["period"][nums.index(best)] == quarter_label(gold)


@pytest.mark.parametrize("seed", SEEDS)
def test_gold_answers_are_supported_by_gold_evidence(seed: int) -> None:
    world = small(seed)
    facts = truth(world)
    for q in world.questions:
        _check_support(q, facts)


@pytest.mark.parametrize("seed", SEEDS)
def test_gold_answers_are_the_ground_truth(seed: int) -> None:
    world = small(seed)
    facts, docs = truth(world), by_key(world)
    for q in world.questions:
        meta = q.metadata
        if meta["type"] in ("point", "relative"):
            assert q.golden_answers[0] == facts[(meta["company"], meta["relation"], meta["period"][0])]
        if meta["type"] in ("before", "after", "between"):
            asked = meta["period"]
            holders = {
                v
                for (t, r, p), v in facts.items()
                if t == meta["company"]
                and r == meta["relation"]
                and (
                    (meta["type"] == "before" and p < asked[0])
                    or (meta["type"] == "after" and p > asked[0])
                    or (meta["type"] == "between" and asked[0] <= p <= asked[1])
                )
            }
            assert holders == {q.golden_answers[0]}, q.question  # exactly one right answer
        if meta["type"] == "relative":
            now = date.fromisoformat(meta["now"])
            assert TimeInterval.quarter(*_yq(shift(meta["period"][0], 1))).contains_date(now)
            assert all(str(docs[k].date) <= meta["now"] for k in meta["evidence_docs"])


def _yq(label: str) -> tuple[int, int]:
    return int(label[:4]), int(label[-1])


@pytest.mark.parametrize("seed", SEEDS)
def test_evidence_sentences_are_verbatim_sentences_of_their_documents(seed: int) -> None:
    world = small(seed)
    docs = by_key(world)
    for q in world.questions:
        assert len(q.evidence) == len(q.metadata["evidence_docs"])
        for sentence, key in zip(q.evidence, q.metadata["evidence_docs"], strict=True):
            spans = {s.text for s in split_sentences(docs[key].text)}
            assert sentence in spans, (sentence, key)


def test_as_of_twins_straddle_the_correction() -> None:
    for seed in SEEDS:
        world = small(seed)
        docs, facts = by_key(world), truth(world)
        pairs: dict[str, list[QAItem]] = {}
        for q in world.questions:
            if q.metadata["type"] == "as_of":
                pairs.setdefault(q.metadata["pair"], []).append(q)
        assert pairs
        for early, late in pairs.values():
            assert early.question == late.question
            assert early.metadata["as_of"] < late.metadata["as_of"]
            assert early.golden_answers != late.golden_answers
            meta = late.metadata
            assert late.golden_answers[0] == facts[(meta["company"], meta["relation"], meta["period"][0])]
            correction = docs[late.metadata["evidence_docs"][0]]
            assert correction.metadata["event"] == "correction"
            assert str(correction.date) <= late.metadata["as_of"]
            assert str(docs[early.metadata["evidence_docs"][0]].date) <= early.metadata["as_of"]
            assert early.metadata["as_of"] < str(correction.date)


def test_unanswerable_questions_are_outside_the_world() -> None:
    world = small()
    names = tickers(world)
    periods = {f.period for f in world.facts}
    for q in world.questions:
        if q.answerable:
            continue
        reason = q.metadata["reason"]
        if reason == "unknown_entity":
            assert not any(name in q.question for name in names)
        elif reason in ("after_coverage", "before_coverage"):
            assert q.metadata["period"][0] not in periods


# ---- consistency of the text with the world ---------------------------------------------------
_FIGURE = r"\$[0-9,]+ million|[0-9]+\.[0-9]%|[0-9,]+ employees|[0-9,]+ customers"
_CITED = re.compile(
    rf"(?P<d>up|down) from (?P<v>{_FIGURE}) (?P<w>last quarter|in the previous quarter)"
    rf"|(?:compared with|versus) (?P<v2>{_FIGURE}) (?P<w2>a year ago|in the year-ago quarter|in the same quarter last year)"
)


def _metric(sentence: str) -> str:
    low = sentence.lower()
    return next(m for word, m in METRIC_WORDS if word in low)


@pytest.mark.parametrize("seed", SEEDS)
def test_last_quarter_and_year_ago_figures_are_the_worlds(seed: int) -> None:
    world = small(seed)
    facts = truth(world)
    checked = {"last": 0, "year": 0}
    for d in world.documents:
        if d.metadata["kind"] != "report":
            continue
        assert d.period is not None
        for s in split_sentences(d.text):
            m = _CITED.search(s.text)
            if not m:
                continue
            metric, t = _metric(s.text), d.metadata["ticker"]
            back = -1 if m["v"] else -4
            cited = m["v"] or m["v2"]
            assert cited == facts[(t, metric, shift(d.period.label, back))], s.text
            checked["last" if back == -1 else "year"] += 1
            if m["d"]:  # the direction word agrees with the figures
                current = number(s.text)
                assert (current > number(cited)) == (m["d"] == "up"), s.text
    assert checked["last"] > 5 and checked["year"] > 5


@pytest.mark.parametrize("seed", SEEDS)
def test_restated_figures_are_the_ground_truth(seed: int) -> None:
    world = small(seed)
    facts, docs = truth(world), by_key(world)
    corrections = [d for d in world.documents if d.metadata.get("event") == "correction"]
    assert corrections
    for d in corrections:
        m = re.search(rf"(?:restated|revised) its (.+?) for (.+?) to ({_FIGURE}),? from ({_FIGURE})", d.text)
        assert m, d.text
        metric, period = m[1], d.metadata["period"]
        assert metric == d.metadata["metric"]
        key = (d.metadata["ticker"], metric, period)
        assert facts[key] == m[3] != m[4]
        y, q = _yq(period)
        original = docs[f"{d.metadata['ticker']}-{y}-Q{q}-report"]
        assert m[4] in original.text and m[3] not in original.text
        assert original.date is not None and d.date is not None and original.date < d.date


@pytest.mark.parametrize("seed", SEEDS)
def test_acquired_companies_stop_reporting(seed: int) -> None:
    world = small(seed)
    deals = [d for d in world.documents if d.metadata.get("event") == "acquisition"]
    assert deals
    for deal in deals:
        target = deal.metadata["target"]
        theirs = [d for d in world.documents if d.metadata["ticker"] == target]
        assert theirs and all(
            d.date is not None and deal.date is not None and d.date < deal.date for d in theirs
        )
        last = max(d.period.label for d in theirs if d.period is not None)
        assert last == shift(deal.metadata["period"], -1)  # reported up to the quarter before the deal


@pytest.mark.parametrize("seed", SEEDS)
def test_renamed_companies_use_their_new_name_and_keep_the_old_as_alias(seed: int) -> None:
    world = small(seed)
    renames = [(i, d) for i, d in enumerate(world.documents) if d.metadata.get("event") == "rename"]
    assert renames
    for i, news in renames:
        ticker, new = news.metadata["ticker"], news.subject
        assert new is not None
        old = re.search(r"formerly ([^,)]+)", news.text)
        assert old, news.text
        assert old[1] in news.aliases
        before = [d for d in world.documents[:i] if d.metadata["ticker"] == ticker]
        after = [d for d in world.documents[i + 1 :] if d.metadata["ticker"] == ticker]
        assert before and all(d.subject != new for d in before)
        for d in after:
            assert d.subject is not None and d.subject != old[1] and d.subject in d.text
            assert old[1] in d.aliases


# ---- order, slices, save and load --------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_documents_and_slices_are_in_time_order(seed: int) -> None:
    world = small(seed)
    dates = [d.date for d in world.documents]
    assert all(d is not None for d in dates)
    assert dates == sorted(dates)  # type: ignore[type-var]
    assert len({d.key for d in world.documents}) == len(world.documents)
    assert [i for s in world.slices for i in s] == list(range(len(world.documents)))
    quarters = [{(d.year, (d.month - 1) // 3) for d in (dates[i] for i in s) if d} for s in world.slices]
    assert all(len(q) == 1 for q in quarters)
    flat = [next(iter(q)) for q in quarters]
    assert flat == sorted(flat) and len(set(flat)) == len(flat)
    slice_of = {world.documents[i].key: k for k, s in enumerate(world.slices) for i in s}
    firsts = [s[0] for s in world.slices]
    for q in world.questions:
        docs = q.metadata["evidence_docs"]
        assert q.metadata["slice"] == max((slice_of[k] for k in docs), default=0)
        last = max(
            (bisect.bisect_right(firsts, [d.key for d in world.documents].index(k)) - 1 for k in docs),
            default=0,
        )
        assert q.metadata["slice"] == last


def test_reports_name_the_current_leaders() -> None:
    world = small()
    facts = truth(world)
    for d in world.documents:
        if d.metadata.get("event") == "role":
            role = (
                "chief executive officer" if d.key and d.key.endswith("-ceo") else "chief financial officer"
            )
            new = facts[(d.metadata["ticker"], f"appointed {role}", d.metadata["period"])]
            held = facts.get((d.metadata["ticker"], role, d.metadata["period"]))
            assert held in (None, new)  # None: the company stopped reporting before the quarter ended


def test_save_then_load_round_trips(tmp_path: object) -> None:
    from pathlib import Path

    world = small(1)
    folder = Path(str(tmp_path)) / "w"
    W.save(world, folder)
    back = W.load(folder)
    assert back.config == world.config
    assert back.documents == world.documents
    assert [d.metadata for d in back.documents] == [d.metadata for d in world.documents]
    assert back.questions == world.questions
    assert [q.metadata for q in back.questions] == [q.metadata for q in world.questions]
    assert back.slices == world.slices and back.facts == world.facts
    assert back.fact_count() == world.fact_count()


# ---- our own stack reads the text --------------------------------------------------------------
def test_metric_sentences_parse_with_timex_and_values() -> None:
    world = small(2)
    docs = by_key(world)
    metrics = set(world.config.metrics)
    checked = 0
    for f in world.facts:
        if f.relation not in metrics:
            continue
        d = docs[f.doc_key]
        context = TimeContext(d.reference_time)
        sentence = next(s.text for s in split_sentences(d.text) if f.value in s.text)
        assert f.period in {t.interval.label for t in find_times(sentence, context)}, sentence
        assert f.value in {v.text for v in find_values(sentence)}, sentence
        checked += 1
    assert checked > 300


# ---- sizes and speed ---------------------------------------------------------------------------
def test_sizes_grow_with_the_scale() -> None:
    for seed in range(4):
        tiny = W.generate(replace(W.SCALES["tiny"], seed=seed))
        assert 8 <= len(tiny.documents) <= 14
    medium = W.generate("medium")
    assert W.generate("tiny").fact_count() < small().fact_count() < medium.fact_count()
    xl = W.SCALES["xl"]
    per_report = len(xl.metrics) + 2
    assert xl.companies * xl.quarters * per_report > 1_000_000 and not xl.keep_facts


def test_generation_rate_extrapolates_to_a_million_facts_in_two_minutes() -> None:
    config = replace(W.SCALES["xl"], companies=150, quarters=40)
    started = time.perf_counter()
    world = W.generate(config)
    seconds = time.perf_counter() - started
    rate = world.fact_count() / seconds
    print(
        f"\nworld: {world.fact_count()} facts, {len(world.documents)} documents in {seconds:.2f} s: {rate:,.0f} facts/s"
    )
    assert 1_000_000 / rate < 120
