"""RaLMSpec benchmark: iterative retrieval-augmented generation, baseline against speculative.

    python benchmarks/ralmspec.py [--quick] [--passages N] [--requests R] [--out FILE]

For each retriever (exact dense = faiss flat, HNSW, BM25) over the same passages: ``R`` requests,
each run by the baseline (a real retrieval every ``stride`` tokens) and by speculative retrieval
(per-request cache, OS3 stride scheduler) twice: overlapped on a worker thread ("async", the
headline ``speedup_*``) and verifying on the generating thread ("sync", ``speedup_sync``), in the
same process, request by request so that load from elsewhere hits all alike (rotating which
goes first, so that none always finds the caches warm). One
more request goes first, checked for identical output but not timed (first-call costs; the
scheduler, shared by a retriever's requests as in a server, takes its first measurements).
Reported: whether every output is token-for-token identical (and every step's document),
end-to-end speedup (sum of baseline seconds over sum of speculative seconds), speculation
acceptance, the strides the scheduler chose, and how many steps it left to plain retrieval
(stride 0: speculation would not pay).

Passages and their MiniLM embeddings come from ``benchmarks/passages.py`` (cached on disk;
full: 1,000,000 passages; quick: the first 50,000); from 200,000 passages on, the HNSW graph is
kept there too. The model is the tiny Llama of
``tgrag.llm.tiny`` (2 layers, hidden 128), its tokenizer and weights trained for 300 steps on
the first 20,000 passages (``train_tiny_llama``, about 20 s; kept in ``.cache/ralmspec-model``).
A random-init model would not do: under greedy decoding it repeats one token, every query soon
becomes the same string, and speculation looks perfect for the wrong reason. Queries are encoded
with MiniLM one at a time, on bf16 weights (``QUERY_ENCODER``). torch and faiss get one thread each, so generation and the overlapped verification
each have a core. The last line printed is one JSON object with the keys ``identical``,
``speedup_exact``, ``speedup_hnsw``, ``speedup_bm25``, ``speedup_sync``, ``acceptance``,
``strides``.
"""

from __future__ import annotations

import argparse
import hashlib
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
PREFETCH = 100  # ids a real retrieval puts in the request's cache
# Queries are encoded by MiniLM on bf16 weights (AMX): 13 ms a query against 19 ms in float32
# here, for the baseline and speculation alike; vectors within 1e-4 of float32's in cosine.
QUERY_ENCODER = "minilm:bf16-weights"


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


HNSW_M = 32


def hnsw_graph(cache: Path | None, vectors: np.ndarray) -> Any:
    """faiss HNSW (M 32) over ``vectors``, kept under ``cache`` once built (7 minutes at 1M)."""
    import faiss

    # Named by a fingerprint of the vectors too: a graph over other vectors of the same count
    # would load without complaint and answer for the wrong corpus.
    sample = np.ascontiguousarray(vectors[:: max(1, len(vectors) // 256)], dtype=np.float32)
    tag = hashlib.sha256(sample.tobytes()).hexdigest()[:12]
    path = None if cache is None else cache / f"hnsw-{len(vectors)}-m{HNSW_M}-{tag}.faiss"
    if path is not None and path.exists():
        return faiss.read_index(str(path))
    index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    if path is not None:
        tmp = path.with_suffix(".tmp")
        faiss.write_index(index, str(tmp))
        tmp.replace(path)  # whole or not at all
    return index


def make(kind: str, passages: list[str], vectors: np.ndarray, encode: Any, cache: Path | None = None) -> Any:
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
        hnsw_m=HNSW_M,
        index=hnsw_graph(cache, vectors) if kind == "hnsw" else None,
    )


MODES = {"sync": False, "async": True}  # verification on the generating thread, or overlapped


def run_kind(
    kind: str, retriever: Any, generator: Any, prompts: list[str], config: Any, warmup: int
) -> dict[str, Any]:
    """Baseline and speculative (synchronous and asynchronous verification) on each prompt in
    turn, in a rotating order; the first ``warmup`` prompts are checked, not timed."""
    from speculation import OS3Scheduler, SpeculativeRetriever, baseline, speculative

    # A deep prefetch: at 1M passages the true top-1 of the next step was among the top 20 of
    # the earlier steps' queries 68% of the time, among the top 100 77% (12 requests). HNSW's
    # top-1 is stable only up to its beam width.
    stable = getattr(retriever, "top1_stable_k", None) or PREFETCH
    specs = {  # a scheduler each: the two modes measure different costs
        mode: SpeculativeRetriever(
            retriever, prefetch=min(PREFETCH, stable), scheduler=OS3Scheduler(max_stride=16)
        )
        for mode in MODES
    }
    names = ["baseline", *MODES]
    seconds = dict.fromkeys(names, 0.0)
    identical = True
    stats = {
        mode: {"speculated": 0, "rollbacks": 0, "salvaged": 0, "plain": 0, "strides": []} for mode in MODES
    }
    # Encoded queries are cached inside a dense retriever; each run must pay for its own.
    forget = getattr(retriever, "forget_queries", lambda: None)
    for n, prompt in enumerate(prompts):
        # Rotate which goes first: a later run of a prompt finds warmer CPU caches.
        runs = {}
        for name in names[n % 3 :] + names[: n % 3]:
            forget()
            if name == "baseline":
                runs[name] = baseline(generator, retriever, prompt, config)
            else:
                runs[name] = speculative(generator, specs[name], prompt, config, asynchronous=MODES[name])
        b = runs["baseline"]
        identical &= all(b.tokens == runs[m].tokens and b.docs == runs[m].docs for m in MODES)
        if n < warmup:
            continue  # untimed: first-call costs, and the schedulers' first measurements
        for name, run in runs.items():
            seconds[name] += run.seconds
        for mode in MODES:
            s, st = runs[mode], stats[mode]
            st["speculated"] += s.speculated
            st["rollbacks"] += s.rollbacks
            st["salvaged"] += s.salvaged
            st["plain"] += s.retrievals - len(s.batches)
            st["strides"] += list(s.batches)
    out: dict[str, Any] = {
        "identical": identical,
        "requests": len(prompts) - warmup,
        "warmup_requests": warmup,
        "baseline_seconds": round(seconds["baseline"], 3),
    }
    for mode in MODES:
        st, spent = stats[mode], seconds[mode]
        out[mode] = {
            "plain_steps": st["plain"],
            "speculated_steps": st["speculated"],
            "speculative_seconds": round(spent, 3),
            "speedup": round(seconds["baseline"] / spent, 3) if spent else None,
            # Right guesses among speculated steps; a wrong one is salvaged when its redo wrote
            # the same tokens (the later steps stand) and otherwise rolled back.
            "acceptance": (
                round(1 - (st["rollbacks"] + st["salvaged"]) / st["speculated"], 3)
                if st["speculated"]
                else None
            ),
            "rollbacks": st["rollbacks"],
            "salvaged": st["salvaged"],
            "mean_stride": round(float(np.mean(st["strides"])), 2) if st["strides"] else None,
            "strides": sorted(set(st["strides"])),
        }
    # The headline is the overlapped worker, the method as designed. On this 2-core machine it
    # contends with generation for memory bandwidth and the GIL, and verifying in place won
    # some A/B runs (docs/benchmarks.md), so both are reported.
    out["speedup"] = out["async"]["speedup"]
    return out


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
    embedder = create_embedder(QUERY_ENCODER)

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
            "prefetch": PREFETCH,
            "query_encoder": QUERY_ENCODER,
        },
        "retrievers": {},
    }
    generator = HFGenerator(trained_model(args.cache.parent, texts), threads=1)
    prompts = prompts_from(texts, requests + 1, seed=0)  # one warm-up request
    for kind in [k for k in args.kinds.split(",") if k]:
        t0 = time.perf_counter()
        retriever = make(kind, texts, vectors, encode, args.cache.parent if len(texts) >= 200_000 else None)
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
        speedup_sync={k: v["sync"]["speedup"] for k, v in r.items()},
        acceptance={k: v["async"]["acceptance"] for k, v in r.items()},
        strides={k: v["async"]["strides"] for k, v in r.items()},
    )
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
