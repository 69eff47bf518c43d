"""SuffixDecoding verification: greedy identity with plain decoding, the tree mask, the cache after
acceptance, and the distribution of rejection sampling, on tiny float64 Llamas built here.

float64 everywhere a greedy output is compared: a chunked forward and one-token forwards sum in
different orders, and in float32 that can flip an argmax between near-tied logits.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest
import torch
from scipy.stats import chisquare
from transformers import LlamaConfig, LlamaForCausalLM

from speculation.spec_verify import (
    Acceptance,
    accept_greedy,
    accept_sampled,
    check_draft,
    children,
    first_path,
    prune_depth,
    tree_attention_mask,
    tree_positions,
)
from speculation.suffix_decoding import (
    DecodeConfig,
    Drafter,
    PromptLookupDrafter,
    SuffixDecoder,
    greedy_generate,
    new_cache,
    tree_logits,
)
from speculation.suffix_decoding import (
    verify as verify_draft,
)
from speculation.suffix_tree import Draft, SpeculationConfig, SuffixCache

VOCAB = 96


def tiny_llama(vocab: int, seed: int, attn: str = "sdpa", head_scale: float = 1.0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        attn_implementation=attn,
    )
    model = LlamaForCausalLM(config).to(torch.float64).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(head_scale)  # sharper distributions: likely and unlikely tokens
    model.generation_config.eos_token_id = None  # LlamaConfig's default eos (2) would stop HF's generate
    model.generation_config.pad_token_id = 0
    return model


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and the test machine is shared; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    return tiny_llama(VOCAB, seed=0)


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def any_attn_model(request: pytest.FixtureRequest) -> LlamaForCausalLM:
    return tiny_llama(VOCAB, seed=1, attn=request.param)


def hf_greedy(model: LlamaForCausalLM, prompt: Sequence[int], n: int, eos: int | None = None) -> list[int]:
    """transformers' own greedy decoding (the new tokens only)."""
    ids = torch.tensor([list(prompt)])
    with torch.inference_mode():
        # an explicit mask: otherwise generate() masks prompt tokens equal to the pad id as padding
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=n,
            eos_token_id=eos,
            pad_token_id=0,
        )
    return [int(t) for t in out[0, len(prompt) :]]


def path(tokens: Sequence[int]) -> Draft:
    return Draft(tuple(tokens), tuple(range(-1, len(tokens) - 1)))


class Scripted:
    """A Drafter whose drafts are a function of the context (prompt and output so far)."""

    def __init__(self, propose: Callable[[list[int]], Draft]) -> None:
        self.propose = propose
        self.contexts: dict[object, list[int]] = {}
        self.finished: list[object] = []
        self.cancelled: list[object] = []
        self.drafts: list[Draft] = []

    def start(self, rid: object, prompt: Sequence[int]) -> None:
        self.contexts[rid] = list(prompt)

    def append(self, rid: object, tokens: Sequence[int]) -> None:
        self.contexts[rid].extend(tokens)

    def speculate(self, rid: object) -> Draft:
        draft = self.propose(list(self.contexts[rid]))
        self.drafts.append(draft)
        return draft

    def finish(self, rid: object) -> None:
        self.finished.append(rid)

    def cancel(self, rid: object) -> None:
        self.cancelled.append(rid)


class Recording:
    """Wraps a Drafter and keeps the drafts it returned."""

    def __init__(self, inner: Drafter) -> None:
        self.inner = inner
        self.drafts: list[Draft] = []

    def start(self, rid: object, prompt: Sequence[int]) -> None:
        self.inner.start(rid, prompt)

    def append(self, rid: object, tokens: Sequence[int]) -> None:
        self.inner.append(rid, tokens)

    def speculate(self, rid: object) -> Draft:
        draft = self.inner.speculate(rid)
        self.drafts.append(draft)
        return draft

    def finish(self, rid: object) -> None:
        self.inner.finish(rid)

    def cancel(self, rid: object) -> None:
        self.inner.cancel(rid)


def random_tree(rng: random.Random, size: int, vocab: int = VOCAB) -> Draft:
    parents = tuple(rng.randrange(-1, i) for i in range(size))
    return Draft(tuple(rng.randrange(vocab) for _ in range(size)), parents)


def oracle_tree(
    rng: random.Random, truth: Sequence[int], depth: int, siblings: int, wrong_at: int | None = None
) -> Draft:
    """The true continuation hidden among ``siblings`` wrong tokens (with random subtrees) per level;
    at level ``wrong_at`` the true token is left out, so acceptance stops there."""
    tokens: list[int] = []
    parents: list[int] = []
    parent = -1
    for level in range(min(depth, len(truth))):
        others = [t for t in rng.sample(range(VOCAB), siblings + 1) if t != truth[level]][:siblings]
        slot = rng.randrange(siblings + 1)
        chosen = -1
        for k in range(siblings + 1):
            if k == slot:
                if level == wrong_at:
                    continue
                tokens.append(truth[level])
                parents.append(parent)
                chosen = len(tokens) - 1
                continue
            tokens.append(others[k if k < slot else k - 1])
            parents.append(parent)
            under = len(tokens) - 1
            for _ in range(rng.randrange(3)):
                parents.append(rng.choice([under, len(tokens) - 1]))  # under the sibling or its last
                tokens.append(rng.randrange(VOCAB))
        if chosen < 0:
            break
        parent = chosen
    return Draft(tuple(tokens), tuple(parents))


# -- greedy identity ------------------------------------------------------------------------------

KINDS = ("empty", "random", "wrong", "oracle_path", "oracle_tree", "partial_tree", "lookup")


def make_drafter(kind: str, rng: random.Random, full: list[int]) -> Drafter:
    """``full`` is prompt + the reference output (longer than needed): the oracle's truth."""

    def truth(ctx: list[int]) -> list[int]:
        assert full[: len(ctx)] == ctx, "decoding left the greedy path"
        return full[len(ctx) :]

    if kind == "empty":
        return Scripted(lambda ctx: Draft())
    if kind == "random":
        return Scripted(lambda ctx: random_tree(rng, rng.randrange(0, 24)))
    if kind == "wrong":
        return Scripted(lambda ctx: path([(t + 1) % VOCAB for t in truth(ctx)[: rng.randrange(1, 8)]]))
    if kind == "oracle_path":
        return Scripted(lambda ctx: path(truth(ctx)[: rng.randrange(1, 12)]))
    if kind == "oracle_tree":
        return Scripted(lambda ctx: oracle_tree(rng, truth(ctx), rng.randrange(1, 9), rng.randrange(0, 4)))
    if kind == "partial_tree":
        return Scripted(
            lambda ctx: oracle_tree(rng, truth(ctx), 8, rng.randrange(1, 4), wrong_at=rng.randrange(0, 8))
        )
    return PromptLookupDrafter(max_ngram=3, max_spec=8)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("kind", KINDS)
def test_output_equals_greedy_with_any_drafter(model: LlamaForCausalLM, kind: str, seed: int) -> None:
    rng = random.Random(seed * 31 + KINDS.index(kind))
    prompt = [rng.randrange(VOCAB) for _ in range(rng.randrange(1, 12))]
    n = rng.randrange(0, 28)
    full = prompt + greedy_generate(model, prompt, n + 12)
    expected = full[len(prompt) : len(prompt) + n]
    for verify in ("tree", "chain"):
        decoder = SuffixDecoder(model, make_drafter(kind, rng, full), DecodeConfig(n, verify=verify))
        result = decoder.generate(("r", verify), prompt)
        assert list(result.tokens) == expected, (kind, verify)
        assert result.stop == "length"
        if n > 1 and (kind == "oracle_path" or (kind == "oracle_tree" and verify == "tree")):
            assert result.stats.steps < n  # the oracle's drafts really were accepted
        if kind in ("empty", "wrong"):
            assert result.stats.accepted_tokens == 0
            assert result.stats.steps == n
    if seed < 3 and n > 0:
        assert hf_greedy(model, prompt, n) == expected


def test_warmed_suffix_cache(model: LlamaForCausalLM) -> None:
    rng = random.Random(5)
    prompts = [[rng.randrange(VOCAB) for _ in range(rng.randrange(2, 10))] for _ in range(6)]
    cache = SuffixCache(config=SpeculationConfig(max_spec=16, mode="tree", min_token_prob=0.05))
    drafter = Recording(cache)
    typed: Drafter = cache  # SuffixCache satisfies the protocol structurally
    assert isinstance(typed, Drafter)
    accepted = {"tree": 0, "chain": 0}
    steps = {"tree": 0, "chain": 0}
    for round_ in range(2):  # the first round files the outputs in the global tree; the second reuses them
        for i, prompt in enumerate(prompts):
            expected = greedy_generate(model, prompt, 30)
            for verify in ("tree", "chain"):
                result = SuffixDecoder(model, drafter, DecodeConfig(30, verify=verify)).generate(
                    (round_, i, verify), prompt
                )
                assert list(result.tokens) == expected
                if round_ == 1:
                    accepted[verify] += result.stats.accepted_tokens
                    steps[verify] += result.stats.steps
            with pytest.raises(KeyError):
                cache.output((round_, i, "tree"))  # finished, not left open
    for verify in ("tree", "chain"):
        assert accepted[verify] > 0
        assert steps[verify] < 6 * 30 / 2  # more than two tokens per forward on a warmed cache
    assert any(not d.is_path() for d in drafter.drafts)  # trees were verified, not only paths
    assert hf_greedy(model, prompts[0], 30) == greedy_generate(model, prompts[0], 30)


def test_eos_inside_an_accepted_draft(model: LlamaForCausalLM) -> None:
    prompt = [3, 14, 15, 92, 65]
    ref = greedy_generate(model, prompt, 20)
    eos = ref[5]
    expected = ref[: ref.index(eos) + 1]
    assert len(expected) >= 2
    tree = oracle_tree(random.Random(0), ref, depth=12, siblings=2)
    for draft in (path(ref[:12]), tree):
        for verify in ("tree", "chain"):
            drafter = Scripted(lambda ctx, d=draft: d if len(ctx) == len(prompt) else Draft())
            cfg = DecodeConfig(20, verify=verify, eos_token_id=eos)
            result = SuffixDecoder(model, drafter, cfg).generate(0, prompt)
            assert list(result.tokens) == expected
            assert result.stop == "eos" and drafter.finished == [0]
            if verify == "tree" or draft.is_path():
                # EOS was accepted inside the first draft; what followed it was dropped
                assert result.stats.steps == 1 and result.stats.accepted_tokens > len(expected)
    assert greedy_generate(model, prompt, 20, eos) == expected
    assert hf_greedy(model, prompt, 20, eos) == expected


def test_max_new_tokens_mid_draft(model: LlamaForCausalLM) -> None:
    prompt = [7, 1, 8]
    full = prompt + greedy_generate(model, prompt, 20)
    drafter = Scripted(lambda ctx: path(full[len(ctx) : len(ctx) + 12]))
    result = SuffixDecoder(model, drafter, DecodeConfig(4)).generate(0, prompt)
    assert list(result.tokens) == full[3:7]
    assert result.stats.steps == 1 and result.stats.forwards == 2  # prefill + one verification
    assert result.stats.draft_tokens == 4  # the draft was pruned to the budget before the forward
    assert result.stop == "length"


def test_prompt_lookup_on_a_repetitive_prompt(model: LlamaForCausalLM) -> None:
    prompt = [5, 6, 7, 8] * 3 + [5]
    full = prompt + greedy_generate(model, prompt, 24)
    expected = full[len(prompt) :]
    result = SuffixDecoder(model, PromptLookupDrafter(), DecodeConfig(24)).generate(0, prompt)
    assert list(result.tokens) == expected
    assert result.stats.accepted_tokens > 0
    lookup = PromptLookupDrafter(max_spec=3)
    lookup.start(0, [1, 2, 3, 9, 1, 2])
    assert lookup.speculate(0).tokens == (3, 9, 1)  # after the latest earlier "1 2"


def test_sampling_is_reproducible(model: LlamaForCausalLM) -> None:
    prompt = [1, 2, 3]
    runs = [
        SuffixDecoder(model, SuffixCache(), DecodeConfig(20, temperature=1.0, seed=s))
        .generate(0, prompt)
        .tokens
        for s in (4, 4, 5)
    ]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert all(0 <= t < VOCAB for t in runs[2])


# -- the tree forward and the cache -----------------------------------------------------------------


def plain_logits(model: LlamaForCausalLM, tokens: Sequence[int]) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=torch.tensor([list(tokens)])).logits[0, -1]


def root_path(draft: Draft, i: int) -> list[int]:
    out = []
    while i >= 0:
        out.append(draft.tokens[i])
        i = draft.parents[i]
    return out[::-1]


@pytest.mark.parametrize("seed", range(4))
def test_tree_mask_logits_equal_plain_forwards(any_attn_model: LlamaForCausalLM, seed: int) -> None:
    rng = random.Random(seed)
    context = [rng.randrange(VOCAB) for _ in range(rng.randrange(1, 9))]
    draft = random_tree(rng, 14)
    with torch.inference_mode():
        cache = new_cache(any_attn_model)
        if len(context) > 1:
            any_attn_model(input_ids=torch.tensor([context[:-1]]), cache=cache, use_cache=True)
        logits = tree_logits(any_attn_model, cache, context[-1], draft)
        # Guard: the same tree fed with the default causal mask sees siblings, so the logits differ.
        wrong_cache = new_cache(any_attn_model)
        if len(context) > 1:
            any_attn_model(input_ids=torch.tensor([context[:-1]]), cache=wrong_cache, use_cache=True)
        wrong = any_attn_model(
            input_ids=torch.tensor([[context[-1], *draft.tokens]]),
            position_ids=tree_positions(draft.parents, len(context) - 1),
            cache=wrong_cache,
            use_cache=True,
        ).logits[0]
    assert torch.allclose(logits[0], plain_logits(any_attn_model, context))
    for i in range(len(draft)):
        assert torch.allclose(logits[1 + i], plain_logits(any_attn_model, context + root_path(draft, i))), i
    siblings_seen = [i for i in range(len(draft)) if draft.parents[i] != i - 1]
    assert siblings_seen and not torch.allclose(wrong[1:], logits[1:])


def test_boolean_mask_is_misread_by_eager_attention() -> None:
    """Why the tree mask is additive: transformers' eager attention adds a 4D mask to the scores."""
    eager = tiny_llama(VOCAB, seed=1, attn="eager")
    tokens = torch.tensor([[4, 5, 6, 7]])
    allowed = torch.tril(torch.ones(4, 4, dtype=torch.bool))[None, None]
    additive = torch.zeros(allowed.shape, dtype=torch.float64).masked_fill(
        ~allowed, torch.finfo(torch.float64).min
    )
    with torch.inference_mode():
        plain = eager(input_ids=tokens).logits
        good = eager(input_ids=tokens, attention_mask=additive).logits
        bad = eager(input_ids=tokens, attention_mask=allowed).logits
    assert torch.allclose(good, plain) and not torch.allclose(bad, plain)
    mask = tree_attention_mask((-1, 0, -1), past=2, dtype=torch.float64)
    assert mask.shape == (1, 1, 4, 6) and mask.dtype == torch.float64
    seen = (mask[0, 0] == 0).int().tolist()
    assert seen == [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 1]]


@pytest.mark.parametrize("seed", range(4))
def test_cache_after_tree_acceptance_equals_plain_cache(model: LlamaForCausalLM, seed: int) -> None:
    rng = random.Random(100 + seed)
    context = [rng.randrange(VOCAB) for _ in range(rng.randrange(2, 9))]
    truth = greedy_generate(model, context, 8)
    draft = oracle_tree(rng, truth, depth=6, siblings=2, wrong_at=None if seed % 2 else 4)
    with torch.inference_mode():
        cache = new_cache(model)
        model(input_ids=torch.tensor([context[:-1]]), cache=cache, use_cache=True)
        verdict = verify_draft(model, cache, context[-1], draft)
        assert list(verdict.emitted) == truth[: len(verdict.emitted)]
        assert len(verdict.tokens) == (6 if seed % 2 else 4)
        assert verdict.nodes != tuple(range(len(verdict.nodes)))  # a gather, not only a crop
        plain = new_cache(model)
        model(input_ids=torch.tensor([context + list(verdict.tokens)]), cache=plain, use_cache=True)
    assert cache.get_seq_length() == len(context) + len(verdict.tokens)
    for mine, ref in zip(cache.layers, plain.layers, strict=True):
        assert mine.keys.shape == ref.keys.shape
        assert torch.allclose(mine.keys, ref.keys) and torch.allclose(mine.values, ref.values)


def test_chain_verification_crops_the_cache(model: LlamaForCausalLM) -> None:
    context = [9, 8, 7, 6]
    truth = greedy_generate(model, context, 6)
    draft = path([*truth[:3], (truth[3] + 1) % VOCAB, 1, 2])
    with torch.inference_mode():
        cache = new_cache(model)
        model(input_ids=torch.tensor([context[:-1]]), cache=cache, use_cache=True)
        verdict = verify_draft(model, cache, context[-1], draft)
    assert verdict == Acceptance((0, 1, 2), tuple(truth[:3]), truth[3])
    assert cache.get_seq_length() == len(context) + 3


# -- the draft helpers ----------------------------------------------------------------------------------


def test_draft_helpers() -> None:
    tree = Draft((10, 11, 12, 13, 14), (-1, -1, 0, 2, 1))
    assert children(tree.parents) == [[0, 1], [2], [4], [3], [], []]
    assert first_path(tree) == Draft((10, 12, 13), (-1, 0, 1))
    assert prune_depth(tree, 2) == Draft((10, 11, 12, 14), (-1, -1, 0, 1))
    assert prune_depth(tree, 0) == Draft()
    logits = torch.zeros(6, 20)
    for row, best in enumerate((11, 0, 14, 0, 0, 7)):  # row 1 + i: after node i
        logits[row, best] = 1.0
    assert accept_greedy(logits, tree) == Acceptance((1, 4), (11, 14), 7)


# -- rejection sampling keeps the model's distribution ------------------------------------------------

SMALL = 8
RUNS = 4000
DECODE_RUNS = 1500


def _no_residual(logits: torch.Tensor, draft: Draft, temperature: float, gen: torch.Generator) -> Acceptance:
    """A plausible bug: accept child c with probability p(c), but never take rejected mass out."""
    kids = children(draft.parents)
    nodes: list[int] = []
    row = 0
    while True:
        p = torch.softmax(logits[row] / temperature, dim=-1)
        nxt = next(
            (c for c in kids[row] if float(torch.rand((), generator=gen)) < float(p[draft.tokens[c]])), None
        )
        if nxt is None:
            return Acceptance(
                tuple(nodes),
                tuple(draft.tokens[i] for i in nodes),
                int(torch.multinomial(p, 1, generator=gen)),
            )
        nodes.append(nxt)
        row = nxt + 1


def _always_accept(
    logits: torch.Tensor, draft: Draft, temperature: float, gen: torch.Generator
) -> Acceptance:
    kids = children(draft.parents)
    nodes: list[int] = []
    row = 0
    while kids[row]:
        nodes.append(kids[row][0])
        row = kids[row][0] + 1
    p = torch.softmax(logits[row] / temperature, dim=-1)
    return Acceptance(
        tuple(nodes), tuple(draft.tokens[i] for i in nodes), int(torch.multinomial(p, 1, generator=gen))
    )


Scheme = Callable[[torch.Tensor, Draft, float, torch.Generator], Acceptance]


@dataclass(frozen=True)
class SmallWorld:
    """An 8-token model, a context, the exact distribution of the next two tokens and a draft tree."""

    model: LlamaForCausalLM
    context: list[int]
    p2: torch.Tensor  # p2[x]: the distribution after context + x
    exact: list[float]  # exact[8 * x + y]: probability of x then y
    draft: Draft
    logits: torch.Tensor  # the tree-verification logits of the draft after the context


@pytest.fixture(scope="module")
def small() -> SmallWorld:
    model = tiny_llama(SMALL, seed=3, head_scale=6.0)
    context = [1, 2, 3]
    with torch.inference_mode():
        p1 = torch.softmax(model(input_ids=torch.tensor([context])).logits[0, -1], -1)
        nexts = torch.tensor([[*context, x] for x in range(SMALL)])
        p2 = torch.softmax(model(input_ids=nexts).logits[:, -1], -1)
        order = p1.argsort(descending=True).tolist()
        a, b, rare = order[0], order[1], order[-1]
        below_a = p2[a].argsort(descending=True).tolist()
        # likely and unlikely children, a duplicate sibling, and a second level under two of them
        draft = Draft((rare, a, b, a, below_a[-1], below_a[0], rare), (-1, -1, -1, -1, 1, 1, 2))
        cache = new_cache(model)
        model(input_ids=torch.tensor([context[:-1]]), cache=cache, use_cache=True)
        logits = tree_logits(model, cache, context[-1], draft)
    exact = (p1[:, None] * p2).flatten().tolist()
    return SmallWorld(model, context, p2, exact, draft, logits)


def _pvalue(pairs: list[tuple[int, int]], exact: list[float]) -> float:
    """Chi-square p-value of the observed (first, second) pairs against ``exact``."""
    runs = len(pairs)
    counts = [0] * len(exact)
    for x, y in pairs:
        counts[x * SMALL + y] += 1
    # merge the cells expected below 5 so the chi-square approximation holds
    big = [i for i in range(len(exact)) if exact[i] * runs >= 5]
    rest = [i for i in range(len(exact)) if exact[i] * runs < 5]
    observed = [counts[i] for i in big] + [sum(counts[i] for i in rest)]
    expected = [exact[i] for i in big] + [sum(exact[i] for i in rest)]
    return float(chisquare(observed, [e * runs / sum(expected) for e in expected]).pvalue)


def _first_two_pvalue(small: SmallWorld, scheme: Scheme) -> float:
    gen = torch.Generator().manual_seed(1234)
    pairs = []
    for _ in range(RUNS):
        out = scheme(small.logits, small.draft, 1.0, gen).emitted
        if len(out) < 2:  # the next step: a one-token draft verified against the model after out[0]
            x = out[0]
            step = torch.log(small.p2[x]).expand(2, -1)
            out = (x, scheme(step, path([(x + 1) % SMALL]), 1.0, gen).emitted[0])
        pairs.append((out[0], out[1]))
    return _pvalue(pairs, small.exact)


def test_rejection_sampling_preserves_the_distribution(small: SmallWorld) -> None:
    assert _first_two_pvalue(small, accept_sampled) > 0.001


@pytest.mark.parametrize("scheme", [_no_residual, _always_accept])
def test_the_chi_square_test_catches_wrong_schemes(small: SmallWorld, scheme: Scheme) -> None:
    assert _first_two_pvalue(small, scheme) < 1e-6


def test_sampled_decoding_has_the_models_distribution(small: SmallWorld) -> None:
    """The whole loop at temperature 1 (tree verification, cache compaction, the bonus as the next
    pending token), seeded per run."""
    n = len(small.context)
    drafter = Scripted(lambda ctx: small.draft if len(ctx) == n else path([(ctx[-1] + 1) % SMALL]))
    pairs = []
    accepted = 0
    for seed in range(DECODE_RUNS):
        result = SuffixDecoder(small.model, drafter, DecodeConfig(2, temperature=1.0, seed=seed)).generate(
            seed, small.context
        )
        pairs.append((result.tokens[0], result.tokens[1]))
        accepted += result.stats.accepted_tokens
    assert accepted > DECODE_RUNS / 4  # the likely children really were accepted
    assert _pvalue(pairs, small.exact) > 0.001


# -- bad input ----------------------------------------------------------------------------------------


def test_bad_input(model: LlamaForCausalLM) -> None:
    with pytest.raises(ValueError, match="empty"):
        SuffixDecoder(model, SuffixCache()).generate(0, [])
    with pytest.raises(ValueError, match="empty"):
        greedy_generate(model, [], 4)
    with pytest.raises(ValueError, match="max_new_tokens"):
        DecodeConfig(max_new_tokens=-1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_generate(model, [1], -1)
    with pytest.raises(ValueError, match="verify"):
        DecodeConfig(verify="beam")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prompt token ids"):
        SuffixDecoder(model, SuffixCache()).generate(0, [VOCAB])
    for bad in (
        Draft((1, 2), (-1, 1)),  # its own parent
        Draft((1, 2), (1, -1)),  # parent after child
        Draft((1,), (-2,)),
        Draft((1, 2), (-1,)),  # lengths differ
        Draft((VOCAB,), (-1,)),  # outside the vocabulary
    ):
        with pytest.raises(ValueError, match="draft"):
            check_draft(bad, VOCAB)
        drafter = Scripted(lambda ctx, bad=bad: bad)
        with pytest.raises(ValueError, match="draft"):
            SuffixDecoder(model, drafter, DecodeConfig(4)).generate(0, [1, 2])
        assert drafter.cancelled == [0] and drafter.finished == []
    with pytest.raises(ValueError, match="temperature"):
        accept_sampled(torch.zeros(1, 4), Draft(), 0.0, torch.Generator())
    with pytest.raises(ValueError):
        PromptLookupDrafter(max_ngram=1, min_ngram=2)
    empty = SuffixDecoder(model, SuffixCache(), DecodeConfig(0)).generate(0, [1, 2])
    assert empty.tokens == () and empty.stats.forwards == 0
