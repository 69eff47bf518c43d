"""SuffixDecoding on a transformers causal LM: draft, verify in one forward, keep what the model agrees with.

The loop keeps one invariant: the KV cache holds the context except its last token, ``pending``.
Each step asks the ``Drafter`` for a draft (a path or a tree), runs ONE forward over
``[pending] + draft`` and accepts the longest path the model agrees with (``spec_verify``), then
keeps only that path's keys and values; the bonus token becomes the new ``pending``. With an empty
draft a step is an ordinary decoding step, so speculation never costs extra forwards.

* Chain verification (a path draft, or ``verify="chain"``): a plain causal forward, then
  ``DynamicCache.crop`` drops the rejected tail.
* Tree verification: a 4D additive attention mask (each draft token sees the context and its
  ancestors) with position ids ``context length + depth``; the accepted entries are gathered to
  the front of the tree region of every layer, then the rest is cropped.

Under greedy decoding the output equals plain decoding (up to floating-point ties); with a
temperature it is distributed exactly as sampling from the model (``spec_verify.accept_sampled``).
Batch size 1. This module imports torch (transformers only when a cache is made); the package's
``__init__`` does not import it, so ``import speculation`` stays light.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch

from .spec_verify import (
    Acceptance,
    accept,
    check_draft,
    first_path,
    prune_depth,
    tree_attention_mask,
    tree_positions,
)
from .suffix_tree import Draft

Verify = Literal["tree", "chain"]


@runtime_checkable
class Drafter(Protocol):
    """Proposes continuations of a request's context; ``SuffixCache`` is one."""

    def start(self, rid: object, prompt: Sequence[int]) -> None: ...

    def append(self, rid: object, tokens: Sequence[int]) -> None: ...

    def speculate(self, rid: object) -> Draft: ...

    def finish(self, rid: object) -> None: ...

    def cancel(self, rid: object) -> None: ...


class CausalLM(Protocol):
    """What is used of a transformers causal LM: calling it, its config and its embeddings."""

    config: Any

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    def get_input_embeddings(self) -> Any: ...


class PromptLookupDrafter:
    """N-gram lookup in the request's own context (as transformers' prompt lookup): path drafts.

    The context's last ``n`` tokens (``max_ngram`` down to ``min_ngram``) are searched for earlier
    in the context; the latest earlier occurrence wins (recent text repeats most) and the up to
    ``max_spec`` tokens that followed it are the draft.
    """

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1, max_spec: int = 10) -> None:
        if not 1 <= min_ngram <= max_ngram or max_spec < 0:
            raise ValueError("need 1 <= min_ngram <= max_ngram and max_spec >= 0")
        self.max_ngram, self.min_ngram, self.max_spec = max_ngram, min_ngram, max_spec
        self._contexts: dict[object, list[int]] = {}

    def start(self, rid: object, prompt: Sequence[int]) -> None:
        if rid in self._contexts:
            raise KeyError(f"request {rid!r} is already open")
        self._contexts[rid] = [int(t) for t in prompt]

    def append(self, rid: object, tokens: Sequence[int]) -> None:
        self._contexts[rid].extend(int(t) for t in tokens)

    def speculate(self, rid: object) -> Draft:
        ctx = self._contexts[rid]
        for n in range(min(self.max_ngram, len(ctx) - 1), self.min_ngram - 1, -1):
            tail = ctx[-n:]
            for start in range(len(ctx) - n - 1, -1, -1):
                if ctx[start : start + n] == tail:
                    follow = tuple(ctx[start + n : start + n + self.max_spec])
                    return Draft(follow, tuple(range(-1, len(follow) - 1)), match_length=n, source="prompt")
        return Draft(source="prompt")

    def finish(self, rid: object) -> None:
        self._contexts.pop(rid, None)

    def cancel(self, rid: object) -> None:
        self._contexts.pop(rid, None)


@dataclass(frozen=True)
class DecodeConfig:
    """``max_new_tokens`` at most; ``temperature`` 0 is greedy; ``seed`` seeds the sampler."""

    max_new_tokens: int = 64
    verify: Verify = "tree"
    temperature: float = 0.0
    seed: int = 0
    eos_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, not {self.max_new_tokens}")
        if self.verify not in ("tree", "chain"):
            raise ValueError(f"verify must be 'tree' or 'chain', not {self.verify!r}")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, not {self.temperature}")


@dataclass(frozen=True)
class DecodeStats:
    """Counts of one ``generate``: ``steps`` verification forwards (plus one prefill when the
    prompt has more than one token, counted in ``forwards``); non-empty drafts and draft tokens
    verified (after pruning to the token budget); draft tokens the model accepted (before the
    output is cut at ``max_new_tokens`` or EOS)."""

    forwards: int
    steps: int
    drafts: int
    draft_tokens: int
    accepted_tokens: int
    wall_s: float

    @property
    def accepted_per_step(self) -> float:
        return self.accepted_tokens / self.steps if self.steps else 0.0


@dataclass(frozen=True)
class DecodeResult:
    """New tokens (an end-of-sequence token included when it stopped the output) and why it stopped."""

    tokens: tuple[int, ...]
    stop: Literal["eos", "length"]
    stats: DecodeStats

    @property
    def tokens_per_step(self) -> float:
        return len(self.tokens) / self.stats.steps if self.stats.steps else 0.0


@functools.cache
def _cache_kwarg(model_type: type) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache`` (the old name is deprecated)."""
    forward = getattr(model_type, "forward", None)
    params = inspect.signature(forward).parameters if forward is not None else {}
    return "cache" if "cache" in params else "past_key_values"


def new_cache(model: CausalLM) -> Any:
    """An empty ``DynamicCache`` for ``model`` (its config decides the layer types)."""
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def vocab_size(model: CausalLM) -> int:
    """Rows of the input embedding: token ids must be below it."""
    return int(model.get_input_embeddings().num_embeddings)


def _forward(
    model: CausalLM,
    cache: Any,
    tokens: Sequence[int],
    mask: torch.Tensor | None = None,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits ``[len(tokens), vocab]`` of one forward that appends ``tokens`` to ``cache``."""
    device = model.get_input_embeddings().weight.device
    out = model(
        input_ids=torch.tensor([list(tokens)], dtype=torch.long, device=device),
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        **{_cache_kwarg(type(model)): cache},
    )
    return out.logits[0]


def tree_logits(model: CausalLM, cache: Any, pending: int, draft: Draft) -> torch.Tensor:
    """One tree-masked forward over ``[pending] + draft.tokens``; rows as in ``spec_verify``."""
    past = cache.get_seq_length()
    device = model.get_input_embeddings().weight.device
    dtype = model.get_input_embeddings().weight.dtype
    mask = tree_attention_mask(draft.parents, past, dtype, device)
    return _forward(model, cache, [pending, *draft.tokens], mask, tree_positions(draft.parents, past, device))


def keep_tree_entries(cache: Any, start: int, nodes: Sequence[int]) -> None:
    """Keep cache entries ``[:start]`` and ``start + i`` for i in ``nodes`` (increasing), in that order."""
    total = cache.get_seq_length()
    kept = len(nodes)
    if list(nodes) != list(range(kept)):  # a prefix of the draft needs no gathering, only the crop
        for layer in cache.layers:
            if getattr(layer, "is_sliding", False) or not isinstance(layer.keys, torch.Tensor):
                raise ValueError(f"tree verification needs full-attention cache layers, not {layer!r}")
            index = torch.tensor([start + i for i in nodes], dtype=torch.long, device=layer.keys.device)
            # nodes[j] >= j, so gathering first and writing after never reads an overwritten slot
            layer.keys[..., start : start + kept, :] = layer.keys.index_select(-2, index)
            layer.values[..., start : start + kept, :] = layer.values.index_select(-2, index)
    if total > start + kept:
        cache.crop(start + kept - total)  # transformers 5.24: a negative count of tokens to drop


def verify(
    model: CausalLM,
    cache: Any,
    pending: int,
    draft: Draft,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> Acceptance:
    """One forward over ``[pending] + draft``, then keep what the model agrees with.

    A path runs under the plain causal mask (it is its own tree mask), a tree under the tree
    mask; either way the cache ends holding only the accepted path's entries. ``draft`` must be
    well formed (``check_draft``).
    """
    past = cache.get_seq_length()
    if draft.is_path():
        logits = _forward(model, cache, [pending, *draft.tokens])
    else:
        logits = tree_logits(model, cache, pending, draft)
    result = accept(logits, draft, temperature, generator)
    keep_tree_entries(cache, past + 1, result.nodes)
    return result


def _check_prompt(prompt_ids: Sequence[int], vocab: int) -> list[int]:
    prompt = [int(t) for t in prompt_ids]
    if not prompt:
        raise ValueError("the prompt is empty: decoding needs at least one token of context")
    if min(prompt) < 0 or max(prompt) >= vocab:
        raise ValueError(f"prompt token ids must be in [0, {vocab})")
    return prompt


class SuffixDecoder:
    """Speculative decoding of one request at a time with ``model`` and ``drafter``."""

    def __init__(self, model: CausalLM, drafter: Drafter, config: DecodeConfig | None = None) -> None:
        self.model = model
        self.drafter = drafter
        self.config = config or DecodeConfig()

    def generate(self, rid: object, prompt_ids: Sequence[int]) -> DecodeResult:
        """Decode ``prompt_ids``; the drafter sees every new token and files the output at the end."""
        vocab = vocab_size(self.model)
        prompt = _check_prompt(prompt_ids, vocab)
        self.drafter.start(rid, prompt)
        try:
            result = self._decode(rid, prompt, vocab)
        except BaseException:
            self.drafter.cancel(rid)
            raise
        self.drafter.finish(rid)
        return result

    def _decode(self, rid: object, prompt: list[int], vocab: int) -> DecodeResult:
        cfg = self.config
        began = time.perf_counter()
        generator = torch.Generator().manual_seed(cfg.seed)
        out: list[int] = []
        forwards = steps = drafts = draft_tokens = accepted = 0
        stop: Literal["eos", "length"] = "length"
        with torch.inference_mode():
            cache = new_cache(self.model)
            if len(prompt) > 1 and cfg.max_new_tokens > 0:
                _forward(self.model, cache, prompt[:-1])
                forwards += 1
            pending = prompt[-1]
            while len(out) < cfg.max_new_tokens:
                remaining = cfg.max_new_tokens - len(out)
                draft = self.drafter.speculate(rid)
                check_draft(draft, vocab)
                if cfg.verify == "chain":
                    draft = first_path(draft)
                draft = prune_depth(draft, remaining)
                verdict = verify(self.model, cache, pending, draft, cfg.temperature, generator)
                forwards += 1
                steps += 1
                drafts += bool(draft.tokens)
                draft_tokens += len(draft.tokens)
                accepted += len(verdict.tokens)
                new = list(verdict.emitted[:remaining])
                if cfg.eos_token_id is not None and cfg.eos_token_id in new:
                    new = new[: new.index(cfg.eos_token_id) + 1]
                    stop = "eos"
                out.extend(new)
                self.drafter.append(rid, new)
                pending = new[-1]
                if stop == "eos":
                    break
        stats = DecodeStats(forwards, steps, drafts, draft_tokens, accepted, time.perf_counter() - began)
        return DecodeResult(tuple(out), stop, stats)


def greedy_generate(
    model: CausalLM, prompt_ids: Sequence[int], max_new_tokens: int, eos_token_id: int | None = None
) -> list[int]:
    """Plain greedy decoding with the KV cache, one token per forward: the reference output.

    The end-of-sequence token is kept when it stops the output (as ``model.generate`` does).
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, not {max_new_tokens}")
    prompt = _check_prompt(prompt_ids, vocab_size(model))
    out: list[int] = []
    with torch.inference_mode():
        cache = new_cache(model)
        step = prompt
        while len(out) < max_new_tokens:
            token = int(_forward(model, cache, step)[-1].argmax())
            out.append(token)
            if token == eos_token_id:
                break
            step = [token]
    return out
