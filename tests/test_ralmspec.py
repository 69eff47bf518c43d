"""RaLMSpec: speculative retrieval gives the baseline's output token for token, and overlaps for real."""

from __future__ import annotations

import ast
import math
import random
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import pairwise, product
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from speculation import (
    DenseRetriever,
    FixedStride,
    HFGenerator,
    Hit,
    OS3Scheduler,
    RalmConfig,
    Retriever,
    SpeculativeRetriever,
    baseline,
    make_retriever,
    speculative,
    tokenize,
    top_hits,
)
from speculation.base import exact_top_hits, exact_top_hits_grouped
from speculation.scheduler import RunLengths, _finish, async_cost, expected_steps, sync_cost

REPO = Path(__file__).resolve().parents[1]
KINDS = ("flat", "flat-bf16", "hnsw", "bm25")
WORDS = (
    "revenue margin guidance quarter year company growth fiscal billion million percent customers "
    "chief executive officer university professor joined left played club team born city launched "
    "product merger renamed acquired reported expects increase decrease compared previous period"
).split()
VOCAB = {w: i for i, w in enumerate(WORDS)}
DIM = 64
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def hashed_bow(texts: list[str]) -> np.ndarray:
    """A cheap deterministic encoder: hashed bag of words, L2-normalised (zero rows stay zero)."""
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in tokenize(text):
            out[i, zlib.crc32(word.encode()) % DIM] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1.0, norms)


def passages(n: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + "." for _ in range(n)]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return passages()


@pytest.fixture(scope="module")
def retrievers(corpus: list[str]) -> Iterator[dict[str, Retriever]]:
    import faiss

    threads = faiss.omp_get_max_threads()
    built = {
        "flat": make_retriever("flat", corpus, encode=hashed_bow, threads=1),
        "flat-bf16": make_retriever("flat-bf16", corpus, encode=hashed_bow, threads=1),
        "hnsw": make_retriever("hnsw", corpus, encode=hashed_bow, hnsw_m=8, ef_search=20),
        "bm25": make_retriever("bm25", corpus),
    }
    yield built
    faiss.omp_set_num_threads(threads)  # process-wide: leave it as the other tests found it


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HFGenerator]:
    import torch

    from tgrag.llm.tiny import build_tiny_llama

    threads = torch.get_num_threads()
    path = build_tiny_llama(tmp_path_factory.mktemp("ralmspec-llama") / "model", layers=1)
    yield HFGenerator(path, threads=1)
    torch.set_num_threads(threads)


class WordGenerator:
    """A fake ``TokenGenerator`` over the corpus words: next token = hash of all ids so far.

    Every token depends on the whole prompt, the document included, so a step generated on a
    wrong document differs from the right one, and a missed rollback shows in the output.
    With ``window`` > 0 a token hashes only the last ``window`` ids: once the prompt and output
    are that long, the document no longer matters, and wrong guesses are salvaged instead.
    """

    def __init__(self, sleep: float = 0.0, eos_every: int = 0, window: int = 0) -> None:
        self.sleep = sleep
        self.eos_every = eos_every  # > 0: hashes divisible by it end the sequence
        self.window = window

    def encode(self, text: str) -> list[int]:
        return [VOCAB.get(w, zlib.crc32(w.encode()) % len(WORDS)) for w in tokenize(text)]

    def decode(self, ids: list[int]) -> str:
        return " ".join(WORDS[i] for i in ids)

    def greedy(self, prompt_ids: list[int], n: int) -> list[int]:
        if self.sleep:
            time.sleep(self.sleep)
        ids = list(prompt_ids)
        out: list[int] = []
        for _ in range(n):
            h = zlib.crc32(np.asarray(ids[-self.window :] if self.window else ids, dtype=np.int64).tobytes())
            if self.eos_every and h % self.eos_every == 0:
                break
            ids.append(h % len(WORDS))
            out.append(ids[-1])
        return out


class Liar:
    """Wraps a retriever and ranks candidates worst first: speculation is wrong whenever it can be."""

    def __init__(self, inner: Retriever) -> None:
        self.inner = inner
        self.name = f"liar-{inner.name}"

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        return self.inner.search(queries, k)

    def rank_within(
        self, queries: Sequence[str], ids: Sequence[int], k: int | None = None
    ) -> list[list[Hit]]:
        return [hits[::-1][:k] for hits in self.inner.rank_within(queries, ids)]

    def text(self, doc_id: int) -> str:
        return self.inner.text(doc_id)


class Jittery:
    """Wraps a retriever and sleeps a little in ``search``: verifications finish at varied points."""

    def __init__(self, inner: Retriever, seed: int, most: float = 0.004) -> None:
        self.inner = inner
        self.name = inner.name
        self._rng = random.Random(seed)
        self._most = most
        self._lock = threading.Lock()

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        with self._lock:
            pause = self._rng.uniform(0, self._most)
        time.sleep(pause)
        return self.inner.search(queries, k)

    def rank_within(
        self, queries: Sequence[str], ids: Sequence[int], k: int | None = None
    ) -> list[list[Hit]]:
        return self.inner.rank_within(queries, ids, k)

    def text(self, doc_id: int) -> str:
        return self.inner.text(doc_id)


class Slow:
    """A corpus whose ranking ignores the query (speculation is always right); search takes 0.2 s."""

    name = "slow"

    def __init__(self, n: int = 50, pause: float = 0.2) -> None:
        self.pause = pause
        self.texts = passages(n, seed=1)

    def _rank(self, ids: Sequence[int]) -> list[Hit]:
        return [Hit(i, 1.0 / (1 + i)) for i in sorted(ids)]

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        time.sleep(self.pause)
        return [self._rank(range(min(k, len(self.texts)))) for _ in queries]

    def rank_within(
        self, queries: Sequence[str], ids: Sequence[int], k: int | None = None
    ) -> list[list[Hit]]:
        return [self._rank(ids)[:k] for _ in queries]

    def text(self, doc_id: int) -> str:
        return self.texts[doc_id]


class Scripted(FixedStride):
    """A scheduler that answers the given strides in turn (0 included: retrieve for real)."""

    def __init__(self, strides: list[int]) -> None:
        super().__init__()
        self.strides = strides
        self._calls = 0

    def stride(self, asynchronous: bool = False, remaining: int | None = None) -> int:
        self._calls += 1
        return self.strides[self._calls % len(self.strides)]


def prompt_text(words: list[str]) -> str:
    return " ".join(words).capitalize()


prompts = st.lists(st.sampled_from(WORDS), min_size=0, max_size=10).map(prompt_text)
schedulers = st.one_of(
    st.builds(OS3Scheduler, max_stride=st.integers(1, 8), initial_stride=st.integers(1, 4)),
    st.builds(FixedStride, st.integers(1, 6)),
    st.builds(Scripted, st.lists(st.integers(0, 4), min_size=1, max_size=6)),
)


# Retrievers


def test_top_hits_breaks_ties_by_smaller_id_even_at_the_cut() -> None:
    ids = np.array([9, 4, 7, 1, 3], dtype=np.int64)
    scores = np.array([0.5, 0.9, 0.5, 0.5, 0.1])
    assert top_hits(ids, scores, 3) == [Hit(4, 0.9), Hit(1, 0.5), Hit(7, 0.5)]
    assert [h.id for h in top_hits(ids, scores, 10)] == [4, 1, 7, 9, 3]
    assert top_hits(ids, scores, 0) == []


def test_make_retriever_registry(corpus: list[str]) -> None:
    assert make_retriever("bm25", corpus[:5]).name == "bm25"
    with pytest.raises(ValueError, match="unknown retriever"):
        make_retriever("nope", corpus)


def test_prefetch_beyond_the_hnsw_beam_is_refused(retrievers: dict[str, Retriever]) -> None:
    # Past ef_search the beam widens with k, and the top-1 of a k=prefetch verification could
    # differ from the baseline's k=1 search.
    with pytest.raises(ValueError, match="top1_stable_k"):
        SpeculativeRetriever(retrievers["hnsw"], prefetch=21)
    SpeculativeRetriever(retrievers["hnsw"], prefetch=20)
    SpeculativeRetriever(retrievers["flat"], prefetch=100)


def reference_bm25(corpus: list[str], query: str, k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    docs = [Counter(tokenize(t)) for t in corpus]
    lengths = [sum(d.values()) for d in docs]
    avg = sum(lengths) / len(docs)
    scores = np.zeros(len(docs))
    for term, qtf in Counter(tokenize(query)).items():
        df = sum(1 for d in docs if term in d)
        idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        for i, d in enumerate(docs):
            tf = d.get(term, 0)
            if tf:
                scores[i] += qtf * idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * lengths[i] / avg))
    return scores


@FAST
@given(words=st.lists(st.sampled_from([*WORDS, "unseen"]), min_size=0, max_size=8))
def test_search_matches_brute_force(
    corpus: list[str], retrievers: dict[str, Retriever], words: list[str]
) -> None:
    query = " ".join(words)
    dense = hashed_bow(corpus).astype(np.float64) @ hashed_bow([query])[0].astype(np.float64)
    exact = {"flat": dense, "flat-bf16": dense, "bm25": reference_bm25(corpus, query)}
    for kind, ref in exact.items():
        hits = retrievers[kind].search([query], 5)[0]
        assert np.allclose([h.score for h in hits], np.sort(ref)[::-1][:5])
        assert np.allclose([h.score for h in hits], ref[[h.id for h in hits]])
        ranking = retrievers[kind].search([query], len(corpus))[0]
        assert sorted(h.id for h in ranking) == list(range(len(corpus)))
        # Best first, and equal scores in increasing id order.
        assert all((a.score, -a.id) > (b.score, -b.id) for a, b in pairwise(ranking))


@FAST
@given(
    batch=st.lists(st.lists(st.sampled_from(WORDS), max_size=6).map(" ".join), min_size=1, max_size=6),
    data=st.data(),
)
def test_rankings_are_batch_invariant_and_agree_within_candidates(
    retrievers: dict[str, Retriever], batch: list[str], data: st.DataObject
) -> None:
    for kind, retriever in retrievers.items():
        together = retriever.search(batch, 20)
        assert together == [retriever.search([q], 20)[0] for q in batch], kind
        assert [r[0] for r in together] == [retriever.search([q], 1)[0][0] for q in batch], kind
        for query, hits in zip(batch, together, strict=True):
            others = data.draw(st.lists(st.integers(0, 299), max_size=30), label="extra ids")
            ids = [h.id for h in hits[: data.draw(st.integers(1, 20))]] + others
            ranked = retriever.rank_within([query], ids)[0]
            assert sorted(h.id for h in ranked) == sorted(set(ids))
            if kind != "hnsw":  # exact scoring: the true top-1 wins among any candidates
                assert ranked[0] == hits[0], kind
            by_id = {h.id: h.score for h in ranked}
            assert all(by_id[h.id] == h.score for h in hits if h.id in by_id), kind


@FAST
@given(batch=st.lists(st.lists(st.sampled_from(WORDS), max_size=5).map(" ".join), min_size=2, max_size=9))
def test_flat_blas_batches_equal_faiss_single_queries(corpus: list[str], batch: list[str]) -> None:
    vectors = hashed_bow(corpus)
    blocks = DenseRetriever(vectors, hashed_bow, texts=corpus, block_rows=7)  # many blocks to merge
    faiss_only = DenseRetriever(vectors, hashed_bow, texts=corpus, blas_batch=None)
    assert blocks.search(batch, 20) == [faiss_only.search([q], 20)[0] for q in batch]
    assert blocks.search(batch, 1000)[0] == faiss_only.search(batch[:1], 1000)[0]  # k beyond the corpus


def test_dense_retriever_takes_a_prebuilt_index(corpus: list[str]) -> None:
    """A graph read back from disk searches like the one built in place; a wrong one is refused."""
    import faiss

    vectors = hashed_bow(corpus)
    built = DenseRetriever(vectors, hashed_bow, kind="hnsw", texts=corpus, hnsw_m=8)
    graph = faiss.IndexHNSWFlat(vectors.shape[1], 8, faiss.METRIC_INNER_PRODUCT)
    graph.add(vectors)
    given = DenseRetriever(vectors, hashed_bow, kind="hnsw", texts=corpus, hnsw_m=8, index=graph)
    queries = corpus[:5]
    assert given.search(queries, 10) == built.search(queries, 10)
    with pytest.raises(ValueError, match="holds"):
        DenseRetriever(vectors[:-1], hashed_bow, kind="hnsw", texts=corpus[:-1], index=graph)


@pytest.mark.parametrize("seed", range(4))
def test_bf16_screen_is_exact_on_near_ties(seed: int) -> None:
    """Clusters of near-duplicates (differences far below bf16's resolution) and exact duplicates:
    the screened search returns float64 brute force's top k, ties by smaller id, in any batch."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((7, 48))
    vecs = centres[rng.integers(0, 7, 3000)] + rng.standard_normal((3000, 48)) * 10.0 ** rng.uniform(-6, -2)
    vecs[100:110] = vecs[90]  # exact duplicates: ties broken by id
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    queries = (centres[rng.integers(0, 7, 9)] + rng.standard_normal((9, 48)) * 1e-3).astype(np.float32)
    queries[0] = vecs[90]
    table = {f"q{i}": q for i, q in enumerate(queries)}

    def encode(texts: list[str]) -> np.ndarray:
        return np.stack([table[t] for t in texts])

    screened = DenseRetriever(vecs, encode, texts=[str(i) for i in range(3000)], screen="bf16")
    names = list(table)
    for k in (1, 5, 20, 64):
        got = screened.search(names, k)
        for name, hits in zip(names, got, strict=True):
            exact = (vecs.astype(np.float64) * table[name].astype(np.float64)).sum(axis=1)
            order = np.lexsort((np.arange(3000), -exact))[:k]
            assert [h.id for h in hits] == order.tolist(), (k, name)
        assert got == [screened.search([n], k)[0] for n in names]
    ranking = [h.id for h in screened.search(["q0"], 3000)[0]]
    dupes = [i for i in ranking if i == 90 or 100 <= i < 110]
    assert dupes == [90, *range(100, 110)]  # equal scores: by id
    assert ranking.index(109) - ranking.index(90) == 10  # and nothing between them
    with pytest.raises(ValueError, match="flat only"):
        DenseRetriever(vecs, encode, kind="hnsw", texts=[str(i) for i in range(3000)], screen="bf16")


@pytest.mark.parametrize("seed", range(6))
def test_screened_exact_top_hits_equal_float64_brute_force(seed: int) -> None:
    """Near-ties far below float32's resolution, exact duplicates and scaled rows: the float32
    screen never drops a row of the exact top k, and ties still go to the smaller id."""
    rng = np.random.default_rng(seed)
    d = int(rng.choice([7, 48, 384]))
    centres = rng.standard_normal((3, d))
    vecs = centres[rng.integers(0, 3, 400)] + rng.standard_normal((400, d)) * 10.0 ** rng.uniform(-7, -1)
    vecs[50:60] = vecs[40]
    vecs *= rng.uniform(0.5, 3.0, (400, 1))  # not unit norm: the bound must scale with the rows
    vecs = vecs.astype(np.float32)
    ids = rng.permutation(10_000)[:400].astype(np.int64)
    for query in (vecs[40], centres[0].astype(np.float32), rng.standard_normal(d).astype(np.float32)):
        exact = (vecs.astype(np.float64) * query.astype(np.float64)).sum(axis=1)
        order = np.lexsort((ids, -exact))
        for k in (1, 2, 5, 11, 64, 399, 400, 1000, None):
            hits = exact_top_hits(query, ids, vecs, k)
            want = order[: 400 if k is None else k]
            assert [h.id for h in hits] == ids[want].tolist(), (k, d)
            assert [h.score for h in hits] == exact[want].tolist()
    assert exact_top_hits(vecs[0], ids[:0], vecs[:0], 3) == []


@pytest.mark.parametrize("seed", range(4))
def test_grouped_exact_top_hits_equal_one_query_at_a_time(seed: int) -> None:
    """A batch of queries with candidate rows in any order (some shared, one query with none)
    gives each query what ``exact_top_hits`` gives it alone, scores to the bit."""
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((300, 48)).astype(np.float32)
    vecs[20:25] = vecs[10]  # ties: by smaller id
    queries = rng.standard_normal((5, 48)).astype(np.float32)
    queries[1] = vecs[10]
    rows = rng.integers(0, 300, 400)
    owners = rng.integers(0, 4, 400)  # query 4 gets no candidates
    rows[:10] = [10, 20, 21, 22, 23, 24, 10, 3, 3, 3]
    owners[:10] = 1
    for k in (0, 1, 3, 50, 1000):
        got = exact_top_hits_grouped(queries, rows, owners, vecs, k)
        for j, query in enumerate(queries):
            ids = np.unique(rows[owners == j])
            assert got[j] == exact_top_hits(query, ids, vecs[ids], k), (k, j)
    assert [h.id for h in exact_top_hits_grouped(queries, rows, owners, vecs, 3)[1]] == [10, 20, 21]


@pytest.mark.parametrize(("n", "k"), [(3001, 93), (3001, 94), (2048, 1), (2048, 64), (700, 21)])
def test_bf16_slab_bound_keeps_the_exact_top_k(n: int, k: int) -> None:
    """The slab maxima's bound at its edges: k equal to the slab positions, one more (the plain
    top-k path), a partial last slab (3001 = 93 x 32 + 25), many near-duplicates."""
    rng = np.random.default_rng(n + k)
    centres = rng.standard_normal((3, 32))
    vecs = centres[rng.integers(0, 3, n)] + rng.standard_normal((n, 32)) * 1e-4
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    queries = np.concatenate([centres + 1e-3, vecs[-1:]]).astype(np.float32)
    table = {f"q{i}": q for i, q in enumerate(queries)}
    screened = DenseRetriever(
        vecs, lambda t: np.stack([table[x] for x in t]), texts=[str(i) for i in range(n)], screen="bf16"
    )
    got = screened.search(list(table), k)
    for query, hits in zip(queries, got, strict=True):
        exact = (vecs.astype(np.float64) * query.astype(np.float64)).sum(axis=1)
        assert [h.id for h in hits] == np.lexsort((np.arange(n), -exact))[:k].tolist()


def test_rank_within_k_is_the_head_of_the_full_ranking(retrievers: dict[str, Retriever]) -> None:
    for kind, retriever in retrievers.items():
        for query in ["revenue growth quarter", "club team played", "unseen words only"]:
            ids = list(range(0, 300, 3))
            full = retriever.rank_within([query], ids)[0]
            for k in (1, 2, 7):
                assert retriever.rank_within([query], ids, k)[0] == full[:k], (kind, k)


def test_hnsw_top1_is_its_own_best_candidate(retrievers: dict[str, Retriever]) -> None:
    hnsw = retrievers["hnsw"]
    for query in ["revenue growth quarter", "club team played", "", "unseen words only"]:
        hits = hnsw.search([query], 20)[0]
        assert hnsw.rank_within([query], [h.id for h in hits])[0][0] == hits[0]


# The scheduler


def test_expected_steps_matches_enumeration() -> None:
    for s, gamma in product(range(1, 7), (0.0, 0.3, 0.8, 1.0)):
        total = 0.0
        for outcome in product((True, False), repeat=s):
            p = math.prod(gamma if ok else 1 - gamma for ok in outcome)
            first_wrong = outcome.index(False) if False in outcome else None
            total += p * (s if first_wrong is None else first_wrong + 1)
        assert expected_steps(s, gamma) == pytest.approx(total)
    assert sync_cost(3, 1.0, 2.0, 1.0) == 5.0 and async_cost(3, 1.0, 2.0, 1.0) == 3.0
    assert async_cost(2, 1.0, 5.0, 0.0) == sync_cost(2, 1.0, 5.0, 0.0)


def test_scheduler_grows_the_stride_when_speculation_is_right_and_shrinks_it_when_wrong() -> None:
    sched = OS3Scheduler(max_stride=8, window=4, initial_stride=2)
    assert sched.stride() == 2  # nothing measured yet
    for _ in range(4):
        sched.record_step(0.01, speculation=0.0)
        sched.record_verification(0.05)
        sched.record_outcome(6, 6)
    assert sched.stride() == 8  # sync: one verification for as many steps as allowed
    assert sched.stride(asynchronous=True) == 5  # async: just enough steps to hide b = 5a
    for _ in range(4):
        sched.record_outcome(0, 1)
    assert sched.estimates().acceptance == 0.0
    # Every guess wrong: a round costs a step, a verification and a redo, more than a plain step.
    assert sched.stride() == 0 and sched.stride(asynchronous=True) == 0
    for _ in range(4):
        sched.record_outcome(3, 4)
    assert 1 < sched.stride() < 8
    # A verification that costs only per query (no fixed part) is not worth batching.
    linear = OS3Scheduler(max_stride=8)
    for size in (1, 2, 4, 8):
        linear.record_verification(0.01 * size, size)
        linear.record_step(0.01, speculation=0.0)
        linear.record_outcome(9, 10)
    est = linear.estimates()
    assert [n for n, _ in est.verifications] == [1, 2, 4, 8]
    assert est.verify_cost(3) == pytest.approx(0.03) and est.verify_cost(16) == pytest.approx(0.08)
    assert linear.stride(asynchronous=True) == 1
    assert linear.stride() == 0  # synchronous, a verification per step is a real retrieval plus redos
    fixed = OS3Scheduler(max_stride=8)  # a large fixed cost per verification: batch
    for size in (1, 8):
        fixed.record_verification(0.5 + 0.01 * size, size)
        fixed.record_step(0.01, speculation=0.0)
        fixed.record_outcome(9, 10)
    assert fixed.estimates().verify_cost(4) == pytest.approx(0.54)
    assert fixed.stride() == 8
    cheap = OS3Scheduler(max_stride=8, min_gain=0.0)
    cheap.record_step(0.05, speculation=0.0)
    cheap.record_verification(0.001)
    cheap.record_outcome(5, 5)
    assert cheap.stride(asynchronous=True) == 1  # verification hides behind a single step
    assert cheap.stride() > 1


def test_scheduler_stops_speculating_when_a_real_retrieval_is_cheaper() -> None:
    sched = OS3Scheduler(max_stride=8)
    sched.record_step(0.010)  # a plain step: generation only
    sched.record_retrieval(0.002)  # the retrieval it made
    sched.record_verification(0.002, 2)
    assert sched.stride() == 2  # no speculative step measured yet: the initial stride
    # Guessing from the cache costs 3 ms, more than the 2 ms a real retrieval saves: never worth it.
    for _ in range(4):
        sched.record_step(0.010, speculation=0.003)
        sched.record_outcome(4, 4)
    assert sched.estimates().plain_step_seconds == pytest.approx(0.012)
    assert sched.stride() == 0 and sched.stride(asynchronous=True) == 0
    # The retriever turns slow (a bigger corpus, a loaded server): speculation is back.
    for _ in range(16):
        sched.record_retrieval(0.200)
        sched.record_verification(0.200, 2)
    assert sched.stride() >= 1 and sched.stride(asynchronous=True) >= 1
    # A gain smaller than min_gain is not taken: speculate only for a clear saving.
    near = OS3Scheduler(max_stride=1, min_gain=0.5)
    near.record_step(0.010, speculation=0.0)
    near.record_retrieval(0.012)
    near.record_verification(0.012)
    near.record_outcome(9, 10)
    est = near.estimates()
    assert est.plain_step_seconds == pytest.approx(0.022)
    assert near.stride(asynchronous=True) == 0  # async stride 1 would save 30%, less than 50%
    assert OS3Scheduler(min_gain=0.0).stride() == 2
    with pytest.raises(ValueError):
        OS3Scheduler(min_gain=1.0)


def test_finish_time_matches_a_recursive_enumeration() -> None:
    """``_finish`` (expected seconds to get through a request's last r steps, by the best first
    stride) against the recursion written out plainly."""
    rng = np.random.default_rng(3)
    rounds = rng.uniform(0.1, 1.0, 5)
    survival = np.concatenate([[1.0], np.cumprod(rng.uniform(0.5, 1.0, 5))])

    def finish(r: int) -> float:
        if r == 0:
            return 0.0
        options = []
        for s in range(1, min(5, r) + 1):
            rest = survival[s] * finish(r - s)
            rest += sum((survival[i] - survival[i + 1]) * finish(r - i - 1) for i in range(s))
            options.append(rounds[s - 1] + rest)
        return min(options)

    for horizon in range(1, 9):
        first, seconds = _finish(horizon, rounds, survival)
        assert seconds == pytest.approx(finish(horizon))
        assert 1 <= first <= min(5, horizon)


def test_run_lengths_see_misses_that_come_early_in_runs() -> None:
    """The same 10% of wrong guesses, all at the start of runs: long strides are safer than
    independent guesses would say, and with the request's end in view the scheduler speculates
    to it and verifies once."""
    runs = RunLengths()
    for _ in range(30):  # requests whose first guess misses, and whose next nine are right
        runs.run = 0
        runs.record(0, 1)
        runs.record(9, 9)
    gamma = 0.9
    runs.run = 3
    survival = runs.survival(8, gamma)
    assert survival[8] > 1.5 * gamma**8
    assert np.all(np.diff(survival) <= 0)
    runs.run = 0
    assert runs.survival(1, gamma)[1] < 0.6  # the first guess of a request is the risky one
    sched = OS3Scheduler(max_stride=8)
    for _ in range(30):
        sched.start_request()
        sched.record_outcome(0, 1)
        sched.record_outcome(9, 9)
    for n in (1, 2, 4, 8):
        sched.record_verification(0.100, n)
        sched.record_verification(0.100, n)
    sched.record_step(0.010, speculation=0.010)
    sched.record_retrieval(0.100)
    sched.start_request()
    sched.record_outcome(0, 1)
    sched.record_outcome(3, 3)  # now 3 guesses into a run of right ones
    assert sched.stride(remaining=5) == 5  # to the request's end, one verification
    assert sched.stride(remaining=1) == 0  # one step left: guessing and verifying cost more
    with pytest.raises(ValueError):
        RunLengths(decay=0.0)


def test_scheduler_probes_again_after_a_run_of_real_retrievals() -> None:
    """Slow first rounds (a cold cache) switch speculation off; after ``probe_every`` real
    retrievals the old timings are dropped and one round re-measures, which brings it back."""
    sched = OS3Scheduler(max_stride=8, probe_every=4, initial_stride=2)
    for _ in range(4):  # cold: guessing and verifying look dear next to a 50 ms retrieval
        sched.record_step(0.010, speculation=0.200)
        sched.record_verification(0.500, 2)
        sched.record_outcome(2, 2)
    sched.record_step(0.010)
    for i in range(3):
        sched.record_retrieval(0.050)
        assert sched.stride() == 0, i  # not before probe_every real retrievals in a row
    sched.record_retrieval(0.050)
    assert sched.stride() == 2  # the probe: timings forgotten, a round at the initial stride
    assert sched.estimates().speculation_seconds is None and not sched.estimates().verifications
    assert sched.stride() == 2  # still unmeasured: the round goes on
    sched.record_step(0.010, speculation=0.002)  # warm now
    sched.record_verification(0.040, 2)
    assert sched.stride() >= 1
    # Medians: one stall among the samples does not move the estimate.
    sched.record_step(0.010, speculation=5.0)
    sched.record_step(0.010, speculation=0.002)
    assert sched.estimates().speculation_seconds == pytest.approx(0.002)
    with pytest.raises(ValueError):
        OS3Scheduler(probe_every=0)


def test_scheduler_stops_when_whole_requests_do_not_beat_plain_steps() -> None:
    """The model says speculation pays (cheap guesses and verifications, a dear retrieval), but
    whole requests measure slower per step than plain steps do (something the model cannot
    see, like a verification thread slowing generation down): speculation goes off, and the
    probe, after ``probe_every`` real retrievals, forgets those requests and tries again."""
    sched = OS3Scheduler(max_stride=8, probe_every=4, initial_stride=2)
    for _ in range(4):
        sched.record_step(0.010, speculation=0.001)
        sched.record_verification(0.050, 4)
        sched.record_outcome(4, 4)
    sched.record_step(0.010)  # a step on a real retrieval: generation as plain steps see it
    sched.record_retrieval(0.050)
    assert sched.stride() >= 2 and not sched.realized_loses()
    sched.record_request(seconds=1.0, steps=16, speculated=4)  # mostly plain: not counted
    assert not sched.realized_loses()
    sched.record_request(seconds=1.0, steps=16, speculated=15)  # 62 ms a step against 60
    assert sched.realized_loses() and sched.stride() == 0
    sched.record_retrieval(0.050)
    sched.record_retrieval(0.050)
    assert sched.stride() == 0  # 3 real retrievals in a row so far
    sched.record_retrieval(0.050)
    assert sched.stride() == 2 and not sched.realized_loses()  # the probe
    sched.record_request(seconds=0.4, steps=16, speculated=15)  # 25 ms a step: it pays
    assert not sched.realized_loses() and sched.stride() >= 1
    with pytest.raises(ValueError):
        OS3Scheduler(request_window=0)


def test_scheduler_reads_verification_costs_per_batch_size() -> None:
    """Exact search over 1M passages on this machine: one query 111 ms (faiss), a batch of two
    214 ms (a matrix product), of eight 268 ms. A line through those would charge a batch of
    eight 420 ms and keep strides short; per-size costs let the overlap hide 8+ steps."""
    sched = OS3Scheduler(max_stride=16)
    for size, seconds in ((1, 0.111), (2, 0.214), (4, 0.245), (8, 0.268)):
        sched.record_verification(seconds, size)
    sched.record_retrieval(0.120)
    for _ in range(4):
        sched.record_step(0.005, speculation=0.010)
        sched.record_outcome(9, 10)
    est = sched.estimates()
    assert est.verify_cost(8) == pytest.approx(0.268) and est.verify_cost(6) == pytest.approx(0.2565)
    assert est.plain_step_seconds == pytest.approx(0.125)
    assert sched.stride(asynchronous=True) >= 8


# The guarantee: identical tokens and documents


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(KINDS),
    prompt=prompts,
    stride=st.integers(1, 4),
    query_tokens=st.integers(1, 24),
    max_new=st.integers(0, 20),
    prefetch=st.sampled_from([1, 2, 20]),
    asynchronous=st.booleans(),
    scheduler=schedulers,
)
def test_speculative_equals_baseline_with_tiny_llama(
    llama: HFGenerator,
    retrievers: dict[str, Retriever],
    kind: str,
    prompt: str,
    stride: int,
    query_tokens: int,
    max_new: int,
    prefetch: int,
    asynchronous: bool,
    scheduler: OS3Scheduler | FixedStride,
) -> None:
    config = RalmConfig(stride=stride, query_tokens=query_tokens, max_new_tokens=max_new)
    want = baseline(llama, retrievers[kind], prompt, config)
    spec = SpeculativeRetriever(retrievers[kind], prefetch=prefetch, scheduler=scheduler)
    got = speculative(llama, spec, prompt, config, asynchronous=asynchronous)
    assert got.tokens == want.tokens
    assert got.docs == want.docs
    event(f"asynchronous={asynchronous} rolled back={got.rollbacks > 0}")
    assert len(want.tokens) <= max_new and len(want.docs) == math.ceil(len(want.tokens) / stride)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(KINDS),
    prompt=prompts,
    stride=st.integers(1, 3),
    query_tokens=st.integers(1, 12),
    max_new=st.integers(1, 40),
    prefetch=st.sampled_from([1, 3, 20]),
    asynchronous=st.booleans(),
    lie=st.booleans(),
    eos_every=st.sampled_from([0, 0, 7]),
    window=st.sampled_from([0, 0, 2, 6]),
    scheduler=schedulers,
    seed=st.integers(0, 2**16),
)
def test_speculative_equals_baseline_under_jittered_verification(
    retrievers: dict[str, Retriever],
    kind: str,
    prompt: str,
    stride: int,
    query_tokens: int,
    max_new: int,
    prefetch: int,
    asynchronous: bool,
    lie: bool,
    eos_every: int,
    window: int,
    scheduler: OS3Scheduler | FixedStride,
    seed: int,
) -> None:
    """Many interleavings of generation and in-flight verification, with frequent rollbacks
    (and, with a short ``window``, wrong guesses whose later steps are salvaged)."""
    gen = WordGenerator(eos_every=eos_every, window=window)
    config = RalmConfig(stride=stride, query_tokens=query_tokens, max_new_tokens=max_new)
    want = baseline(gen, retrievers[kind], prompt, config)
    inner: Retriever = Liar(retrievers[kind]) if lie else retrievers[kind]
    spec = SpeculativeRetriever(Jittery(inner, seed), prefetch=prefetch, scheduler=scheduler)
    got = speculative(gen, spec, prompt, config, asynchronous=asynchronous)
    assert (got.tokens, got.docs) == (want.tokens, want.docs)
    event(f"asynchronous={asynchronous} rolled back={got.rollbacks > 0} salvaged={got.salvaged > 0}")


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_redo_that_writes_the_same_tokens_keeps_the_later_steps(
    retrievers: dict[str, Retriever], asynchronous: bool
) -> None:
    """Wrong guesses everywhere (``Liar``): with a generator that never sees the document the
    redo of each wrong step writes what the wrong document did, so nothing is rolled back and
    the later steps stand; with one that sees it, every wrong guess rolls back. Same output."""
    config = RalmConfig(stride=2, query_tokens=4, max_new_tokens=30)
    prompt = "Revenue growth in the quarter rose"
    outcomes = {}
    for window in (1, 0):  # 1: the last id alone (never the document); 0: every id
        gen = WordGenerator(window=window)
        want = baseline(gen, retrievers["flat"], prompt, config)
        spec = SpeculativeRetriever(Liar(retrievers["flat"]), prefetch=20, scheduler=FixedStride(4))
        got = speculative(gen, spec, prompt, config, asynchronous=asynchronous)
        assert (got.tokens, got.docs) == (want.tokens, want.docs)
        outcomes[window] = got
    blind, seeing = outcomes[1], outcomes[0]
    assert blind.salvaged > 0 and blind.rollbacks == 0
    assert seeing.rollbacks > 0 and seeing.salvaged == 0
    # Salvaged steps are not generated again: fewer speculative steps for the same output.
    assert blind.speculated < seeing.speculated


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("asynchronous", [False, True])
def test_bad_speculation_rolls_back_and_still_matches(
    llama: HFGenerator, retrievers: dict[str, Retriever], kind: str, asynchronous: bool
) -> None:
    config = RalmConfig(stride=2, query_tokens=6, max_new_tokens=24)
    rollbacks = 0
    for prompt in ["Revenue growth in the quarter", "The club launched a product", "Professor joined"]:
        want = baseline(llama, retrievers[kind], prompt, config)
        for retriever, prefetch in ((Liar(retrievers[kind]), 20), (retrievers[kind], 1)):
            spec = SpeculativeRetriever(retriever, prefetch=prefetch, scheduler=FixedStride(3))
            got = speculative(llama, spec, prompt, config, asynchronous=asynchronous)
            assert (got.tokens, got.docs) == (want.tokens, want.docs)
            rollbacks += got.rollbacks + got.salvaged  # the tiny model may ignore the document
    assert rollbacks > 0


def test_hf_generator_matches_transformers_generate(llama: HFGenerator) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    ids = llama.encode("Revenue growth in the quarter was")
    model = AutoModelForCausalLM.from_pretrained(llama.model_dir, local_files_only=True, dtype=torch.float32)
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([ids]), max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=None
        )
    want = out[0, len(ids) :].tolist()
    got = llama.greedy(ids, 12)
    assert got == want[: len(got)]
    assert len(got) == 12 or len(want) == len(got) or want[len(got)] in llama.eos_ids
    assert llama.greedy(ids, 5) == got[:5]


# Asynchronous verification overlaps for real


def test_async_verification_overlaps_generation() -> None:
    gen = WordGenerator(sleep=0.05)
    config = RalmConfig(stride=2, query_tokens=4, max_new_tokens=48)  # 24 steps
    results = {}
    for asynchronous in (False, True):
        slow = Slow(pause=0.2)
        spec = SpeculativeRetriever(slow, prefetch=5, scheduler=FixedStride(4))
        results[asynchronous] = speculative(gen, spec, "Quarter revenue", config, asynchronous=asynchronous)
    sync, overlapped = results[False], results[True]
    assert (overlapped.tokens, overlapped.docs) == (sync.tokens, sync.docs)
    assert sync.rollbacks == overlapped.rollbacks == 0
    # sync: 24 steps * 0.05 + 7 searches * 0.2 = 2.6 s; async: the verifications hide behind the
    # next steps, about 1.6 s. A generous margin for a busy machine:
    assert overlapped.seconds < 0.85 * sync.seconds, (overlapped.seconds, sync.seconds)


# Agent-style use: whole queries


def test_agent_loop_with_retrieve_top1_and_verify_pending(retrievers: dict[str, Retriever]) -> None:
    """A loop whose next query depends on the last document reaches the same documents."""

    def next_query(doc_text: str, step: int) -> str:
        words = tokenize(doc_text)
        return " ".join(words[step % 3 :: 2][:4])

    for kind, lie in product(KINDS, (False, True)):
        retriever = retrievers[kind]
        truth = []
        query = "revenue growth quarter"
        for step in range(12):
            hit = retriever.search([query], 1)[0][0]
            truth.append(hit.id)
            query = next_query(retriever.text(hit.id), step)

        spec = SpeculativeRetriever(Liar(retriever) if lie else retriever, scheduler=FixedStride(3))
        spec.reset()
        docs: list[int] = []
        queries: list[str] = []
        query = "revenue growth quarter"
        while len(docs) < 12 or spec.pending:
            if len(docs) < 12:
                hit = spec.retrieve_top1(query)
                docs.append(hit.id)
                queries.append(query)
                query = next_query(retriever.text(hit.id), len(docs) - 1)
            if spec.should_verify() or (len(docs) == 12 and spec.pending):
                first = len(docs) - len(spec.pending)
                verdict = spec.verify_pending()
                assert verdict.queries == tuple(queries[first:])
                if verdict.first_mismatch is not None:
                    i = first + verdict.first_mismatch
                    del docs[i:], queries[i:]
                    hit = verdict.truths[verdict.first_mismatch]
                    docs.append(hit.id)  # the redone step: its document is known to be right
                    queries.append(verdict.queries[verdict.first_mismatch])
                    query = next_query(retriever.text(hit.id), len(docs) - 1)
        assert docs == truth, (kind, lie)


def test_verdict_reports_the_first_mismatch(retrievers: dict[str, Retriever]) -> None:
    retriever = retrievers["bm25"]
    spec = SpeculativeRetriever(Liar(retriever), prefetch=20, scheduler=FixedStride(4))
    first = spec.retrieve_top1("club team played")  # nothing cached: a real retrieval
    assert first == retriever.search(["club team played"], 1)[0][0]
    assert len(spec.cache_ids) == 20
    guesses = [spec.retrieve_top1(q) for q in ["club team", "revenue margin", "merger acquired"]]
    verdict = spec.verify_pending()
    truths = [retriever.search([q], 1)[0][0] for q in verdict.queries]
    assert list(verdict.truths) == truths
    assert list(verdict.guesses) == [first, *guesses]
    wrong = [i for i, (g, t) in enumerate(zip(verdict.guesses, truths, strict=True)) if g.id != t.id]
    assert verdict.first_mismatch == (wrong[0] if wrong else None)
    assert verdict.first_mismatch != 0 and spec.pending == ()


# House rules


def test_speculation_never_imports_tgrag_nor_torch_at_import() -> None:
    for path in (REPO / "speculation").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n.split(".")[0] == "tgrag" for n in names), path
    code = "import sys, speculation; bad = {'tgrag', 'torch', 'transformers', 'faiss'} & set(sys.modules); print(bad); assert not bad"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)
