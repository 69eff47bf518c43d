"""The math of verifying a draft: tree shape, tree attention mask, and which tokens are accepted.

Nothing here runs a model. The verification forward feeds ``[pending] + draft.tokens`` where
``pending`` is the context's last token (its keys and values are not cached yet), so logits row 0
is the model's distribution after the context and row ``1 + i`` the distribution after draft
token ``i`` and its ancestors. ``accept_greedy`` and ``accept_sampled`` walk that tree from the
root and return the accepted path plus the model's own next token (the bonus).

Sampling treats the drafter as deterministic (a point mass on each proposed token), so the
multi-candidate rule of SpecInfer (Miao et al.) reduces to: at a node with children c1..cn, accept
ci with probability ``r(ci)`` where ``r`` is the residual distribution (initially the model's),
and on rejection zero ``r(ci)`` and renormalise; if every child is rejected the bonus is drawn
from the residual. Each token is then distributed exactly as the model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .suffix_tree import Draft


@dataclass(frozen=True)
class Acceptance:
    """The outcome of verifying one draft.

    ``nodes``: draft indices of the accepted root-to-node path (increasing); ``tokens``: their
    tokens; ``bonus``: the model's next token after them.
    """

    nodes: tuple[int, ...]
    tokens: tuple[int, ...]
    bonus: int

    @property
    def emitted(self) -> tuple[int, ...]:
        """The tokens this step adds to the output: the accepted ones, then the bonus."""
        return (*self.tokens, self.bonus)


def check_draft(draft: Draft, vocab_size: int | None = None) -> None:
    """Raise ``ValueError`` unless ``draft`` is a well-formed tree (parents precede children)."""
    if len(draft.parents) != len(draft.tokens):
        raise ValueError(f"draft has {len(draft.tokens)} tokens but {len(draft.parents)} parents")
    for i, (token, parent) in enumerate(zip(draft.tokens, draft.parents, strict=True)):
        if not -1 <= parent < i:
            raise ValueError(f"draft token {i} has parent {parent}: it must be in [-1, {i - 1}]")
        if token < 0 or (vocab_size is not None and token >= vocab_size):
            raise ValueError(f"draft token {i} is {token}, outside the vocabulary of {vocab_size}")


def depths(parents: Sequence[int]) -> list[int]:
    """Depth of each node, 0 for children of the root (parents must precede children)."""
    out: list[int] = []
    for parent in parents:
        out.append(0 if parent < 0 else out[parent] + 1)
    return out


def children(parents: Sequence[int]) -> list[list[int]]:
    """Children of the root (entry 0) and of each node ``i`` (entry ``i + 1``), in draft order."""
    out: list[list[int]] = [[] for _ in range(len(parents) + 1)]
    for i, parent in enumerate(parents):
        out[parent + 1].append(i)
    return out


def first_path(draft: Draft) -> Draft:
    """The path that follows the first child at every node (the drafter's best guess first)."""
    kids = children(draft.parents)
    picked: list[int] = []
    level = kids[0]
    while level:
        picked.append(level[0])
        level = kids[level[0] + 1]
    return _subset(draft, picked)


def prune_depth(draft: Draft, levels: int) -> Draft:
    """The nodes of depth below ``levels``: deeper ones could only add tokens past the budget."""
    deep = depths(draft.parents)
    return _subset(draft, [i for i, d in enumerate(deep) if d < max(levels, 0)])


def _subset(draft: Draft, keep: Sequence[int]) -> Draft:
    """The draft restricted to ``keep`` (increasing, closed under taking parents), re-indexed."""
    if len(keep) == len(draft.tokens):
        return draft
    where = {old: new for new, old in enumerate(keep)}
    return Draft(
        tokens=tuple(draft.tokens[i] for i in keep),
        parents=tuple(-1 if draft.parents[i] < 0 else where[draft.parents[i]] for i in keep),
        probs=tuple(draft.probs[i] for i in keep) if len(draft.probs) == len(draft.tokens) else (),
        match_length=draft.match_length,
        source=draft.source,
    )


def tree_attention_mask(
    parents: Sequence[int], past: int, dtype: torch.dtype, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Additive mask ``[1, 1, 1 + n, past + 1 + n]`` for ``[pending] + draft`` over ``past`` cached tokens.

    Every query sees the cached tokens and ``pending``; draft token ``i`` also sees its ancestors
    and itself, never its siblings. Additive floats (0 or the dtype's minimum) rather than booleans:
    transformers' eager attention adds the mask to the scores, so a boolean one would be read as 0/1.
    """
    n = len(parents)
    allowed = torch.zeros((1 + n, past + 1 + n), dtype=torch.bool, device=device)
    allowed[:, : past + 1] = True
    for i, parent in enumerate(parents):
        if parent >= 0:
            allowed[1 + i] |= allowed[1 + parent]
        allowed[1 + i, past + 1 + i] = True
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[None, None]


def tree_positions(parents: Sequence[int], past: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Position ids ``[1, 1 + n]``: ``pending`` at ``past``, draft token i at ``past + 1 + depth(i)``."""
    pos = [past] + [past + 1 + d for d in depths(parents)]
    return torch.tensor([pos], dtype=torch.long, device=device)


def accept_greedy(logits: torch.Tensor, draft: Draft) -> Acceptance:
    """Follow the child equal to the argmax at each node (the first such child on duplicates)."""
    kids = children(draft.parents)
    best = logits.argmax(dim=-1).tolist()  # one transfer: argmax of every row
    nodes: list[int] = []
    row = 0
    while True:
        target = int(best[row])
        nxt = next((c for c in kids[row] if draft.tokens[c] == target), None)
        if nxt is None:
            return Acceptance(tuple(nodes), tuple(draft.tokens[i] for i in nodes), target)
        nodes.append(nxt)
        row = nxt + 1


def accept_sampled(
    logits: torch.Tensor, draft: Draft, temperature: float, generator: torch.Generator
) -> Acceptance:
    """Multi-candidate rejection sampling for a deterministic drafter (see the module docstring)."""
    if temperature <= 0:
        raise ValueError("accept_sampled needs a temperature > 0; use accept_greedy for 0")
    kids = children(draft.parents)
    nodes: list[int] = []
    row = 0
    while True:
        # float64 so that zeroing and renormalising a residual does not drift
        residual = torch.softmax(logits[row].to(torch.float64) / temperature, dim=-1)
        nxt = None
        for child in kids[row]:
            token = draft.tokens[child]
            p = float(residual[token])
            if float(torch.rand((), generator=generator, dtype=torch.float64)) < p:
                nxt = child
                break
            residual[token] = 0.0
            residual /= residual.sum()
        if nxt is None:
            bonus = int(torch.multinomial(residual, 1, generator=generator))
            return Acceptance(tuple(nodes), tuple(draft.tokens[i] for i in nodes), bonus)
        nodes.append(nxt)
        row = nxt + 1


def accept(
    logits: torch.Tensor, draft: Draft, temperature: float = 0.0, generator: torch.Generator | None = None
) -> Acceptance:
    """Greedy acceptance at temperature 0, rejection sampling (with ``generator``) above it."""
    if temperature == 0:
        return accept_greedy(logits, draft)
    if generator is None:
        raise ValueError("sampling needs a torch.Generator")
    return accept_sampled(logits, draft, temperature, generator)
