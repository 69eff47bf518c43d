"""Suffix trees over token sequences, and the drafts SuffixDecoding reads off them.

SuffixDecoding (Oliaro et al., "SuffixDecoding: Extreme Speculative Decoding for Emerging AI
Applications") speculates without a draft model: the continuation of the current text is guessed
from what followed the same text before, in this request's prompt and output (a per-request
tree) or in earlier outputs (a global tree), and the longer the match the more tokens are worth
guessing.

``SuffixTree`` holds every substring of length at most ``max_depth`` of the sequences added, with
its number of occurrences. A plain suffix trie would give each substring a node, tokens x depth
of them; most substrings occur once, so this tree keeps them compressed:

* a ``Node`` stands for a substring that occurred at least twice (explicit, with a count, its
  children by next token, and a suffix link to the node of the substring minus its first token);
* a ``Tail`` stands for everything below a node that occurred once: a pointer into the sequence
  holding that occurrence. An open sequence's tails grow with it for free.

Appending a token touches only the suffixes that end at it and occurred before (the sequence's
``active`` nodes, shortest first): each gets +1, or a new tail where the continuation is new, or
is *split* where it lands on another occurrence's tail (that string just occurred a second time,
so it becomes a node). Removing a sequence walks its suffixes down to their tails, decrementing.
Costs are per repeated suffix, not per depth, and memory is per repeated substring.

``Matcher`` follows a growing context against a tree with one position (a node, or a place
inside a tail) and suffix links, so the longest match costs O(1) amortised per token.

``draft(position, match_length, ...)`` turns a match into a ``Draft``: a budget of
``min(max_spec, alpha * match_length + offset)`` tokens, then either a path (the most frequent
child at each step while the estimated probability, the product of ``count / total`` along the
way, stays at least ``min_token_prob``) or a tree (best-first by that probability). Its score,
the sum of the nodes' probabilities, is the expected number of accepted tokens, which is how
``SuffixCache`` picks a match length and between the per-request and the global draft.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

Mode = Literal["path", "tree"]


class Node:
    """A substring that occurred at least twice: its count, children and suffix link.

    ``out`` is the children's total count (the occurrences something followed: the denominator
    of a child's probability) and ``best_count``/``best_token`` the most frequent child (ties:
    the smaller token), both kept as counts change so that drafting never scans a wide node;
    ``best_count`` is -1 when a removal may have dethroned the best (recomputed when read).
    """

    __slots__ = ("best_count", "best_token", "children", "count", "depth", "link", "out", "token")

    def __init__(self, token: int, depth: int, count: int, link: Node | None) -> None:
        self.token = token
        self.depth = depth
        self.count = count
        self.children: dict[int, Node | Tail] = {}
        self.link = link  # the node of this substring minus its first token (the root for depth 1)
        self.out = 0
        self.best_count = 0
        self.best_token = -1

    def best(self) -> tuple[int, int]:
        """(count, token) of the most frequent child; (0, -1) when there is none."""
        if self.best_count < 0:
            count, token = 0, -1
            for t, child in self.children.items():
                c = child.count if child.__class__ is Node else 1
                if c > count or (c == count and t < token):
                    count, token = c, t
            self.best_count, self.best_token = count, token
        return self.best_count, self.best_token


class Tail:
    """One occurrence below a node: ``seq[pos]`` sits at string depth ``depth``, and the
    occurrence continues along ``seq`` down to the depth limit. Dead once split or removed."""

    __slots__ = ("alive", "depth", "pos", "seq")

    def __init__(self, seq: list[int], pos: int, depth: int) -> None:
        self.seq = seq
        self.pos = pos
        self.depth = depth
        self.alive = True


class Position(NamedTuple):
    """A place in a tree: ``node`` (the deepest explicit one) and, when the string continues
    into a unique occurrence, that ``tail``; ``depth`` is the string's length."""

    node: Node
    tail: Tail | None
    depth: int


class SuffixTree:
    """All substrings of length at most ``max_depth`` of the sequences added by id, counted."""

    def __init__(self, max_depth: int = 64) -> None:
        if max_depth < 1:
            raise ValueError("max_depth must be at least 1")
        self.max_depth = max_depth
        self.root = Node(-1, 0, 0, None)
        self.root.link = self.root
        self.nodes = 1  # explicit nodes alive, the root included (a memory gauge)
        self._seqs: dict[object, list[int]] = {}
        self._active: dict[object, list[Node]] = {}  # repeated suffixes ending at each sequence's end
        self._open: dict[int, object] = {}  # id of an open sequence's token list -> its id

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
        seq: list[int] = []
        self._seqs[seq_id] = seq
        self._active[seq_id] = []
        self._open[id(seq)] = seq_id
        self.extend(seq_id, tokens)

    def extend(self, seq_id: object, tokens: Iterable[int]) -> None:
        """Append ``tokens``: each adds an occurrence to every suffix ending at it."""
        seq = self._seqs[seq_id]
        active = self._active[seq_id]
        limit = self.max_depth
        root = self.root
        for token in tokens:
            token = int(token)
            n = len(seq)
            seq.append(token)
            grown: list[Node] = []
            keep = grown.append
            # Suffixes by increasing length: the root (length 0), then the repeated ones; the
            # longest may sit at the depth limit, where it stops growing.
            walk = active[:-1] if active and active[-1].depth >= limit else active
            for v in (root, *walk):
                v.out += 1
                child = v.children.get(token)
                if child is None:
                    # A new continuation: this occurrence is unique from here (and so are the
                    # longer suffixes, which get their own tails in the next iterations).
                    v.children[token] = Tail(seq, n, v.depth + 1)
                    count = 1
                elif child.__class__ is Node:
                    child.count += 1
                    count = child.count
                    keep(child)
                else:
                    # Its suffix link is the node just reached one level up.
                    keep(self._split(v, child, grown[-1] if grown else root))  # type: ignore[arg-type]
                    count = 2
                if count > v.best_count >= 0 or (count == v.best_count and token < v.best_token):
                    v.best_count = count
                    v.best_token = token
            active = grown
        self._active[seq_id] = active

    def _split(self, parent: Node, tail: Tail, link: Node) -> Node:
        """A tail's first string occurred a second time: make it a node (count 2) whose one
        child is the rest of the tail's occurrence."""
        node = Node(tail.seq[tail.pos], tail.depth, 2, link)
        nxt = tail.pos + 1
        if tail.depth < self.max_depth and nxt < len(tail.seq):
            token = tail.seq[nxt]
            node.children[token] = Tail(tail.seq, nxt, tail.depth + 1)
            node.out, node.best_count, node.best_token = 1, 1, token
        elif nxt == len(tail.seq):
            # That occurrence ends its (open) sequence: the string is now one of that
            # sequence's repeated suffixes, which its next append must count.
            owner = self._open.get(id(tail.seq))
            if owner is not None:
                self._active[owner].append(node)  # splits come shortest first: stays in order
        tail.alive = False  # a matcher standing in it re-finds its place
        parent.children[node.token] = node
        self.nodes += 1
        return node

    def remove(self, seq_id: object) -> None:
        """Take a sequence's occurrences out; nodes no longer in any sequence are dropped."""
        self.close(seq_id)
        seq = self._seqs.pop(seq_id)
        limit = self.max_depth
        for start in range(len(seq)):
            v = self.root
            for i in range(start, min(len(seq), start + limit)):
                token = seq[i]
                child = v.children[token]
                v.out -= 1
                if token == v.best_token:
                    v.best_count = -1  # it may have lost the lead: recounted when next read
                if child.__class__ is Tail:
                    # The rest of this occurrence: a tail is one occurrence, so it is this one.
                    del v.children[token]
                    child.alive = False
                    break
                node: Node = child  # type: ignore[assignment]
                node.count -= 1
                if node.count == 0:
                    del v.children[token]
                    self.nodes -= _kill(node)
                    break
                v = node

    def find(self, tokens: Sequence[int]) -> Position | None:
        """Where ``tokens`` (at most ``max_depth`` of them) end in the tree, or None."""
        if len(tokens) > self.max_depth:
            return None
        return _walk(self.root, [int(t) for t in tokens], check=True)

    def count(self, tokens: Sequence[int]) -> int:
        """Occurrences of ``tokens`` in the sequences (the empty string: 0)."""
        pos = self.find(tokens) if tokens else None
        if pos is None:
            return 0
        return 1 if pos.tail is not None else pos.node.count

    def continuations(self, tokens: Sequence[int]) -> dict[int, int]:
        """Next token -> occurrences of ``tokens`` followed by it."""
        pos = self.find(tokens)
        return {} if pos is None else dict((t, c) for t, c, _ in _children(pos, self.max_depth))

    def active_nodes(self, seq_id: object) -> list[Node]:
        """Nodes of the suffixes ending at the sequence's end that occurred before, shortest first."""
        return list(self._active[seq_id])

    def close(self, seq_id: object) -> None:
        """The sequence will not grow again: drop what appending needs (``extend`` then fails)."""
        if self._active.pop(seq_id, None) is not None:
            del self._open[id(self._seqs[seq_id])]


def _kill(node: Node) -> int:
    """Mark a detached subtree dead (every longer string contained it); returns its node count."""
    stack: list[Node | Tail] = [node]
    killed = 0
    while stack:
        dead = stack.pop()
        if dead.__class__ is Tail:
            dead.alive = False
            continue
        killed += 1
        dead.count = 0  # type: ignore[union-attr]
        stack.extend(dead.children.values())  # type: ignore[union-attr]
        dead.children.clear()  # type: ignore[union-attr]
    return killed


def _walk(start: Node, tokens: Sequence[int], check: bool) -> Position | None:
    """Go down from ``start`` along ``tokens``. With ``check`` False the string is known to occur
    (a suffix of an occurring one), so the tokens inside a tail need no comparison."""
    node = start
    for i, token in enumerate(tokens):
        child = node.children.get(token)
        if child is None:
            return None
        if child.__class__ is Node:
            node = child
            continue
        tail: Tail = child  # type: ignore[assignment]
        rest = len(tokens) - i
        if check and list(tail.seq[tail.pos : tail.pos + rest]) != list(tokens[i:]):
            return None
        return Position(node, tail, node.depth + rest)
    return Position(node, None, node.depth)


def _tail_index(tail: Tail, depth: int) -> int:
    """Index in ``tail.seq`` of the token at string depth ``depth`` on the tail."""
    return tail.pos + depth - tail.depth


def _children(pos: Position, limit: int) -> Iterator[tuple[int, int, Position]]:
    """(token, count, position) for each continuation of ``pos``."""
    node, tail, depth = pos
    if depth >= limit:
        return
    if tail is not None:
        idx = _tail_index(tail, depth + 1)
        if idx < len(tail.seq):
            yield tail.seq[idx], 1, Position(node, tail, depth + 1)
        return
    for token, child in node.children.items():
        if child.__class__ is Node:
            yield token, child.count, Position(child, None, depth + 1)
        else:
            yield token, 1, Position(node, child, depth + 1)  # type: ignore[arg-type]


def _child(node: Node, token: int) -> Position:
    """The position one token below an explicit node."""
    child = node.children[token]
    if child.__class__ is Node:
        return Position(child, None, node.depth + 1)
    return Position(node, child, node.depth + 1)  # type: ignore[arg-type]


def _shorter(pos: Position) -> Position:
    """The position of the string minus its first token (its suffix link)."""
    node, tail, depth = pos
    if tail is None:
        link = node.link
        assert link is not None
        return Position(link, None, link.depth)
    rest = tail.seq[tail.pos : _tail_index(tail, depth) + 1]  # the tokens from node to pos
    if node.depth == 0:
        start, rest = node, rest[1:]
    else:
        assert node.link is not None
        start = node.link
    found = _walk(start, rest, check=False)
    assert found is not None  # a suffix of an occurring string occurs
    return found


class Matcher:
    """The longest suffix of a growing context that occurs in ``tree``, followed per token."""

    def __init__(self, tree: SuffixTree, context: Iterable[int] = ()) -> None:
        self.tree = tree
        self._recent: deque[int] = deque(maxlen=tree.max_depth)  # to re-find a lost place
        self._node = tree.root
        self._tail: Tail | None = None
        self._depth = 0
        self.extend(context)

    @property
    def position(self) -> Position:
        self._revalidate()
        return Position(self._node, self._tail, self._depth)

    @property
    def depth(self) -> int:
        """The length of the longest match."""
        return self.position.depth

    def extend(self, tokens: Iterable[int]) -> None:
        limit = self.tree.max_depth
        for token in tokens:
            token = int(token)
            self._revalidate()
            node, tail, depth = self._node, self._tail, self._depth
            while True:
                if depth < limit:
                    if tail is None:
                        child = node.children.get(token)
                        if child is not None:
                            if child.__class__ is Node:
                                node = child
                            else:
                                tail = child  # type: ignore[assignment]
                            depth += 1
                            break
                    else:
                        idx = _tail_index(tail, depth + 1)
                        if idx < len(tail.seq) and tail.seq[idx] == token:
                            depth += 1
                            break
                if depth == 0:
                    break  # not even the token alone occurs
                node, tail, depth = _shorter(Position(node, tail, depth))
            self._node, self._tail, self._depth = node, tail, depth
            self._recent.append(token)

    def _revalidate(self) -> None:
        """After a removal or a split took our place away, find the longest match again."""
        node, tail = self._node, self._tail
        if (tail is None or tail.alive) and (node.count > 0 or node.depth == 0):
            return
        recent = list(self._recent)
        for start in range(len(recent) + 1):
            found = self.tree.find(recent[start:])
            if found is not None:
                self._node, self._tail, self._depth = found
                return

    def candidates(self) -> Iterator[Position]:
        """Matched positions something followed, longest first (shortened by suffix links)."""
        pos = self.position
        limit = self.tree.max_depth
        while pos.depth > 0:
            if _has_continuation(pos, limit):
                yield pos
            pos = _shorter(pos)


def _has_continuation(pos: Position, limit: int) -> bool:
    node, tail, depth = pos
    if depth >= limit:
        return False
    if tail is None:
        return bool(node.children)
    return _tail_index(tail, depth + 1) < len(tail.seq)


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


def draft(pos: Position | None, config: SpeculationConfig, limit: int, source: str = "") -> Draft:
    """The draft read off ``pos`` (the matched context; its depth is the match length) under
    ``config`` in a tree of depth ``limit``."""
    if pos is None:
        return Draft(source=source)
    budget = config.budget(pos.depth)
    if budget == 0:
        return Draft(match_length=pos.depth, source=source)
    if config.mode == "path":
        return _path(pos, budget, config.min_token_prob, limit, source)
    return _tree(pos, budget, config.min_token_prob, limit, source)


def _path(pos: Position, budget: int, min_prob: float, limit: int, source: str) -> Draft:
    match_length = pos.depth
    tokens: list[int] = []
    probs: list[float] = []
    prob = 1.0
    while len(tokens) < budget:
        if pos.tail is not None:
            # A unique occurrence: each next token follows with ratio 1, so take them at once.
            tail = pos.tail
            idx = _tail_index(tail, pos.depth + 1)
            take = min(budget - len(tokens), limit - pos.depth, len(tail.seq) - idx)
            if take > 0:
                tokens.extend(tail.seq[idx : idx + take])
                probs.extend([prob] * take)
            break
        node = pos.node
        count, token = node.best()
        if count == 0 or pos.depth >= limit:
            break
        prob *= count / node.out
        if prob < min_prob:
            break
        tokens.append(token)
        probs.append(prob)
        pos = _child(node, token)
    return Draft(tuple(tokens), tuple(range(-1, len(tokens) - 1)), tuple(probs), match_length, source)


def _tree(pos: Position, budget: int, min_prob: float, limit: int, source: str) -> Draft:
    """Best-first: repeatedly take the most probable frontier node (ties: earlier found first)."""
    tokens: list[int] = []
    parents: list[int] = []
    probs: list[float] = []
    frontier: list[tuple[float, int, int, int, Position]] = []  # (-prob, order, parent, token, pos)
    order = 0

    def expand(at: Position, prob: float, parent: int) -> None:
        """Push the children of an explicit node likely enough to be worth a place."""
        nonlocal order
        node = at.node
        out = node.out
        if out == 0 or at.depth >= limit:
            return
        need = min_prob * out / prob * (1 - 1e-9)  # a count below this cannot reach min_prob
        if node.best()[0] < need:
            return  # not even the most frequent child: skip scanning a wide node
        for token, child in node.children.items():
            count = child.count if child.__class__ is Node else 1
            if count >= need and (p := prob * count / out) >= min_prob:
                heapq.heappush(frontier, (-p, order, parent, token, _child(node, token)))
                order += 1

    if pos.tail is not None:
        # Inside a unique occurrence: one continuation at each step, so the tree is the path.
        return _path(pos, budget, min_prob, limit, source)
    expand(pos, 1.0, -1)
    while frontier and len(tokens) < budget:
        neg, _, parent, token, child = heapq.heappop(frontier)
        prob = -neg
        tokens.append(token)
        parents.append(parent)
        probs.append(prob)
        if child.tail is not None:
            # A unique occurrence: its chain keeps this probability, at least that of anything
            # left on the frontier, so best-first takes it whole (up to the budget).
            tail = child.tail
            idx = _tail_index(tail, child.depth + 1)
            take = min(budget - len(tokens), limit - child.depth, len(tail.seq) - idx)
            for k in range(max(take, 0)):
                parents.append(len(tokens) - 1)
                tokens.append(tail.seq[idx + k])
                probs.append(prob)
            continue
        expand(child, prob, len(tokens) - 1)
    return Draft(tuple(tokens), tuple(parents), tuple(probs), pos.depth, source)


def best_draft(positions: Iterable[Position], config: SpeculationConfig, limit: int, source: str) -> Draft:
    """The best-scoring draft over a few match lengths.

    The longest match predicts best but leaves only ``limit - depth`` tokens of room below it;
    a shorter one has room for the full budget. Both are tried (the first position, and the
    first whose depth leaves room for ``max_spec``), longest first; ties keep the longer match.
    """
    best = Draft(source=source)
    room = limit - config.max_spec
    tried = 0
    for pos in positions:
        if tried and pos.depth > room:
            continue
        got = draft(pos, config, limit, source)
        if got.score > best.score:
            best = got
        tried += 1
        if pos.depth <= room or room <= 0 or tried >= 2:
            break
    return best


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
        limit = self.max_depth
        # The request's repeated suffixes end at the context's end; the earlier occurrences'
        # continuations are their children (the current one has none yet).
        active = req.tree.active_nodes(0)
        own_positions = (Position(n, None, n.depth) for n in reversed(active) if n.children)
        own = best_draft(own_positions, config, limit, "request")
        other = best_draft(req.matcher.candidates(), config, limit, "global")
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
        self.global_tree.close(key)
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
