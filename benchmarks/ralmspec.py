"""RaLMSpec benchmark: iterative retrieval-augmented generation, baseline against speculative.

    python benchmarks/ralmspec.py [--quick] [--passages N] [--requests R] [--out FILE]

For each retriever (exact dense = faiss flat, HNSW, BM25) over the same passages: ``R`` requests,
each run by the baseline (a real retrieval every ``stride`` tokens) and by speculative retrieval
(per-request cache, OS3 stride scheduler, verification overlapped on a worker thread), in the
same process, alternating request by request so that load from elsewhere hits both alike (and
which of the two goes first, so that neither always finds the caches warm). One
more request goes first, checked for identical output but not timed (first-call costs; the
scheduler, shared by a retriever's requests as in a server, takes its first measurements).
Reported: whether every output is token-for-token identical (and every step's document),
end-to-end speedup (sum of baseline seconds over sum of speculative seconds), speculation
acceptance, the strides the scheduler chose, and how many steps it left to plain retrieval
(stride 0: speculation would not pay).

Passages and their MiniLM embeddings come from ``benchmarks/passages.py`` (cached on disk;
full: 1,000,000 passages; quick: the first 50,000). The model is the tiny Llama of
``tgrag.llm.tiny`` (2 layers, hidden 128), its tokenizer and weights trained for 300 steps on
the first 20,000 passages (``train_tiny_llama``, about 20 s; kept in ``.cache/ralmspec-model``).
A random-init model would not do: under greedy decoding it repeats one token, every query soon
becomes the same string, and speculation looks perfect for the wrong reason. Queries are encoded
with MiniLM one at a time. torch and faiss get one thread each, so generation and the overlapped verification
each have a core. The last line printed is one JSON object with the keys ``identical``,
``speedup_exact``, ``speedup_hnsw``, ``speedup_bm25``, ``acceptance``, ``strides``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# One BLAS thread: generation and the overlapped verification each get one of the cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
from report import emit, run_info  # noqa: E402

KINDS = ("exact", "hnsw", "bm25")


def prompts_from(passages: list[str], count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.sample(passages[:50_000], 2)) for _ in range(count)]


def trained_model(cache: Path, texts: list[str]) -> Path:
    """The tiny Llama trained on the first 20,000 passages, trained once and kept under ``cache``."""
    from tgrag.llm.tiny import train_tiny_llama

    recipe = {"texts": 20_000, "steps": 300, "seq_len": 128, "batch_size": 16, "seed": 0}
    folder = cache / "ralmspec-model"
    meta = folder / "recipe.json"
    if meta.exists() and json.loads(meta.read_text()) == recipe:
        return folder
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        built = train_tiny_llama(
            Path(tmp) / "model",
            texts[: recipe["texts"]],
            steps=recipe["steps"],
            seq_len=recipe["seq_len"],
            batch_size=recipe["batch_size"],
            seed=recipe["seed"],
        )
        (built / "recipe.json").write_text(json.dumps(recipe))
        if folder.exists():
            shutil.rmtree(folder)
        built.replace(folder)  # whole or not at all: the recipe file is written inside first
    print(f"model trained in {time.perf_counter() - started:.1f} s", flush=True)
    return folder


def make(kind: str, passages: list[str], vectors: np.ndarray, encode: Any) -> Any:
    from speculation import BM25Retriever, DenseRetriever

    if kind == "bm25":
        return BM25Retriever(passages)
    return DenseRetriever(
        vectors,
        encode,
        kind="flat" if kind == "exact" else "hnsw",
        texts=passages,
        threads=1,
        # Exact search screened in bf16 with a certified bound (DenseRetriever's docstring): the
        # same top-k as float32 faiss, and a batch of queries costs little more than one.
        screen="bf16" if kind == "exact" else None,
    )


def run_kind(
    kind: str, retriever: Any, generator: Any, prompts: list[str], config: Any, warmup: int
) -> dict[str, Any]:
    """Baseline and speculative on each prompt in turn; the first ``warmup`` are checked, not timed."""
    from speculation import OS3Scheduler, SpeculativeRetriever, baseline, speculative

    spec = SpeculativeRetriever(retriever, prefetch=20, scheduler=OS3Scheduler(max_stride=16))
    base_s = spec_s = 0.0
    identical = True
    speculated = rollbacks = plain = 0
    strides: list[int] = []
    # Encoded queries are cached inside a dense retriever; each run must pay for its own.
    forget = getattr(retriever, "forget_queries", lambda: None)
    for n, prompt in enumerate(prompts):
        # Alternate which goes first: the second run of a prompt finds warmer CPU caches.
        runs = {}
        for name in ("baseline", "speculative") if n % 2 == 0 else ("speculative", "baseline"):
            forget()
            if name == "baseline":
                runs[name] = baseline(generator, retriever, prompt, config)
            else:
                runs[name] = speculative(generator, spec, prompt, config, asynchronous=True)
        b, s = runs["baseline"], runs["speculative"]
        identical &= b.tokens == s.tokens and b.docs == s.docs
        if n < warmup:
            continue  # untimed: first-call costs, and the scheduler's first measurements
        base_s += b.seconds
        spec_s += s.seconds
        speculated += s.speculated
        rollbacks += s.rollbacks
        plain += s.retrievals - len(s.batches)
        strides += list(s.batches)
    return {
        "identical": identical,
        "requests": len(prompts) - warmup,
        "warmup_requests": warmup,
        "plain_steps": plain,
        "speculated_steps": speculated,
        "baseline_seconds": round(base_s, 3),
        "speculative_seconds": round(spec_s, 3),
        "speedup": round(base_s / spec_s, 3) if spec_s else None,
        "acceptance": round(1 - rollbacks / speculated, 3) if speculated else None,
        "mean_stride": round(float(np.mean(strides)), 2) if strides else None,
        "strides": sorted(set(strides)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="50,000 passages, fewer requests")
    p.add_argument("--passages", type=int, help="passages to search (default 1,000,000; quick 50,000)")
    p.add_argument("--requests", type=int, help="requests per retriever (default 20; quick 4)")
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "passages")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    count = args.passages or (50_000 if args.quick else 1_000_000)
    requests = args.requests or (4 if args.quick else 20)

    import passages as corpus
    import torch

    from speculation import HFGenerator, RalmConfig
    from tgrag.embed import create_embedder

    torch.set_num_threads(1)
    started = time.perf_counter()
    full_cache = args.cache / "meta.json"
    if full_cache.exists() and json.loads(full_cache.read_text())["count"] >= count:
        texts, vectors = corpus.load(args.cache, json.loads(full_cache.read_text())["count"], limit=count)
    else:  # a cache of just what is asked for (the quick run on a fresh machine embeds 50,000)
        texts, vectors = corpus.load(args.cache.with_name(f"passages-{count}"), count)
    print(f"{len(texts):,} passages ready in {time.perf_counter() - started:.1f} s", flush=True)
    embedder = create_embedder("minilm")

    def encode(queries: list[str]) -> np.ndarray:
        return np.asarray(embedder.embed(queries), dtype=np.float32)

    config = RalmConfig(stride=4, query_tokens=32, max_new_tokens=64 if not args.quick else 32)
    result: dict[str, Any] = {
        **run_info(args.quick),
        "passages": len(texts),
        "requests": requests,
        "model": "tiny Llama (tgrag.llm.tiny), 2 layers, trained 300 steps on 20,000 passages",
        "config": {
            "stride": config.stride,
            "query_tokens": config.query_tokens,
            "max_new_tokens": config.max_new_tokens,
        },
        "retrievers": {},
    }
    generator = HFGenerator(trained_model(args.cache.parent, texts), threads=1)
    prompts = prompts_from(texts, requests + 1, seed=0)  # one warm-up request
    for kind in [k for k in args.kinds.split(",") if k]:
        t0 = time.perf_counter()
        retriever = make(kind, texts, vectors, encode)
        print(
            f"{kind}: index built in {time.perf_counter() - t0:.1f} s; {requests} requests ...",
            flush=True,
        )
        result["retrievers"][kind] = run_kind(kind, retriever, generator, prompts, config, warmup=1)
        print(f"  {result['retrievers'][kind]}", flush=True)
        del retriever  # the next index gets the memory (1M passages: about 1.5 GB a copy)
    r = result["retrievers"]
    result.update(
        identical=all(v["identical"] for v in r.values()),
        speedup_exact=r.get("exact", {}).get("speedup"),
        speedup_hnsw=r.get("hnsw", {}).get("speedup"),
        speedup_bm25=r.get("bm25", {}).get("speedup"),
        acceptance={k: v["acceptance"] for k, v in r.items()},
        strides={k: v["strides"] for k, v in r.items()},
    )
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
