"""SuffixDecoding benchmark: suffix-tree speculative decoding against greedy and prompt lookup.

    python benchmarks/suffix_decoding.py [--quick] [--requests R] [--cached N] [--out FILE]

The workload is tgrag's own (``benchmarks/agentic_workload.py``): LLM-extraction JSON over
similar chunks, Auto-RAG answers to questions that come back, templated edits. The model is the
tiny Llama of ``tgrag.llm.tiny`` with its tokenizer and weights trained here on that workload's
prompts and replies (``train_tiny_llama``; kept in ``.cache/suffix-model``; ``--quick`` trains
a shorter recipe, ``.cache/suffix-model-quick``, to fit its 3 minutes), so its greedy
output looks like the workload's (JSON, quoted evidence) and ends with ``</s>``; a random-init
model loops on one token, which any suffix or n-gram speculation guesses perfectly: not used.

Each of ``R`` unseen requests is decoded, in the same process and alternating the order
request by request, by: plain greedy (our loop: one forward per token with the KV cache; and
``model.generate``), transformers' prompt lookup (``prompt_lookup_num_tokens=10``), and
SuffixDecoding (``speculation.SuffixDecoder`` over one ``SuffixCache`` that learns from the
outputs as requests go by, in tree and in chain verification). Outputs must be identical.
Speedups are against the faster of the two greedy runs and against prompt lookup.

Tree speed: the time spent inside the suffix cache (speculate + append + filing the output)
per generated token in the tree run; and a stress run with ``N`` cached responses (the
workload's replies, cycled; full: 10,000) at depth 64, replaying further replies token by token
(speculate, accept what matches, append). The last line printed is one JSON object with the
keys ``identical``, ``speedup_vs_greedy``, ``speedup_vs_prompt_lookup``,
``mean_accepted_tokens``, ``us_per_token_tree``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import agentic_workload  # noqa: E402
from report import emit, run_info  # noqa: E402

from speculation.suffix_tree import SpeculationConfig, SuffixCache  # noqa: E402

RECIPE = {"requests": 1200, "steps": 500, "seq_len": 384, "batch_size": 8, "seed": 0}
# --quick on a fresh machine must train too and still finish in 3 minutes: fewer, shorter steps.
QUICK_RECIPE = {**RECIPE, "steps": 500, "seq_len": 256}
TRAIN = RECIPE["requests"]  # the first requests train the model; the rest are never trained on
WORKLOAD = TRAIN + 400  # one fixed workload, whatever the options, so the cached model fits it


def prompt_ids(tok: Any, r: agentic_workload.Request) -> list[int]:
    """The request's messages under the chat template, ready for the assistant's reply."""
    conv = [{"role": m.role, "content": m.content} for m in r.messages]
    text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    return list(tok(text, add_special_tokens=False)["input_ids"])


def trained_model(cache: Path, requests: list[agentic_workload.Request], recipe: dict[str, int]) -> Path:
    """The tiny Llama trained on the workload's first requests (prompt and reply), kept in ``cache``."""
    from tgrag.llm.tiny import CHAT_TEMPLATE, train_tiny_llama

    folder = cache / ("suffix-model" if recipe == RECIPE else "suffix-model-quick")
    meta = folder / "recipe.json"
    if meta.exists() and json.loads(meta.read_text()) == recipe:
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    texts = [_plain_render(CHAT_TEMPLATE, r) for r in requests[:TRAIN]]
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        built = train_tiny_llama(
            Path(tmp) / "model",
            texts,
            steps=int(recipe["steps"]),
            seq_len=int(recipe["seq_len"]),
            batch_size=int(recipe["batch_size"]),
            seed=int(recipe["seed"]),
        )
        (built / "recipe.json").write_text(json.dumps(recipe))
        if folder.exists():
            shutil.rmtree(folder)
        built.replace(folder)
    print(f"model trained in {time.perf_counter() - started:.1f} s", flush=True)
    return folder


def _plain_render(template: str, r: agentic_workload.Request) -> str:
    """The chat template applied without a tokenizer (the tokenizer is trained on these texts)."""
    import jinja2

    msgs = [{"role": m.role, "content": m.content} for m in r.messages]
    msgs.append({"role": "assistant", "content": r.reply})
    return jinja2.Template(template).render(messages=msgs, add_generation_prompt=False)


class TimedCache:
    """A ``SuffixCache`` that adds up the seconds spent in it (the tree's own cost)."""

    def __init__(self, cache: SuffixCache) -> None:
        self.cache = cache
        self.seconds = 0.0

    def _timed(self, fn: Any, *args: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds += time.perf_counter() - t

    def start(self, rid: object, prompt: Any) -> None:
        self._timed(self.cache.start, rid, prompt)

    def append(self, rid: object, tokens: Any) -> None:
        self._timed(self.cache.append, rid, tokens)

    def speculate(self, rid: object) -> Any:
        return self._timed(self.cache.speculate, rid)

    def finish(self, rid: object) -> None:
        self._timed(self.cache.finish, rid)

    def cancel(self, rid: object) -> None:
        self.cache.cancel(rid)


def run_decoding(
    model_dir: Path,
    requests: list[agentic_workload.Request],
    warmup: list[agentic_workload.Request],
    max_new: int,
    spec: SpeculationConfig,
) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from speculation.suffix_decoding import DecodeConfig, SuffixDecoder, greedy_generate

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    eos = tok.eos_token_id
    model.generation_config.eos_token_id = eos
    caches = {
        "suffix_tree": TimedCache(SuffixCache(max_depth=64, max_cached=10_000, config=spec)),
        "suffix_chain": TimedCache(SuffixCache(max_depth=64, max_cached=10_000, config=spec)),
    }
    decoders = {
        "suffix_tree": SuffixDecoder(
            model, caches["suffix_tree"], DecodeConfig(max_new, "tree", eos_token_id=eos)
        ),
        "suffix_chain": SuffixDecoder(
            model, caches["suffix_chain"], DecodeConfig(max_new, "chain", eos_token_id=eos)
        ),
    }

    def hf(ids: list[int], **kw: Any) -> list[int]:
        with torch.inference_mode():
            x = torch.tensor([ids])
            # An explicit mask: without one, generate() takes prompt tokens equal to the pad id for padding.
            mask = torch.ones_like(x)
            out = model.generate(x, attention_mask=mask, max_new_tokens=max_new, do_sample=False, **kw)
        return [int(t) for t in out[0, len(ids) :]]

    plain: dict[str, Any] = {
        "greedy": lambda ids: greedy_generate(model, ids, max_new, eos),
        "hf_greedy": lambda ids: hf(ids),
        "prompt_lookup": lambda ids: hf(ids, prompt_lookup_num_tokens=10),
    }
    # A running service's cache has seen earlier outputs: both suffix caches first decode the
    # warm-up requests (untimed, never the measured ones).
    for w, r in enumerate(warmup):
        ids = prompt_ids(tok, r)
        for decoder in decoders.values():
            decoder.generate(f"warmup-{w}", ids)
    for cache in caches.values():
        cache.seconds = 0.0
    names = [*plain, *decoders]
    seconds = dict.fromkeys(names, 0.0)
    identical = True
    tokens = 0
    steps = dict.fromkeys(decoders, 0)
    accepted = dict.fromkeys(decoders, 0)
    for i, r in enumerate(requests):
        ids = prompt_ids(tok, r)
        outs = {}
        order = names[i % len(names) :] + names[: i % len(names)]  # rotate who goes first
        for name in order:
            t = time.perf_counter()
            if name in decoders:
                res = decoders[name].generate(i, ids)
                outs[name] = list(res.tokens)
                steps[name] += res.stats.steps
                accepted[name] += res.stats.accepted_tokens
            else:
                outs[name] = plain[name](ids)
            seconds[name] += time.perf_counter() - t
        ref = outs["greedy"]
        identical &= all(o == ref for o in outs.values())
        tokens += len(ref)
        if i % 10 == 0:
            print(f"  request {i}: {len(ref)} tokens, identical so far {identical}", flush=True)
    greedy = min(seconds["greedy"], seconds["hf_greedy"])
    return {
        "requests": len(requests),
        "warmup_requests": len(warmup),
        "tokens": tokens,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "identical": identical,
        "speedup_vs_greedy": {k: round(greedy / seconds[k], 3) for k in steps},
        "speedup_vs_prompt_lookup": {k: round(seconds["prompt_lookup"] / seconds[k], 3) for k in steps},
        "prompt_lookup_vs_greedy": round(greedy / seconds["prompt_lookup"], 3),
        "mean_accepted_tokens": {k: round(accepted[k] / max(steps[k], 1), 3) for k in steps},
        "tokens_per_forward": {k: round(tokens / max(steps[k], 1), 3) for k in steps},
        "us_per_token_in_cache": {k: round(c.seconds / max(tokens, 1) * 1e6, 1) for k, c in caches.items()},
        "sample_output": tok.decode(ref[:80]),
    }


def tree_stress(model_dir: Path, cached: int, replay: int) -> dict[str, Any]:
    """Per-token cost of the suffix cache with ``cached`` responses filed, replaying ``replay`` more.

    The responses are the replies of a workload of their own (seed 1): distinct requests.
    """
    import resource

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    requests = agentic_workload.build(cached + replay, seed=1)
    replies = [tok(r.reply + "</s>", add_special_tokens=False)["input_ids"] for r in requests]
    prompts = [prompt_ids(tok, r) for r in requests]
    fill, test = replies[:cached], list(range(cached, len(replies)))
    out: dict[str, Any] = {
        "cached": cached,
        "depth": 64,
        "distinct_replies": len({r.reply for r in requests}),
    }
    for mode in ("tree", "path"):
        cache = SuffixCache(max_depth=64, max_cached=cached, config=SpeculationConfig(max_spec=32, mode=mode))
        t = time.perf_counter()
        for k in range(cached):
            cache.add_output(fill[k])
        filled = time.perf_counter() - t
        t = time.perf_counter()
        generated = speculations = hits = 0
        for j in test:
            target = replies[j]
            cache.start(j, prompts[j])
            pos = 0
            while pos < len(target):
                d = cache.speculate(j)
                speculations += 1
                node, k = -1, 0  # accept what the target continues with, down the draft tree
                while pos + k < len(target):
                    nxt = [c for c, p in enumerate(d.parents) if p == node and d.tokens[c] == target[pos + k]]
                    if not nxt:
                        break
                    node, k = nxt[0], k + 1
                hits += k
                cache.append(j, target[pos : pos + k + 1])
                pos += k + 1
            cache.finish(j)
            generated += len(target)
        spent = time.perf_counter() - t
        out[mode] = {
            "fill_s": round(filled, 1),
            "fill_us_per_token": round(filled / sum(map(len, fill)) * 1e6, 2),
            "explicit_nodes": cache.global_tree.nodes,
            "us_per_token": round(spent / generated * 1e6, 1),
            "accepted_per_speculation": round(hits / speculations, 2),
        }
        print(f"  tree stress {mode}: {out[mode]}", flush=True)
        del cache
    out["max_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer requests, 2,000 cached responses")
    p.add_argument("--requests", type=int, help="requests decoded by every method (default 60; quick 12)")
    p.add_argument(
        "--cached", type=int, help="responses in the stress run's cache (default 10,000; quick 2,000)"
    )
    p.add_argument("--warmup", type=int, help="requests the suffix caches see first (default 40; quick 10)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--alpha", type=float, default=2.0, help="draft budget per matched token")
    p.add_argument("--offset", type=float, default=1.0, help="draft budget added to alpha * match")
    p.add_argument("--min-token-prob", type=float, default=0.1)
    p.add_argument("--cache", type=Path, default=ROOT / ".cache")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    n = args.requests or (12 if args.quick else 60)
    cached = args.cached or (2_000 if args.quick else 10_000)
    started = time.perf_counter()
    warm = args.warmup if args.warmup is not None else (10 if args.quick else 40)
    if n + warm > WORKLOAD - TRAIN:
        p.error(f"requests + warmup: at most {WORKLOAD - TRAIN}")
    requests = agentic_workload.build(WORKLOAD, seed=0)
    recipe = QUICK_RECIPE if args.quick else RECIPE
    model_dir = trained_model(args.cache, requests, recipe)
    result: dict[str, Any] = {
        **run_info(args.quick),
        "command": " ".join(
            ["python", "benchmarks/suffix_decoding.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "model": {"kind": "tiny Llama trained on the workload", **recipe},
    }
    print(f"decoding {n} requests with 5 methods ...", flush=True)
    result["decoding"] = run_decoding(
        model_dir,
        requests[TRAIN : TRAIN + n],
        requests[TRAIN + n : TRAIN + n + warm],
        args.max_new_tokens,
        SpeculationConfig(
            max_spec=32, alpha=args.alpha, offset=args.offset, min_token_prob=args.min_token_prob
        ),
    )
    print(f"  {result['decoding']}", flush=True)
    result["tree_stress"] = tree_stress(model_dir, cached, replay=100)
    d = result["decoding"]
    result.update(
        identical=d["identical"],
        speedup_vs_greedy=d["speedup_vs_greedy"]["suffix_tree"],
        speedup_vs_prompt_lookup=d["speedup_vs_prompt_lookup"]["suffix_tree"],
        mean_accepted_tokens=d["mean_accepted_tokens"]["suffix_tree"],
        us_per_token_tree=result["tree_stress"]["tree"]["us_per_token"],
        wall_s=round(time.perf_counter() - started, 1),
    )
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
