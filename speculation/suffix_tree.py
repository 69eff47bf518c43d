"""Suffix trees over token sequences, and the drafts SuffixDecoding reads off them.

SuffixDecoding (Oliaro et al., "SuffixDecoding: Extreme Speculative Decoding for Emerging AI
Applications") speculates without a draft model: the continuation of the current text is guessed
from what followed the same text before, in this request's prompt and output (a per-request
tree) or in earlier outputs (a global tree), and the longer the match the more tokens are worth
guessing.

``SuffixTree`` is a depth-limited suffix trie: every substring of length at most ``max_depth`` of
every sequence added is a path from the root, and each node counts the occurrences of its
substring. Appending a token to a sequence extends the (at most ``max_depth``) suffixes that end
at its last token, O(depth). Removing a sequence walks the same paths down, decrementing, and
drops nodes whose count reaches 0. A node's children are kept in a dict; ``best_child`` is read
off the counts when asked (nodes have few children).

``Matcher`` follows a growing context against a tree: it keeps the node of every suffix of the
context that occurs in the tree (at most ``max_depth`` of them) and updates them per token, so the
longest match is known without re-walking from the root.

``draft(node, match_length, ...)`` turns a match into a ``Draft``: a budget of
``min(max_spec, alpha * match_length + offset)`` tokens, then either a path (the most frequent
child at each step while the estimated probability, the product of ``child.count / node.count``
along the way, stays at least ``min_token_prob``) or a tree (best-first by that probability).
Its score, the sum of the nodes' probabilities, is the expected number of accepted tokens, which
is how ``SuffixCache`` picks between the per-request and the global draft.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Mode = Literal["path", "tree"]


class Node:
    """A substring of some sequences: ``count`` occurrences, children by next token.

    ``out`` is the children's total count (the occurrences something followed), kept as counts
    change, and ``best`` the most frequent child (ties: the smaller token), kept on increments
    and recomputed when a decrement may have dethroned it.
    """

    __slots__ = ("best", "children", "count", "depth", "out", "token")

    def __init__(self, token: int, depth: int) -> None:
        self.token = token
        self.depth = depth
        self.count = 0
        self.out = 0
        self.best: Node | None = None
        self.children: dict[int, Node] = {}

    def best_child(self) -> Node | None:
        """The most frequent child; ties go to the smaller token, so drafts are deterministic."""
        return self.best

    def _bumped(self, child: Node) -> None:
        """``child``'s count went up by one."""
        self.out += 1
        best = self.best
        if (
            best is None
            or child.count > best.count
            or (child.count == best.count and child.token < best.token)
        ):
            self.best = child

    def _dropped(self, child: Node) -> None:
        """``child``'s count went down by one (and it may be gone)."""
        self.out -= 1
        if child is self.best:
            self.best = min(self.children.values(), key=lambda c: (-c.count, c.token), default=None)

    def ranked_children(self) -> list[Node]:
        """Children by count, most frequent first (ties by the smaller token)."""
        return sorted(self.children.values(), key=lambda c: (-c.count, c.token))


class SuffixTree:
    """A suffix trie of depth at most ``max_depth`` over sequences added by id."""

    def __init__(self, max_depth: int = 64) -> None:
        if max_depth < 1:
            raise ValueError("max_depth must be at least 1")
        self.max_depth = max_depth
        self.root = Node(-1, 0)
        self._seqs: dict[object, list[int]] = {}
        self._open: dict[object, list[Node]] = {}  # per sequence: nodes of the suffixes ending at its end

    def __len__(self) -> int:
        return len(self._seqs)

    def __contains__(self, seq_id: object) -> bool:
        return seq_id in self._seqs

    def tokens(self, seq_id: object) -> list[int]:
        return list(self._seqs[seq_id])

    def add(self, seq_id: object, tokens: Iterable[int] = ()) -> None:
        """Start a sequence (it must be new) and append ``tokens`` to it."""
        if seq_id in self._seqs:
            raise KeyError(f"sequence {seq_id!r} is already in the tree")
        self._seqs[seq_id] = []
        self._open[seq_id] = []
        self.extend(seq_id, tokens)

    def extend(self, seq_id: object, tokens: Iterable[int]) -> None:
        """Append ``tokens`` to a sequence: each one adds an occurrence to the suffixes ending at it."""
        seq = self._seqs[seq_id]
        active = self._open[seq_id]
        limit = self.max_depth
        root = self.root
        for token in tokens:
            token = int(token)
            seq.append(token)
            grown = []
            for node in [root, *active]:
                if node.depth >= limit:
                    continue  # this suffix has reached the depth limit: it stops growing
                child = node.children.get(token)
                if child is None:
                    child = node.children[token] = Node(token, node.depth + 1)
                child.count += 1
                node._bumped(child)
                grown.append(child)
            active = grown
        self._open[seq_id] = active

    def remove(self, seq_id: object) -> None:
        """Take a sequence's occurrences out; nodes no longer in any sequence are dropped."""
        seq = self._seqs.pop(seq_id)
        del self._open[seq_id]
        for start in range(len(seq)):
            node = self.root
            for token in seq[start : start + self.max_depth]:
                child = node.children[token]
                child.count -= 1
                if child.count == 0:
                    del node.children[token]
                    node._dropped(child)
                    _kill(child)  # its whole subtree is gone too: a matcher holding one sees it
                    break
                node._dropped(child)
                node = child

    def open_nodes(self, seq_id: object) -> list[Node]:
        """Nodes of the suffixes ending at the sequence's last token, shortest first."""
        return list(self._open[seq_id])

    def find(self, tokens: Sequence[int]) -> Node | None:
        """The node of ``tokens`` (at most ``max_depth`` of them), or None if it never occurs."""
        node = self.root
        for token in tokens:
            nxt = node.children.get(int(token))
            if nxt is None:
                return None
            node = nxt
        return node


def _kill(node: Node) -> None:
    """Zero a detached subtree (every occurrence of a longer string is one of its prefix too)."""
    stack = [node]
    while stack:
        dead = stack.pop()
        dead.count = dead.out = 0
        dead.best = None
        stack.extend(dead.children.values())
        dead.children.clear()


class Matcher:
    """The suffixes of a growing context that occur in ``tree``, as nodes, updated per token."""

    def __init__(self, tree: SuffixTree, context: Iterable[int] = ()) -> None:
        self.tree = tree
        self.nodes: list[Node] = []  # longest match first
        self.extend(context)

    def extend(self, tokens: Iterable[int]) -> None:
        limit = self.tree.max_depth
        for token in tokens:
            token = int(token)
            grown = []
            for node in self.nodes:
                if node.depth < limit and node.count > 0:
                    child = node.children.get(token)
                    if child is not None:
                        grown.append(child)
            first = self.tree.root.children.get(token)
            if first is not None:
                grown.append(first)
            self.nodes = grown

    def longest(self) -> Node | None:
        """The deepest matched node that something followed (None when there is none)."""
        for node in self.nodes:
            if node.children and node.count > 0:
                return node
        return None


@dataclass(frozen=True)
class Draft:
    """Speculated tokens as a tree: ``parents[i]`` is the index of token i's parent, -1 for the
    context's end. A path has ``parents == (-1, 0, 1, ...)``. ``probs[i]``: estimated probability
    that token i is accepted (the product of count ratios from the match down to it)."""

    tokens: tuple[int, ...] = ()
    parents: tuple[int, ...] = ()
    probs: tuple[float, ...] = ()
    match_length: int = 0
    source: str = ""

    @property
    def score(self) -> float:
        """Expected accepted tokens: the sum of the nodes' probabilities."""
        return float(sum(self.probs))

    def __len__(self) -> int:
        return len(self.tokens)

    def is_path(self) -> bool:
        return self.parents == tuple(range(-1, len(self.tokens) - 1))


@dataclass(frozen=True)
class SpeculationConfig:
    """How much to guess: ``min(max_spec, alpha * match_length + offset)`` tokens at most."""

    max_spec: int = 32
    alpha: float = 1.0
    offset: float = 0.0
    min_token_prob: float = 0.1
    mode: Mode = "tree"

    def __post_init__(self) -> None:
        if self.max_spec < 0 or self.alpha < 0 or not 0.0 <= self.min_token_prob <= 1.0:
            raise ValueError("max_spec and alpha must be >= 0 and min_token_prob in [0, 1]")
        if self.mode not in ("path", "tree"):
            raise ValueError(f"mode must be 'path' or 'tree', not {self.mode!r}")

    def budget(self, match_length: int) -> int:
        return max(0, min(self.max_spec, int(self.alpha * match_length + self.offset)))


def draft(node: Node | None, match_length: int, config: SpeculationConfig, source: str = "") -> Draft:
    """The draft read off ``node`` (the matched context) under ``config``."""
    budget = config.budget(match_length)
    if node is None or budget == 0 or not node.children:
        return Draft(match_length=match_length, source=source)
    if config.mode == "path":
        return _path(node, budget, config.min_token_prob, match_length, source)
    return _tree(node, budget, config.min_token_prob, match_length, source)


def _path(node: Node, budget: int, min_prob: float, match_length: int, source: str) -> Draft:
    tokens: list[int] = []
    probs: list[float] = []
    prob = 1.0
    while len(tokens) < budget:
        child = node.best_child()
        if child is None:
            break
        prob *= child.count / _outgoing(node)
        if prob < min_prob:
            break
        tokens.append(child.token)
        probs.append(prob)
        node = child
    return Draft(tuple(tokens), tuple(range(-1, len(tokens) - 1)), tuple(probs), match_length, source)


def _tree(node: Node, budget: int, min_prob: float, match_length: int, source: str) -> Draft:
    """Best-first: repeatedly take the most probable frontier node (ties: earlier found first)."""
    tokens: list[int] = []
    parents: list[int] = []
    probs: list[float] = []
    frontier: list[tuple[float, int, int, Node]] = []  # (-prob, order, parent index, node)
    order = 0
    for child in _likely(node, 1.0, min_prob):
        frontier.append((-child.count / _outgoing(node), order, -1, child))
        order += 1
    heapq.heapify(frontier)
    while frontier and len(tokens) < budget:
        neg, _, parent, child = heapq.heappop(frontier)
        prob = -neg
        if prob < min_prob:
            break  # every other frontier node is at most as probable
        index = len(tokens)
        tokens.append(child.token)
        parents.append(parent)
        probs.append(prob)
        out = _outgoing(child)
        for grand in _likely(child, prob, min_prob):
            heapq.heappush(frontier, (-prob * grand.count / out, order, index, grand))
            order += 1
    return Draft(tuple(tokens), tuple(parents), tuple(probs), match_length, source)


def _likely(node: Node, prob: float, min_prob: float) -> list[Node]:
    """Children that keep the path's probability at ``min_prob`` or more.

    A child needs ``count >= min_prob * out / prob``; when the most frequent one falls short,
    the children are not scanned at all.
    """
    need = min_prob * _outgoing(node) / prob if prob > 0 else float("inf")
    best = node.best
    if best is None or best.count < need:
        return []
    return [c for c in node.children.values() if c.count >= need]


def _outgoing(node: Node) -> int:
    """Occurrences of ``node`` that something followed: the denominator of a child's probability.

    A node's own count also includes occurrences at the very end of a sequence (nothing follows
    them yet); dividing by the children's total keeps the probabilities of the choices summing to 1.
    """
    return max(node.out, 1)


class SuffixCache:
    """The per-request trees and the global tree of earlier outputs, with FIFO eviction.

    ``start(rid, prompt)`` opens a request (its tree gets the prompt), ``append(rid, tokens)``
    feeds generated tokens, ``speculate(rid)`` returns the better-scoring draft of the two trees,
    and ``finish(rid)`` files the request's output (not its prompt) in the global tree, evicting
    the oldest outputs beyond ``max_cached``. ``cancel(rid)`` forgets a request without filing it.
    """

    def __init__(
        self, max_depth: int = 64, max_cached: int = 10_000, config: SpeculationConfig | None = None
    ) -> None:
        if max_cached < 0:
            raise ValueError("max_cached must be at least 0")
        self.max_depth = max_depth
        self.max_cached = max_cached
        self.config = config or SpeculationConfig()
        self.global_tree = SuffixTree(max_depth)
        self._order: deque[object] = deque()
        self._requests: OrderedDict[object, _Request] = OrderedDict()
        self._serial = 0

    def start(self, rid: object, prompt: Sequence[int]) -> None:
        if rid in self._requests:
            raise KeyError(f"request {rid!r} is already open")
        tree = SuffixTree(self.max_depth)
        tree.add(0, prompt)
        self._requests[rid] = _Request(
            tree, Matcher(self.global_tree, prompt[-self.max_depth :]), len(prompt)
        )

    def append(self, rid: object, tokens: Sequence[int]) -> None:
        req = self._request(rid)
        req.tree.extend(0, tokens)
        req.matcher.extend(tokens)

    def output(self, rid: object) -> list[int]:
        req = self._request(rid)
        return req.tree.tokens(0)[req.prompt_len :]

    def speculate(self, rid: object, config: SpeculationConfig | None = None) -> Draft:
        """The per-request draft or the global one, whichever has the higher score."""
        config = config or self.config
        req = self._request(rid)
        own = Draft(source="request")
        # The request tree's open suffixes end at the context's last token: the deepest one
        # that occurred before (count > 1) has seen continuations.
        for node in reversed(req.tree.open_nodes(0)):
            if node.count > 1 and node.children:
                own = draft(node, node.depth, config, "request")
                break
        found = req.matcher.longest()
        other = draft(found, found.depth, config, "global") if found is not None else Draft(source="global")
        return own if own.score >= other.score else other

    def finish(self, rid: object) -> None:
        output = self.output(rid)
        del self._requests[rid]
        self._file(output)

    def _file(self, output: list[int]) -> None:
        if self.max_cached == 0 or not output:
            return
        self._serial += 1
        key = self._serial
        self.global_tree.add(key, output)
        self._order.append(key)
        while len(self._order) > self.max_cached:
            self.global_tree.remove(self._order.popleft())

    def cancel(self, rid: object) -> None:
        self._requests.pop(rid, None)

    def _request(self, rid: object) -> _Request:
        req = self._requests.get(rid)
        if req is None:
            raise KeyError(f"no open request {rid!r}: start() it first (or it has finished)")
        return req

    def add_output(self, tokens: Sequence[int]) -> None:
        """File a past output directly (warming the cache from a log)."""
        self._file(list(tokens))


@dataclass
class _Request:
    tree: SuffixTree
    matcher: Matcher
    prompt_len: int
