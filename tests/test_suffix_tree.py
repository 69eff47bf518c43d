"""Suffix trees and drafts (speculation.suffix_tree), checked against brute force."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speculation.suffix_tree import (
    Matcher,
    Node,
    SpeculationConfig,
    SuffixCache,
    SuffixTree,
    draft,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seqs = st.lists(st.lists(st.integers(0, 4), max_size=30), min_size=1, max_size=6)


def substring_counts(sequences: list[list[int]], depth: int) -> Counter[tuple[int, ...]]:
    out: Counter[tuple[int, ...]] = Counter()
    for seq in sequences:
        for i in range(len(seq)):
            for j in range(i + 1, min(len(seq), i + depth) + 1):
                out[tuple(seq[i:j])] += 1
    return out


def tree_counts(tree: SuffixTree) -> Counter[tuple[int, ...]]:
    out: Counter[tuple[int, ...]] = Counter()
    stack: list[tuple[Node, tuple[int, ...]]] = [(tree.root, ())]
    while stack:
        node, path = stack.pop()
        # The kept totals and best child agree with the children themselves.
        assert node.out == sum(c.count for c in node.children.values())
        assert node.best is min(node.children.values(), key=lambda c: (-c.count, c.token), default=None)
        for token, child in node.children.items():
            assert child.count > 0 and child.depth == len(path) + 1 and child.token == token
            out[(*path, token)] = child.count
            stack.append((child, (*path, token)))
    return out


@FAST
@given(sequences=seqs, depth=st.integers(1, 6), drop=st.data())
def test_counts_equal_brute_force_after_adds_extends_and_removes(
    sequences: list[list[int]], depth: int, drop: st.DataObject
) -> None:
    tree = SuffixTree(depth)
    for i, seq in enumerate(sequences):
        cut = len(seq) // 2
        tree.add(i, seq[:cut])
        tree.extend(i, seq[cut:])  # appending in pieces counts as adding at once
    assert tree_counts(tree) == substring_counts(sequences, depth)
    gone = drop.draw(st.sets(st.integers(0, len(sequences) - 1)), label="removed")
    for i in gone:
        tree.remove(i)
    kept = [s for i, s in enumerate(sequences) if i not in gone]
    assert tree_counts(tree) == substring_counts(kept, depth)
    assert len(tree) == len(kept)


def longest_match(sequences: list[list[int]], context: list[int], depth: int) -> int:
    """Length of the longest suffix of ``context`` (at most ``depth``) occurring in a sequence."""
    counts = substring_counts(sequences, depth)
    for p in range(min(depth, len(context)), 0, -1):
        if counts[tuple(context[-p:])] > 0:
            return p
    return 0


@FAST
@given(sequences=seqs, context=st.lists(st.integers(0, 4), max_size=20), depth=st.integers(1, 6))
def test_matcher_tracks_the_longest_occurring_suffix(
    sequences: list[list[int]], context: list[int], depth: int
) -> None:
    tree = SuffixTree(depth)
    for i, seq in enumerate(sequences):
        tree.add(i, seq)
    matcher = Matcher(tree)
    for n in range(len(context)):
        matcher.extend(context[n : n + 1])
        deepest = matcher.nodes[0].depth if matcher.nodes else 0
        assert deepest == longest_match(sequences, context[: n + 1], depth)
        for node in matcher.nodes:  # every kept node is the node of a suffix of the context
            assert tree.find(context[: n + 1][-node.depth :]) is node


def test_removed_sequences_vanish_from_a_live_matcher() -> None:
    tree = SuffixTree(8)
    tree.add("a", [1, 2, 3, 4, 5])
    matcher = Matcher(tree, [1, 2, 3])
    assert matcher.longest() is not None and matcher.longest().depth == 3  # type: ignore[union-attr]
    tree.remove("a")
    assert matcher.longest() is None  # the held nodes were zeroed
    matcher.extend([4])
    assert matcher.nodes == []


def brute_path(node: Node, budget: int, min_prob: float) -> list[int]:
    out, prob = [], 1.0
    while len(out) < budget and node.children:
        total = sum(c.count for c in node.children.values())
        child = min(node.children.values(), key=lambda c: (-c.count, c.token))
        prob *= child.count / total
        if prob < min_prob:
            break
        out.append(child.token)
        node = child
    return out


def all_paths(node: Node) -> list[tuple[tuple[int, ...], float]]:
    """Every node below ``node`` as (tokens from node, estimated probability)."""
    out = []
    stack = [(node, (), 1.0)]
    while stack:
        cur, path, prob = stack.pop()
        total = sum(c.count for c in cur.children.values())
        for child in cur.children.values():
            p = prob * child.count / total
            out.append(((*path, child.token), p))
            stack.append((child, (*path, child.token), p))
    return out


@FAST
@given(
    sequences=seqs,
    prefix=st.lists(st.integers(0, 4), max_size=3),
    budget=st.integers(1, 12),
    min_prob=st.sampled_from([0.0, 0.05, 0.3]),
)
def test_path_and_tree_drafts_equal_brute_force(
    sequences: list[list[int]], prefix: list[int], budget: int, min_prob: float
) -> None:
    tree = SuffixTree(8)
    for i, seq in enumerate(sequences):
        tree.add(i, seq)
    node = tree.find(prefix)
    if node is None:
        return
    config = SpeculationConfig(
        max_spec=budget, alpha=0.0, offset=budget, min_token_prob=min_prob, mode="path"
    )
    path = draft(node, len(prefix), config)
    assert list(path.tokens) == brute_path(node, budget, min_prob) and path.is_path()
    tree_draft = draft(node, len(prefix), SpeculationConfig(budget, 0.0, budget, min_prob, "tree"))
    # Best-first takes the most probable nodes: its k-th probability is the k-th largest overall.
    ranked = sorted((p for _, p in all_paths(node) if p >= min_prob), reverse=True)[:budget]
    assert sorted(tree_draft.probs, reverse=True) == pytest.approx(ranked)
    assert tree_draft.score == pytest.approx(sum(ranked)) and tree_draft.score >= path.score - 1e-12
    # Each node's parent comes before it, and its path of tokens really is in the tree.
    for i, parent in enumerate(tree_draft.parents):
        assert parent < i
        chain, j = [], i
        while j != -1:
            chain.append(tree_draft.tokens[j])
            j = tree_draft.parents[j]
        assert tree.find([*prefix, *reversed(chain)]) is not None


def test_budget_grows_with_the_match_and_is_capped() -> None:
    config = SpeculationConfig(max_spec=10, alpha=2.0, offset=1.0)
    assert [config.budget(p) for p in (0, 1, 3, 10)] == [1, 3, 7, 10]
    tree = SuffixTree(16)
    tree.add(0, list(range(20)))
    node = tree.find([3, 4])
    assert len(draft(node, 2, config)) == 5  # 2 * 2 + 1
    assert len(draft(node, 0, SpeculationConfig(max_spec=10, alpha=2.0, offset=0.0))) == 0
    with pytest.raises(ValueError):
        SpeculationConfig(mode="beam")  # type: ignore[arg-type]


def test_cache_prefers_the_better_draft_and_evicts_fifo() -> None:
    cache = SuffixCache(max_depth=16, max_cached=2, config=SpeculationConfig(max_spec=8, mode="path"))
    answer = [7, 8, 9, 10, 11, 12]
    for _ in range(2):
        cache.add_output([1, 2, 3, *answer])
    cache.start("r", [5, 1, 2, 3])  # the global tree has seen 1 2 3 -> the answer
    got = cache.speculate("r")
    assert got.source == "global" and list(got.tokens) == answer[: len(got.tokens)] and len(got.tokens) >= 3
    cache.append("r", [7, 8])
    assert list(cache.speculate("r").tokens[:2]) == [9, 10]
    cache.finish("r")
    assert len(cache.global_tree) == 2  # three outputs filed, the first evicted
    # The request's own prompt: a repeated span is guessed from the request tree.
    cache.start("s", [40, 41, 42, 43, 44, 40, 41])
    assert list(cache.speculate("s").tokens) == [42, 43]  # a match of 2: a budget of 2
    own = cache.speculate("s", SpeculationConfig(max_spec=8, offset=2.0, mode="path"))
    assert own.source == "request" and list(own.tokens) == [42, 43, 44, 40]
    cache.cancel("s")
    with pytest.raises(KeyError, match="no open request 's'"):
        cache.speculate("s")
    with pytest.raises(KeyError, match="no open request"):
        cache.append("never", [1])


def test_random_workload_keeps_the_global_tree_consistent() -> None:
    rng = random.Random(3)
    cache = SuffixCache(max_depth=6, max_cached=5)
    filed: list[list[int]] = []
    for r in range(20):
        out = [rng.randrange(6) for _ in range(rng.randrange(1, 15))]
        cache.start(r, [rng.randrange(6) for _ in range(4)])
        for token in out:
            cache.speculate(r)
            cache.append(r, [token])
        cache.finish(r)
        filed.append(out)
    assert tree_counts(cache.global_tree) == substring_counts(filed[-5:], 6)
