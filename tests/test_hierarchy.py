"""Tests for tgrag.hierarchy (time nodes, summaries) and incremental summary refresh through the SDK."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tgrag.sdk
from tgrag.chunking import chunk_document
from tgrag.extract.rules import RuleExtractor
from tgrag.hierarchy import (
    MAX_YEARS_PER_FACT,
    attach_nodes,
    bottom_up,
    chain,
    day_node,
    summarise,
    with_ancestors,
)
from tgrag.model import Document, Granularity, TimeInterval, TimeLevel
from tgrag.sdk import TemporalRAG
from tgrag.workspace import Workspace

D = date
FAST = settings(max_examples=150, deadline=None)


def ids(nodes: list) -> list[str]:
    return [n.id for n in nodes]


# ---- attach_nodes --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("time", "expected"),
    [
        (TimeInterval.day(D(2024, 7, 15)), ["2024-07-15"]),
        (TimeInterval.month(2024, 7), ["2024-07"]),
        (TimeInterval(D(2024, 7, 3), D(2024, 7, 21)), ["2024-07"]),  # inside one month
        (TimeInterval.quarter(2024, 3), ["2024-Q3"]),
        (TimeInterval(D(2024, 8, 10), D(2024, 9, 20)), ["2024-Q3"]),  # two months of one quarter
        (TimeInterval.half(2024, 1), ["2024"]),  # two quarters: only the year holds it
        (TimeInterval(D(2024, 2, 1), D(2024, 5, 1)), ["2024"]),  # a fiscal quarter across two quarters
        (TimeInterval.year(2024), ["2024"]),
        (TimeInterval(D(2023, 12, 1), D(2024, 2, 1)), ["2023", "2024"]),  # across a year end
        (TimeInterval.span(TimeInterval.year(2019), TimeInterval.year(2021)), ["2019", "2020", "2021"]),
        (TimeInterval.decade(1990), [str(y) for y in range(1990, 2000)]),
        (
            TimeInterval(D(2000, 1, 1), D(2000 + MAX_YEARS_PER_FACT, 1, 1)),
            [str(2000 + i) for i in range(MAX_YEARS_PER_FACT)],
        ),
        (TimeInterval(D(2000, 1, 1), D(2001 + MAX_YEARS_PER_FACT, 1, 1)), []),  # too long to say much
        (TimeInterval(D(2021, 1, 1), None), []),  # since 2021
        (TimeInterval(None, D(1935, 1, 1)), []),  # until 1935
        (TimeInterval.always(), []),
        (TimeInterval(D(2024, 1, 1), D(2025, 1, 1), Granularity.UNKNOWN), []),
    ],
)
def test_attach_nodes(time: TimeInterval, expected: list[str]) -> None:
    nodes = attach_nodes(time)
    assert ids(nodes) == expected
    for n in nodes:
        assert n.interval.overlaps(time)
    if len(nodes) == 1:
        assert nodes[0].interval.contains(time)


_ORD = st.integers(min_value=D(1990, 1, 1).toordinal(), max_value=D(2030, 12, 31).toordinal())


@FAST
@given(_ORD, st.integers(min_value=1, max_value=800))
def test_attach_nodes_picks_the_finest_containing_node(start: int, days: int) -> None:
    time = TimeInterval(D.fromordinal(start), D.fromordinal(start + days))
    nodes = attach_nodes(time)
    first, last = time.start, time.end - timedelta(days=1)  # type: ignore[operator]
    if first.year != last.year:
        assert ids(nodes) == [f"{y:04d}" for y in range(first.year, last.year + 1)]
        return
    assert len(nodes) == 1
    node = nodes[0]
    assert node.interval.contains(time)
    # the finest: no node of the level below contains it
    finer = {
        TimeLevel.YEAR: TimeInterval.quarter(first.year, (first.month - 1) // 3 + 1),
        TimeLevel.QUARTER: TimeInterval.month(first.year, first.month),
        TimeLevel.MONTH: TimeInterval.day(first),
    }
    if node.level in finer:
        assert not finer[node.level].contains(time)


# ---- chain, with_ancestors, bottom_up ------------------------------------------------------------------------
def test_chain_links_each_node_to_its_parent() -> None:
    nodes = chain(day_node(D(2024, 8, 31)))
    assert ids(nodes) == ["2024-08-31", "2024-08", "2024-Q3", "2024"]
    assert [n.level for n in nodes] == [TimeLevel.DAY, TimeLevel.MONTH, TimeLevel.QUARTER, TimeLevel.YEAR]
    for child, parent in itertools.pairwise(nodes):
        assert child.parent == parent.id
        assert parent.interval.contains(child.interval) and parent.interval != child.interval
    assert nodes[-1].parent is None
    assert ids(chain(attach_nodes(TimeInterval.month(2024, 12))[0])) == ["2024-12", "2024-Q4", "2024"]
    assert ids(chain(attach_nodes(TimeInterval.quarter(2024, 1))[0])) == ["2024-Q1", "2024"]
    assert ids(chain(attach_nodes(TimeInterval.year(1916))[0])) == ["1916"]


def test_with_ancestors_and_bottom_up() -> None:
    nodes = [day_node(D(2024, 7, 1)), day_node(D(2024, 7, 2)), *attach_nodes(TimeInterval.quarter(2023, 4))]
    got = with_ancestors(nodes)
    assert ids(got) == ["2024-07-01", "2024-07", "2024-Q3", "2024", "2024-07-02", "2023-Q4", "2023"]
    assert ids(bottom_up(got)) == [
        "2024-07-01",
        "2024-07-02",
        "2024-07",
        "2023-Q4",
        "2024-Q3",
        "2023",
        "2024",
    ]


# ---- summarise ----------------------------------------------------------------------------------------------
def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_summarise_empty() -> None:
    s = summarise([], np.zeros((0, 4), np.float32), [], [], 5)
    assert (s.text, s.fact_ids) == ("", ())


def test_summarise_picks_the_most_central_fact() -> None:
    rng = np.random.default_rng(0)
    cluster = _unit(np.array([1.0, 0, 0, 0]) + 0.2 * rng.standard_normal((6, 4)))
    outliers = _unit(np.array([[0, 0, 1.0, 0], [0, 0, 0, 1.0]]))
    vecs = np.vstack([cluster, outliers])
    fact_ids = list(range(10, 18))
    texts = [f"text {i}" for i in fact_ids]
    conf = [0.5] * 8
    s = summarise(fact_ids, vecs, texts, conf, 1)
    centroid = vecs.mean(axis=0)
    expected = fact_ids[int(np.argmax(vecs @ (centroid / np.linalg.norm(centroid))))]
    assert s.fact_ids == (expected,) and s.text == f"text {expected}"
    assert expected < 16  # a cluster member, not an outlier
    # confidence breaks near-ties: the same vector twice, the more confident one wins
    twin = summarise([1, 2], _unit(np.ones((2, 3))), ["low", "high"], [0.2, 0.9], 1)
    assert twin.fact_ids == (2,)


def test_summarise_diversity_trades_centrality_for_coverage() -> None:
    vecs = _unit(np.array([[1.0, 0], [0.99, 0.141], [0.6, 0.8]]))  # 1 and 2 say nearly the same thing
    texts, conf = ["a", "b", "c"], [0.5] * 3
    # centrality to the centroid: fact 2 > fact 1 > fact 3
    assert summarise([1, 2, 3], vecs, texts, conf, 2, diversity=0.0).fact_ids == (1, 2)
    # with diversity, after fact 2 the near-copy 1 is penalised by its similarity (~0.99) to fact 2
    s = summarise([1, 2, 3], vecs, texts, conf, 2, diversity=1.0)
    assert (s.fact_ids, s.text) == ((2, 3), "b c")


def test_summarise_skips_duplicate_texts_respects_size_and_is_deterministic() -> None:
    rng = np.random.default_rng(5)
    vecs = _unit(rng.standard_normal((12, 8)))
    fact_ids = [int(i) for i in rng.permutation(np.arange(100, 112))]
    texts = [f"sentence {i % 5}" for i in range(12)]  # only 5 different texts
    conf = list(rng.uniform(0.3, 0.9, 12))
    for size in (1, 3, 5, 8):
        s = summarise(fact_ids, vecs, texts, conf, size)
        assert len(s.fact_ids) == min(size, 5)
        chosen = [texts[fact_ids.index(f)] for f in s.fact_ids]
        assert len(set(chosen)) == len(chosen), "no text twice"
        assert list(s.fact_ids) == sorted(s.fact_ids)
        assert s.text == " ".join(chosen)
        # the same input in another order gives the same summary
        perm = rng.permutation(12)
        again = summarise(
            [fact_ids[i] for i in perm], vecs[perm], [texts[i] for i in perm], [conf[i] for i in perm], size
        )
        assert again == s
    assert len(summarise(fact_ids, vecs, [f"t{i}" for i in range(12)], conf, 50).fact_ids) == 12


# ---- incremental refresh through the SDK -----------------------------------------------------------------------
def quarter_doc(q: int, revenue: int, stores: int) -> Document:
    text = f"Acme reported revenue of ${revenue} million.\nAcme opened {stores} new stores across the region."
    return Document(
        text, period=TimeInterval.quarter(2024, q), subject="Acme", source=f"acme-q{q}.txt", key=f"q{q}"
    )


def test_only_dirty_nodes_are_recomputed(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = [quarter_doc(1, 100, 3), quarter_doc(2, 120, 5), quarter_doc(3, 150, 8)]
    # premise: every fact of the third document is about Q3 2024 only
    third = docs[2]
    drafts = [f for e in RuleExtractor().extract(third, chunk_document(third, 180)) for f in e.facts]
    assert drafts and {f.time for f in drafts} == {TimeInterval.quarter(2024, 3)}

    dirty_seen: list[set[str]] = []
    original = tgrag.sdk.refresh_summaries

    def spy(ws: Workspace) -> int:
        dirty_seen.append({n.id for n in ws.store.time_nodes(dirty_only=True)})
        return original(ws)

    monkeypatch.setattr(tgrag.sdk, "refresh_summaries", spy)
    with TemporalRAG.open(store_path) as rag:
        store = rag.workspace.store
        first = rag.ingest(docs[:2])
        assert dirty_seen[-1] == {"2024-Q1", "2024-Q2", "2024"}
        assert first.summaries_recomputed == 3
        assert store.time_nodes(dirty_only=True) == []
        before = {n.id: n for n in store.time_nodes()}
        assert set(before) == {"2024", "2024-Q1", "2024-Q2"}
        assert "$100 million" in before["2024-Q1"].summary and "$120 million" not in before["2024-Q1"].summary

        report = rag.ingest(docs[2:])
        # the third quarter's node and its ancestor, not the earlier quarters'
        assert dirty_seen[-1] == {"2024-Q3", "2024"}
        assert report.summaries_recomputed == len(dirty_seen[-1]) == 2
        after = {n.id: n for n in store.time_nodes()}
        assert set(after) == {"2024", "2024-Q1", "2024-Q2", "2024-Q3"}
        assert not any(n.dirty for n in after.values())
        for nid in ("2024-Q1", "2024-Q2"):
            assert (after[nid].summary, after[nid].summary_fact_ids) == (
                before[nid].summary,
                before[nid].summary_fact_ids,
            )
        assert "$150 million" in after["2024-Q3"].summary
        # a parent is built from its children's summary facts (no fact hangs on the year itself)
        children = set().union(*(after[f"2024-Q{q}"].summary_fact_ids for q in (1, 2, 3)))
        assert set(after["2024"].summary_fact_ids) <= children
        assert len(after["2024"].summary_fact_ids) == min(5, len(children))

        # ingesting the same documents again changes nothing and recomputes nothing
        assert rag.ingest(docs).summaries_recomputed == 0

        # deleting a quarter: its node goes, and no summary above it still quotes its facts
        gone = set(after["2024-Q1"].summary_fact_ids)
        rag.delete("q1")
        assert dirty_seen[-1] == {"2024-Q1", "2024"}
        final = {n.id: n for n in store.time_nodes()}
        assert set(final) == {"2024", "2024-Q2", "2024-Q3"}
        assert not gone & set(final["2024"].summary_fact_ids)
        assert "$100 million" not in final["2024"].summary
        assert (final["2024-Q2"].summary, final["2024-Q3"].summary) == (
            after["2024-Q2"].summary,
            after["2024-Q3"].summary,
        )
