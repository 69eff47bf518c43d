"""Tests for tgrag.graph: personalised PageRank on the fact-entity graph, against a dense reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from tgrag.graph import personalized_pagerank, subgraph

FAST = settings(max_examples=100, deadline=None)


def random_incidence(rng: np.random.Generator, n_f: int, n_e: int, weighted: bool = False) -> np.ndarray:
    """A facts x entities matrix where every fact has an entity and every entity a fact (no dangling nodes)."""
    a = (rng.random((n_f, n_e)) < 0.3).astype(np.float64)
    a[np.arange(n_f), rng.integers(0, n_e, n_f)] = 1.0
    a[rng.integers(0, n_f, n_e), np.arange(n_e)] = 1.0
    if weighted:
        a *= rng.uniform(0.5, 2.0, a.shape)
    return a


def dense_reference(
    a: np.ndarray, fact_seed: np.ndarray, entity_seed: np.ndarray, damping: float
) -> np.ndarray:
    """Stationary distribution of the walk on the whole (facts + entities) graph, solved exactly:
    p = (1 - d) s + d T p, with T column-stochastic, so p = (1 - d) (I - d T)^-1 s."""
    n_f, n_e = a.shape
    n = n_f + n_e
    t = np.zeros((n, n))
    for f in range(n_f):
        for e in range(n_e):
            if a[f, e]:
                t[n_f + e, f] = a[f, e] / a[f].sum()  # fact -> entity, by the fact's edge weights
                t[f, n_f + e] = a[f, e] / a[:, e].sum()  # entity -> fact, by the entity's edge weights
    s = np.concatenate([fact_seed, entity_seed]).astype(np.float64)
    s = s / s.sum()
    return (1 - damping) * np.linalg.solve(np.eye(n) - damping * t, s)


@st.composite
def graphs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_f, n_e = draw(st.integers(1, 14)), draw(st.integers(1, 9))
    a = random_incidence(rng, n_f, n_e, weighted=draw(st.booleans()))
    fact_seed = rng.random(n_f) * (rng.random(n_f) < 0.5)
    entity_seed = rng.random(n_e) * (rng.random(n_e) < 0.5)
    if fact_seed.sum() + entity_seed.sum() == 0:
        fact_seed[0] = 1.0
    return a, fact_seed, entity_seed, draw(st.sampled_from([0.15, 0.5, 0.85]))


@FAST
@given(graphs())
def test_ppr_matches_dense_reference(graph: tuple[np.ndarray, np.ndarray, np.ndarray, float]) -> None:
    a, fact_seed, entity_seed, damping = graph
    p_f, p_e = personalized_pagerank(
        sp.csr_matrix(a), fact_seed, entity_seed, damping, iterations=1000, tol=1e-13
    )
    ref = dense_reference(a, fact_seed, entity_seed, damping)
    np.testing.assert_allclose(np.concatenate([p_f, p_e]), ref, atol=1e-9)
    # with no dangling node, no mass is lost
    assert p_f.sum() + p_e.sum() == pytest.approx(1.0, abs=1e-9)
    assert (p_f >= 0).all() and (p_e >= 0).all()
    # every seed keeps at least its restart share
    total = fact_seed.sum() + entity_seed.sum()
    assert (p_f >= (1 - damping) * fact_seed / total - 1e-12).all()
    assert (p_e >= (1 - damping) * entity_seed / total - 1e-12).all()


def test_ppr_default_iterations_are_close_to_the_fixed_point() -> None:
    rng = np.random.default_rng(11)
    for _ in range(20):
        a = random_incidence(rng, 30, 12)
        fact_seed, entity_seed = rng.random(30), np.zeros(12)
        entity_seed[rng.integers(0, 12)] = 3.0
        p_f, p_e = personalized_pagerank(sp.csr_matrix(a.astype(np.float32)), fact_seed, entity_seed)
        ref = dense_reference(a, fact_seed, entity_seed, 0.5)
        np.testing.assert_allclose(np.concatenate([p_f, p_e]), ref, atol=1e-6)


def test_ppr_ranks_facts_near_the_seed_entity_higher() -> None:
    # facts 0, 1 mention entity 0; facts 2, 3 mention entity 1; fact 4 mentions both
    a = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1]], dtype=np.float32)
    p_f, p_e = personalized_pagerank(sp.csr_matrix(a), np.zeros(5), np.array([1.0, 0.0]))
    assert p_e[0] > p_e[1]
    assert p_f[0] == pytest.approx(p_f[1]) and p_f[2] == pytest.approx(p_f[3])
    # fact 4 collects from both entities; of the others, those of the seed entity come first
    assert p_f[4] > p_f[0] > p_f[2] > 0


def test_ppr_without_seeds_or_facts_is_zero() -> None:
    a = sp.csr_matrix(np.ones((3, 2), np.float32))
    p_f, p_e = personalized_pagerank(a, np.zeros(3), np.zeros(2))
    assert not p_f.any() and not p_e.any() and p_f.shape == (3,) and p_e.shape == (2,)
    p_f, p_e = personalized_pagerank(sp.csr_matrix((0, 2), dtype=np.float32), np.zeros(0), np.ones(2))
    assert p_f.shape == (0,) and not p_e.any()


@FAST
@given(st.integers(0, 2**32 - 1), st.integers(1, 20), st.integers(1, 15))
def test_subgraph_remaps_columns(seed: int, n_f: int, n_e: int) -> None:
    rng = np.random.default_rng(seed)
    a = (rng.random((n_f, n_e)) < 0.25).astype(np.float32)
    rows = np.sort(rng.choice(n_f, size=int(rng.integers(0, n_f + 1)), replace=False))
    sub, cols = subgraph(sp.csr_matrix(a), rows)
    expected_cols = np.flatnonzero(a[rows].any(axis=0)) if len(rows) else np.zeros(0, np.int64)
    assert cols.tolist() == expected_cols.tolist()
    assert sub.shape == (len(rows), len(cols))
    np.testing.assert_array_equal(sub.toarray(), a[rows][:, cols])


def test_subgraph_ppr_equals_ppr_on_the_restricted_dense_graph() -> None:
    rng = np.random.default_rng(4)
    a = random_incidence(rng, 25, 10)
    rows = np.flatnonzero(rng.random(25) < 0.5)
    sub, cols = subgraph(sp.csr_matrix(a), rows)
    fact_seed = rng.random(len(rows))
    entity_seed = np.zeros(len(cols))
    entity_seed[0] = 1.0
    p_f, p_e = personalized_pagerank(sub, fact_seed, entity_seed, 0.5, iterations=1000, tol=1e-13)
    ref = dense_reference(a[rows][:, cols], fact_seed, entity_seed, 0.5)
    np.testing.assert_allclose(np.concatenate([p_f, p_e]), ref, atol=1e-9)
