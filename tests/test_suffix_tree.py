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
    best_draft,
    draft,
)

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seqs = st.lists(st.lists(st.integers(0, 4), max_size=30), min_size=1, max_size=6)


def substring_counts(sequences: list[list[int]], depth: int) -> Counter[tuple[int, ...]]:
    out: Counter[tuple[int, ...]] = Counter()
    for seq in sequences:
        for i in range(len(seq)):
            for j in range(i + 1, min(len(seq), i + depth) + 1):
                out[tuple(seq[i:j])] += 1
    return out


def next_counts(counts: Counter[tuple[int, ...]], prefix: tuple[int, ...]) -> dict[int, int]:
    return {s[-1]: c for s, c in counts.items() if len(s) == len(prefix) + 1 and s[:-1] == prefix}


def assert_kept_totals(tree: SuffixTree) -> None:
    """Every node's kept total and most frequent child agree with its children."""
    stack = [tree.root]
    while stack:
        node = stack.pop()
        kids = {t: (c.count if isinstance(c, Node) else 1) for t, c in node.children.items()}
        assert node.out == sum(kids.values())
        assert node.best() == min(
            ((c, t) for t, c in kids.items()), key=lambda ct: (-ct[0], ct[1]), default=(0, -1)
        )
        stack.extend(c for c in node.children.values() if isinstance(c, Node))


def assert_tree_matches(tree: SuffixTree, sequences: list[list[int]], depth: int) -> None:
    assert_kept_totals(tree)
    counts = substring_counts(sequences, depth)
    for s, c in counts.items():
        assert tree.count(s) == c, s
        assert tree.continuations(s) == next_counts(counts, s), s
    assert tree.continuations(()) == next_counts(counts, ())
    for s in [(5,), (0, 5), (4, 4, 4, 4, 4, 4, 4)]:  # strings never added (5 is not in the alphabet)
        assert tree.count(s) == counts.get(s, 0)


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
    assert_tree_matches(tree, sequences, depth)
    # Only substrings that occurred twice get a node of their own (plus the root).
    assert tree.nodes == 1 + sum(1 for c in substring_counts(sequences, depth).values() if c >= 2)
    gone = drop.draw(st.sets(st.integers(0, len(sequences) - 1)), label="removed")
    for i in gone:
        tree.remove(i)
    kept = [s for i, s in enumerate(sequences) if i not in gone]
    assert_tree_matches(tree, kept, depth)
    assert len(tree) == len(kept)
    if not kept:
        assert tree.nodes == 1 and not tree.root.children


@FAST
@given(sequences=seqs, depth=st.integers(1, 6))
def test_interleaved_appends_to_open_sequences(sequences: list[list[int]], depth: int) -> None:
    """Sequences growing token by token in turns: tails of open sequences grow and split."""
    tree = SuffixTree(depth)
    for i in range(len(sequences)):
        tree.add(i)
    for step in range(max(len(s) for s in sequences)):
        for i, seq in enumerate(sequences):
            if step < len(seq):
                tree.extend(i, [seq[step]])
    assert_tree_matches(tree, sequences, depth)
    for i, seq in enumerate(sequences):  # the active nodes are the repeated suffixes at the end
        counts = substring_counts(sequences, depth)
        want = [n for n in range(1, min(depth, len(seq)) + 1) if counts[tuple(seq[len(seq) - n :])] >= 2]
        assert [node.depth for node in tree.active_nodes(i)] == want


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
        p = longest_match(sequences, context[: n + 1], depth)
        assert matcher.depth == p
        if p:
            assert matcher.position == tree.find(context[: n + 1][-p:])
        # The candidates are every shorter match that something followed, longest first.
        got = [pos.depth for pos in matcher.candidates()]
        counts = substring_counts(sequences, depth)
        want = [q for q in range(p, 0, -1) if q < depth and next_counts(counts, tuple(context[: n + 1][-q:]))]
        assert got == want


def test_a_live_matcher_survives_removals_and_splits() -> None:
    tree = SuffixTree(8)
    tree.add("a", [1, 2, 3, 4, 5])
    matcher = Matcher(tree, [1, 2, 3])
    assert matcher.depth == 3 and matcher.position.tail is not None  # inside the unique occurrence
    tree.add("b", [9, 1, 2, 3, 4, 6])  # splits that occurrence: the matcher finds its place again
    assert matcher.depth == 3 and matcher.position.tail is None and matcher.position.node.count == 2
    tree.remove("a")
    tree.remove("b")
    assert matcher.depth == 0
    matcher.extend([4])
    assert matcher.depth == 0
    tree.add("c", [3, 4, 7])
    matcher.extend([3, 4])
    assert matcher.depth == 2 and [p.depth for p in matcher.candidates()] == [2, 1]


def brute_children(counts: Counter[tuple[int, ...]], prefix: tuple[int, ...]) -> list[tuple[int, int]]:
    return sorted(next_counts(counts, prefix).items(), key=lambda tc: (-tc[1], tc[0]))


def brute_path(
    counts: Counter[tuple[int, ...]], prefix: tuple[int, ...], budget: int, min_prob: float
) -> list[int]:
    out: list[int] = []
    prob = 1.0
    while len(out) < budget:
        kids = brute_children(counts, (*prefix, *out))
        if not kids:
            break
        prob *= kids[0][1] / sum(c for _, c in kids)
        if prob < min_prob:
            break
        out.append(kids[0][0])
    return out


def brute_probs(counts: Counter[tuple[int, ...]], prefix: tuple[int, ...]) -> dict[tuple[int, ...], float]:
    """Every continuation of ``prefix`` in the tree -> its estimated probability."""
    out: dict[tuple[int, ...], float] = {}
    stack = [((), 1.0)]
    while stack:
        path, prob = stack.pop()
        kids = brute_children(counts, (*prefix, *path))
        total = sum(c for _, c in kids)
        for token, count in kids:
            p = prob * count / total
            out[(*path, token)] = p
            stack.append(((*path, token), p))
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
    depth = 8
    tree = SuffixTree(depth)
    for i, seq in enumerate(sequences):
        tree.add(i, seq)
    pos = tree.find(prefix)
    if pos is None:
        return
    counts = substring_counts(sequences, depth)
    key = tuple(prefix)
    config = SpeculationConfig(
        max_spec=budget, alpha=0.0, offset=budget, min_token_prob=min_prob, mode="path"
    )
    path = draft(pos, config, depth)
    assert list(path.tokens) == brute_path(counts, key, budget, min_prob) and path.is_path()
    assert path.match_length == len(prefix)
    tree_draft = draft(pos, SpeculationConfig(budget, 0.0, budget, min_prob, "tree"), depth)
    # Best-first takes the most probable nodes: its k-th probability is the k-th largest overall.
    probs = brute_probs(counts, key)
    ranked = sorted((p for p in probs.values() if p >= min_prob), reverse=True)[:budget]
    assert sorted(tree_draft.probs, reverse=True) == pytest.approx(ranked)
    assert tree_draft.score == pytest.approx(sum(ranked)) and tree_draft.score >= path.score - 1e-12
    # Each node's parent comes before it, and its chain of tokens is a continuation with that probability.
    for i, parent in enumerate(tree_draft.parents):
        assert parent < i
        chain, j = [], i
        while j != -1:
            chain.append(tree_draft.tokens[j])
            j = tree_draft.parents[j]
        assert probs[tuple(reversed(chain))] == pytest.approx(tree_draft.probs[i])


def test_budget_grows_with_the_match_and_is_capped() -> None:
    config = SpeculationConfig(max_spec=10, alpha=2.0, offset=1.0)
    assert [config.budget(p) for p in (0, 1, 3, 10)] == [1, 3, 7, 10]
    tree = SuffixTree(16)
    tree.add(0, list(range(20)))
    pos = tree.find([3, 4])
    assert len(draft(pos, config, 16)) == 5  # 2 * 2 + 1
    assert len(draft(pos, SpeculationConfig(max_spec=10, alpha=2.0, offset=0.0), 16)) == 4
    assert len(draft(tree.find([]), SpeculationConfig(max_spec=10, alpha=2.0, offset=0.0), 16)) == 0
    with pytest.raises(ValueError):
        SpeculationConfig(mode="beam")  # type: ignore[arg-type]


def test_a_shorter_match_is_tried_when_the_longest_has_no_room() -> None:
    depth = 8
    tree = SuffixTree(depth)
    seq = list(range(12))
    tree.add(0, seq)
    matcher = Matcher(tree, seq[:7])  # a match of 7: one token of room below it
    config = SpeculationConfig(max_spec=4, alpha=1.0, mode="path")
    assert len(draft(matcher.position, config, depth)) == 1
    got = best_draft(matcher.candidates(), config, depth, "global")
    assert list(got.tokens) == [7, 8, 9, 10] and got.match_length == 4


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
    for r in range(40):
        out = [rng.randrange(6) for _ in range(rng.randrange(1, 15))]
        cache.start(r, [rng.randrange(6) for _ in range(4)])
        for token in out:
            got = cache.speculate(r)
            for i, parent in enumerate(got.parents):
                assert -1 <= parent < i
            cache.append(r, [token])
        cache.finish(r)
        filed.append(out)
    assert_tree_matches(cache.global_tree, filed[-5:], 6)
