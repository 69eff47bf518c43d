"""Tests for the derived indexes: faiss vectors, BM25, the fact catalog, and their persistence."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tgrag.index.catalog import FactCatalog
from tgrag.index.derived import MANIFEST, DerivedIndexes
from tgrag.index.lexical import BM25Index
from tgrag.index.vector import VECTOR_INDEXES, FaissIndex
from tgrag.model import Document, TimeInterval
from tgrag.sdk import TemporalRAG
from tgrag.store.base import FactRow
from tgrag.workspace import INDEX_DIR

from .world import World

FAST = settings(max_examples=100, deadline=None)
D = date


# ---- FaissIndex -------------------------------------------------------------------------------------
def _random_index(
    rng: np.random.Generator, n: int, dim: int, id_range: int
) -> tuple[FaissIndex, np.ndarray, np.ndarray]:
    ids = rng.choice(id_range, size=n, replace=False).astype(np.int64)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    index = FaissIndex.flat(dim)
    index.add(ids, vecs)
    return index, ids, vecs


def test_faiss_search_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    index, ids, vecs = _random_index(rng, 50, 8, 1000)
    queries = rng.standard_normal((3, 8)).astype(np.float32)
    scores, found = index.search(queries, 5)
    expected = ids[np.argsort(-(queries @ vecs.T), axis=1)[:, :5]]
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_allclose(scores, np.sort(queries @ vecs.T, axis=1)[:, ::-1][:, :5], rtol=1e-5)
    assert len(index) == 50 and index.dim == 8
    np.testing.assert_allclose(index.vectors(ids[:3]), vecs[:3])


def test_faiss_allowed_ids_regression_many_random_sets() -> None:
    """Only allowed ids come back, all of them when k is large enough, whatever the id layout.

    Allowed ids are mixed with ids that are not in the index, and the index holds ids past the
    largest allowed one (the selector bitmap must neither reject allowed ids nor admit others)."""
    rng = np.random.default_rng(7)
    for trial in range(200):
        n = int(rng.integers(1, 120))
        index, ids, vecs = _random_index(rng, n, 6, max(n, int(rng.choice([n + 3, 64, 1000, 70_000]))))
        k_allowed = int(rng.integers(1, n + 1))
        allowed = rng.choice(ids, size=k_allowed, replace=False)
        if trial % 3 == 0:  # ids unknown to the index, some past its largest id
            allowed = np.concatenate([allowed, rng.integers(0, int(ids.max()) + 50, size=5)])
        if trial % 5 == 0:  # one tiny allowed set while the index holds far larger ids
            allowed = np.array([int(ids.min())])
        queries = rng.standard_normal((2, 6)).astype(np.float32)
        scores, found = index.search(queries, n, allowed)
        wanted = set(ids.tolist()) & set(np.asarray(allowed).tolist())
        for row in range(2):
            got = [int(i) for i in found[row] if i >= 0]
            assert set(got) == wanted, (trial, sorted(wanted), sorted(got))
            # in score order, and the scores are the inner products
            by_id = dict(zip(ids.tolist(), vecs @ queries[row], strict=True))
            np.testing.assert_allclose(scores[row][: len(got)], [by_id[i] for i in got], rtol=1e-4, atol=1e-5)
            assert list(scores[row][: len(got)]) == sorted(scores[row][: len(got)], reverse=True)


def test_faiss_empty_cases_and_remove() -> None:
    index = FaissIndex.flat(4)
    scores, found = index.search(np.ones(4, np.float32), 3)
    assert found.shape == (1, 0) and scores.shape == (1, 0)
    index.add(np.array([5, 9]), np.eye(2, 4, dtype=np.float32))
    assert index.search(np.ones(4, np.float32), 3, np.array([], dtype=np.int64))[1].shape == (1, 0)
    index.remove(np.array([5]))
    assert len(index) == 1
    assert index.search(np.ones(4, np.float32), 3)[1].tolist() == [[9]]
    assert VECTOR_INDEXES.create("faiss-flat", dim=4).dim == 4


def test_faiss_save_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    index, ids, _ = _random_index(rng, 40, 8, 500)
    index.remove(ids[:5])
    index.save(tmp_path / "x.faiss")
    loaded = FaissIndex.load(tmp_path / "x.faiss")
    assert len(loaded) == 35 and loaded.dim == 8
    queries = rng.standard_normal((4, 8)).astype(np.float32)
    allowed = ids[::2]
    for a in (None, allowed):
        s1, f1 = index.search(queries, 10, a)
        s2, f2 = loaded.search(queries, 10, a)
        np.testing.assert_array_equal(f1, f2)
        np.testing.assert_array_equal(s1, s2)


# ---- BM25 ---------------------------------------------------------------------------------------------
CORPUS = ["apple banana apple", "banana cherry", "cherry date elderberry fig"]


def test_bm25_matches_hand_computed_scores() -> None:
    index = BM25Index()  # k1 = 1.2, b = 0.75
    index.add(CORPUS)
    # N = 3 rows, lengths 3, 2, 4, average length 3.
    # "apple": df 1, idf = ln(1 + (3 - 1 + 0.5) / 1.5) = ln(8/3); row 0 has tf 2 and length 3:
    #   2 * 2.2 / (2 + 1.2 * (0.25 + 0.75 * 3/3)) = 4.4 / 3.2
    np.testing.assert_allclose(index.scores("apple"), [math.log(8 / 3) * 4.4 / 3.2, 0, 0], rtol=1e-6)
    # "banana": df 2, idf = ln(1 + 1.5 / 2.5) = ln(1.6); row 0: 2.2 / 2.2; row 1 (length 2):
    #   2.2 / (1 + 1.2 * (0.25 + 0.75 * 2/3)) = 2.2 / 1.9
    banana = [math.log(1.6), math.log(1.6) * 2.2 / 1.9, 0]
    np.testing.assert_allclose(index.scores("banana"), banana, rtol=1e-6)
    # terms add up, stop words and unknown words add nothing, a repeated query term counts once
    fig = math.log(1 + 2.5 / 1.5) * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 4 / 3))
    np.testing.assert_allclose(
        index.scores("the banana and a fig, kiwi banana"), np.add(banana, [0, 0, fig]), rtol=1e-6
    )
    # plural and case fold onto the indexed terms
    np.testing.assert_allclose(index.scores("Bananas"), banana, rtol=1e-6)
    assert not BM25Index().scores("apple").size


def test_bm25_remove_masks_rows_like_an_index_without_them() -> None:
    index = BM25Index()
    index.add(CORPUS)
    index.remove([2])
    index.remove([2])  # twice is once
    reference = BM25Index()
    reference.add(CORPUS[:2])
    for query in ["apple", "banana", "cherry", "fig", "cherry banana apple"]:
        got = index.scores(query)
        assert got[2] == 0.0
        np.testing.assert_allclose(got[:2], reference.scores(query), rtol=1e-6, err_msg=query)
    # by hand, "cherry" after the removal: N = 2, df 1, average length 2.5
    expected = math.log(2.0) * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 2 / 2.5))
    assert index.scores("cherry")[1] == pytest.approx(expected, rel=1e-6)
    # a removed row never makes other rows score below zero
    index.remove([0])
    assert (index.scores("apple banana cherry") >= 0).all()
    index.remove([1])
    assert not index.scores("banana").any()


def test_bm25_save_load_round_trip(tmp_path: Path) -> None:
    index = BM25Index(k1=1.5, b=0.6)
    index.add([*CORPUS, "apple fig fig", "kiwi"])
    index.remove([1])
    index.save(tmp_path / "lex.npz")
    loaded = BM25Index.load(tmp_path / "lex.npz")
    assert len(loaded) == len(index) == 5
    for q in ["apple", "banana", "fig kiwi", "cherry date", "nothing"]:
        np.testing.assert_array_equal(loaded.scores(q), index.scores(q))
    # both keep growing the same way
    index.add(["banana split"])
    loaded.add(["banana split"])
    np.testing.assert_array_equal(loaded.scores("banana"), index.scores("banana"))
    empty = BM25Index()
    empty.save(tmp_path / "empty.npz")
    assert len(BM25Index.load(tmp_path / "empty.npz")) == 0


# ---- FactCatalog ---------------------------------------------------------------------------------------
def row(
    fid: int,
    time: TimeInterval,
    ingested: float = 0.0,
    projected: bool = False,
    entities: tuple[int, ...] = (),
) -> FactRow:
    return FactRow(
        fid,
        1,
        f"fact {fid}",
        time.start_ordinal,
        time.end_ordinal,
        time.granularity.value,
        time.label,
        ingested,
        "doc",
        0,
        0.5,
        entities or (1,),
        projected,
    )


TIMES = {
    "q3": TimeInterval.quarter(2024, 3),
    "aug": TimeInterval.month(2024, 8),
    "y2024": TimeInterval.year(2024),
    "jun_jul": TimeInterval(D(2024, 6, 1), D(2024, 8, 1)),
    "q2": TimeInterval.quarter(2024, 2),
    "until_2020": TimeInterval(None, D(2020, 1, 1)),
    "since_2021": TimeInterval(D(2021, 1, 1), None),
    "always": TimeInterval.always(),
    "y2019": TimeInterval.year(2019),
    "1990s": TimeInterval.decade(1990),
    "eleven_years": TimeInterval(D(2000, 1, 1), D(2011, 1, 1)),
}


def catalog_of(times: list[TimeInterval]) -> FactCatalog:
    catalog = FactCatalog()
    catalog.add([row(i + 1, t) for i, t in enumerate(times)])
    return catalog


def test_in_scope_overlap_with_open_ends() -> None:
    names = list(TIMES)
    catalog = catalog_of([TIMES[n] for n in names])

    def hits(scope: TimeInterval) -> set[str]:
        return {n for n, ok in zip(names, catalog.in_scope(scope), strict=True) if ok}

    opens = {"since_2021", "always"}
    assert hits(TimeInterval.quarter(2024, 3)) == {"q3", "aug", "y2024", "jun_jul"} | opens
    assert hits(TimeInterval(None, D(2019, 6, 1))) == {
        "until_2020",
        "always",
        "y2019",
        "1990s",
        "eleven_years",
    }
    assert hits(TimeInterval(D(2024, 9, 30), None)) == {"q3", "y2024", "since_2021", "always"}
    assert hits(TimeInterval.always()) == set(names)
    # half-open: touching is not overlapping
    assert "q3" not in hits(TimeInterval.quarter(2024, 4))
    assert "until_2020" in hits(TimeInterval.day(D(2019, 12, 31)))
    assert "until_2020" not in hits(TimeInterval.day(D(2020, 1, 1)))
    assert "since_2021" not in hits(TimeInterval.day(D(2020, 12, 31)))


_DAY = st.integers(min_value=D(1900, 1, 1).toordinal(), max_value=D(2100, 1, 1).toordinal())


@st.composite
def intervals(draw: st.DrawFn) -> TimeInterval:
    a, b = sorted(draw(st.lists(_DAY, min_size=2, max_size=2, unique=True)))
    start = None if draw(st.booleans()) and draw(st.booleans()) else D.fromordinal(a)
    end = None if draw(st.booleans()) and draw(st.booleans()) else D.fromordinal(b)
    return TimeInterval(start, end)


@FAST
@given(st.lists(intervals(), min_size=1, max_size=12), intervals())
def test_in_scope_agrees_with_interval_overlap(times: list[TimeInterval], scope: TimeInterval) -> None:
    catalog = catalog_of(times)
    assert catalog.in_scope(scope).tolist() == [t.overlaps(scope) for t in times]


def test_visible_as_of_and_removed() -> None:
    catalog = FactCatalog()
    catalog.add([row(10, TIMES["q3"], 100.0), row(11, TIMES["q3"], 200.0), row(12, TIMES["q2"], 300.0)])
    assert catalog.visible(None).tolist() == [True, True, True]
    assert catalog.visible(200.0).tolist() == [True, True, False]  # ingested at or before as_of
    assert catalog.visible(99.0).tolist() == [False, False, False]
    assert catalog.remove([11, 999]) == [1]
    assert catalog.visible(None).tolist() == [True, False, True]
    assert catalog.visible(1e9).tolist() == [True, False, True]
    assert catalog.alive_count == 2 and len(catalog) == 3
    assert catalog.row(11) is None and catalog.row(12) == 2
    assert catalog.rows_of(np.array([12, 11, 10])).tolist() == [2, -1, 0]
    assert catalog.time_of(2) == TIMES["q2"]


def test_time_weight() -> None:
    names = ["aug", "q3", "y2024", "jun_jul", "q2", "always", "since_2021", "until_2020"]
    catalog = catalog_of([TIMES[n] for n in names])
    q3 = TimeInterval.quarter(2024, 3)  # 92 days
    w = dict(zip(names, catalog.time_weight(q3, undated_weight=0.4, match_bonus=0.0), strict=True))
    assert w["aug"] == 1.0 and w["q3"] == 1.0  # contained
    # partially overlapping: the share of the fact's time inside the scope, at least 0.3
    assert w["jun_jul"] == pytest.approx(31 / 61)  # July of June + July
    assert w["y2024"] == pytest.approx(0.3)  # 92 / 366 = 0.25, raised to the floor
    assert w["q2"] == 0.0  # no overlap
    # undated and open-ended facts get the undated weight, as long as they overlap
    assert w["always"] == 0.4 and w["since_2021"] == 0.4 and w["until_2020"] == 0.0
    # an unbounded scope contains every bounded fact entirely
    everything = catalog.time_weight(TimeInterval.always(), undated_weight=0.4)
    assert everything.tolist() == [1.0, 1.0, 1.0, 1.0, 1.0, 0.4, 0.4, 0.4]
    # with the match bonus, a bounded fact keeps (1 - bonus) of its weight plus bonus * IoU
    bonus = dict(zip(names, catalog.time_weight(q3, undated_weight=0.4, match_bonus=0.25), strict=True))
    assert bonus["q3"] == 1.0  # the scope itself: IoU 1
    assert bonus["aug"] == pytest.approx(0.75 + 0.25 * 31 / 92)
    assert bonus["jun_jul"] == pytest.approx(31 / 61 * (0.75 + 0.25 * 31 / 122))  # union: June 1 .. Sept 30
    assert bonus["y2024"] == pytest.approx(0.3 * (0.75 + 0.25 * 92 / 366))
    assert (bonus["always"], bonus["since_2021"], bonus["q2"]) == (0.4, 0.4, 0.0)


def test_observed_excludes_open_projected_and_decade_plus() -> None:
    catalog = FactCatalog()
    names = ["q3", "y2024", "1990s", "eleven_years", "since_2021", "until_2020", "always"]
    catalog.add([row(i + 1, TIMES[n]) for i, n in enumerate(names)] + [row(99, TIMES["q3"], projected=True)])
    got = dict(zip([*names, "forecast"], catalog.observed().tolist(), strict=True))
    assert got == {
        "q3": True,
        "y2024": True,
        "1990s": True,
        "eleven_years": False,
        "since_2021": False,
        "until_2020": False,
        "always": False,
        "forecast": False,
    }


def test_incidence_skips_removed_rows() -> None:
    catalog = FactCatalog()
    catalog.add(
        [
            row(1, TIMES["q3"], entities=(1, 4)),
            row(2, TIMES["q3"], entities=(2,)),
            row(3, TIMES["q3"], entities=(4,)),
        ]
    )
    assert catalog.incidence().toarray().tolist() == [[0, 1, 0, 0, 1], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1]]
    catalog.remove([1])
    assert catalog.incidence().toarray().tolist() == [[0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1]]


# ---- DerivedIndexes persistence --------------------------------------------------------------------------
UTC = timezone.utc


@pytest.fixture(scope="module")
def built_store(
    tmp_path_factory: pytest.TempPathFactory, world: World
) -> tuple[Path, list[str], dict[str, list[str]]]:
    """A store with two ingests and a delete; the retrieval results it gives, by question."""
    path = tmp_path_factory.mktemp("derived") / "store"
    docs = [d for d in world.documents if d.period is not None and d.period.start.year == 2023]  # type: ignore[union-attr]
    first, second = docs[:6], docs[6:10]
    extra = Document(
        "Asteria Labs opened 13 new stores in Q2 2023.",
        period=TimeInterval.quarter(2023, 2),
        subject="Asteria Labs",
        key="extra",
    )
    questions = [
        q.text for q in world.questions if any(q.evidence and q.evidence in d.text for d in docs[:10])
    ][:4]
    questions += ["How many new stores did Asteria Labs open in 2023?", "operating margin third quarter"]
    with TemporalRAG.open(path) as rag:
        rag.ingest(first, ingested_at=datetime(2023, 8, 1, tzinfo=UTC))
        rag.ingest([*second, extra], ingested_at=datetime(2024, 2, 1, tzinfo=UTC))
        assert rag.delete("extra") is not None
        assert rag.delete(docs[1].id) is not None
        results = {q: [e.item_id for e in rag.retrieve(q).evidence] for q in questions}
    assert sum(len(v) for v in results.values()) > 0
    return path, questions, results


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def _open_counting(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[TemporalRAG, list[int]]:
    calls: list[int] = []
    original = DerivedIndexes.rebuild

    def counting(self: DerivedIndexes, store: object) -> None:
        calls.append(1)
        original(self, store)  # type: ignore[arg-type]

    monkeypatch.setattr(DerivedIndexes, "rebuild", counting)
    return TemporalRAG.open(path), calls


def _results(rag: TemporalRAG, questions: list[str]) -> dict[str, list[str]]:
    return {q: [e.item_id for e in rag.retrieve(q).evidence] for q in questions}


def test_manifest_names_the_store_generation_and_reopen_loads_files(
    built_store: tuple[Path, list[str], dict[str, list[str]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, questions, expected = built_store
    path = _copy(src, tmp_path)
    manifest = json.loads((path / INDEX_DIR / MANIFEST).read_text())
    rag, calls = _open_counting(path, monkeypatch)
    with rag:
        assert manifest["generation"] == rag.stats()["generation"] > 0
        assert manifest["dim"] == rag.workspace.embedder.dim
        assert calls == []  # loaded from the files, not rebuilt
        assert rag.workspace.indexes.generation == manifest["generation"]
        assert _results(rag, questions) == expected


def _truncate(name: str) -> Callable[[Path], None]:
    def corrupt(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])

    return corrupt


def _garbage(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes(b"\x00garbage" * 64)


def _missing(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


def _stale(folder: Path) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["generation"] -= 1
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _swap_rows(folder: Path) -> None:
    # a row map from another state: the right format, the wrong facts
    with np.load(folder / "rows.npz") as data:
        ids = data["row_ids"]
    np.savez(folder / "rows.npz", row_ids=ids[: len(ids) // 2])


CORRUPTIONS = {
    "missing fact.faiss": _missing("fact.faiss"),
    "missing lexical.npz": _missing("lexical.npz"),
    "missing manifest": _missing(MANIFEST),
    "truncated lexical.npz": _truncate("lexical.npz"),
    "truncated rows.npz": _truncate("rows.npz"),
    "truncated entity.faiss": _truncate("entity.faiss"),
    "garbage chunk.faiss": _garbage("chunk.faiss"),
    "stale manifest": _stale,
    "row map of another state": _swap_rows,
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_bad_index_files_are_rebuilt_with_identical_results(
    corruption: str,
    built_store: tuple[Path, list[str], dict[str, list[str]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src, questions, expected = built_store
    path = _copy(src, tmp_path)
    CORRUPTIONS[corruption](path / INDEX_DIR)
    rag, calls = _open_counting(path, monkeypatch)
    with rag:
        assert calls == [1]
        assert _results(rag, questions) == expected
        # the rebuilt indexes hold what the store holds
        idx, store = rag.workspace.indexes, rag.workspace.store
        assert idx.catalog.alive_count == store.stats()["facts"] == len(idx.vectors["fact"])
        assert len(idx.vectors["chunk"]) == store.stats()["chunks"]


def test_rebuilt_files_are_saved_by_the_next_write(
    built_store: tuple[Path, list[str], dict[str, list[str]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, questions, _ = built_store
    path = _copy(src, tmp_path)
    _stale(path / INDEX_DIR)
    with TemporalRAG.open(path) as rag:
        report = rag.ingest(
            [
                Document(
                    "Dunmore Textiles posted revenue of $9 million in Q4 2023.",
                    period=TimeInterval.quarter(2023, 4),
                    subject="Dunmore Textiles",
                )
            ]
        )
        assert report.facts_created >= 1
        generation = rag.stats()["generation"]
        after = _results(rag, questions)
    assert json.loads((path / INDEX_DIR / MANIFEST).read_text())["generation"] == generation
    rag, calls = _open_counting(path, monkeypatch)
    with rag:
        assert calls == []
        assert _results(rag, questions) == after
