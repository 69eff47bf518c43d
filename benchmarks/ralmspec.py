"""RaLMSpec benchmark: iterative retrieval-augmented generation, baseline against speculative.

    python benchmarks/ralmspec.py [--quick] [--passages N] [--requests R] [--out FILE]

For each retriever (exact dense = faiss flat, HNSW, BM25) over the same passages: ``R`` requests,
each run by the baseline (a real retrieval every ``stride`` tokens) and by speculative retrieval
(per-request cache, OS3 stride scheduler, verification overlapped on a worker thread), in the
same process, alternating request by request so that load from elsewhere hits both alike.
Reported: whether every output is token-for-token identical (and every step's document),
end-to-end speedup (sum of baseline seconds over sum of speculative seconds), speculation
acceptance, and the strides the scheduler chose.

Passages and their MiniLM embeddings come from ``benchmarks/passages.py`` (cached on disk;
full: 1,000,000 passages; quick: the first 100,000). The model is the tiny Llama of
``tgrag.llm.tiny``, random-initialised (no training): its text is noise, which is fine for a
latency benchmark whose outputs are compared token for token. Queries are encoded with MiniLM one
at a time. torch and faiss get one thread each, so generation and the overlapped verification
each have a core. The last line printed is one JSON object with the keys ``identical``,
``speedup_exact``, ``speedup_hnsw``, ``speedup_bm25``, ``acceptance``, ``strides``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# One BLAS thread: generation and the overlapped verification each get one of the cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

KINDS = ("exact", "hnsw", "bm25")


def prompts_from(passages: list[str], count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.sample(passages[:50_000], 2)) for _ in range(count)]


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
    )


def run_kind(kind: str, retriever: Any, generator: Any, prompts: list[str], config: Any) -> dict[str, Any]:
    from speculation import OS3Scheduler, SpeculativeRetriever, baseline, speculative

    spec = SpeculativeRetriever(retriever, prefetch=20, scheduler=OS3Scheduler(max_stride=8))
    base_s = spec_s = 0.0
    identical = True
    speculated = rollbacks = 0
    strides: list[int] = []
    for prompt in prompts:
        b = baseline(generator, retriever, prompt, config)
        s = speculative(generator, spec, prompt, config, asynchronous=True)
        identical &= b.tokens == s.tokens and b.docs == s.docs
        base_s += b.seconds
        spec_s += s.seconds
        speculated += s.speculated
        rollbacks += s.rollbacks
        strides += list(s.batches)
    return {
        "identical": identical,
        "requests": len(prompts),
        "baseline_seconds": round(base_s, 3),
        "speculative_seconds": round(spec_s, 3),
        "speedup": round(base_s / spec_s, 3) if spec_s else None,
        "acceptance": round(1 - rollbacks / speculated, 3) if speculated else None,
        "mean_stride": round(float(np.mean(strides)), 2) if strides else None,
        "strides": sorted(set(strides)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="100,000 passages, fewer requests")
    p.add_argument("--passages", type=int, help="passages to search (default 1,000,000; quick 100,000)")
    p.add_argument("--requests", type=int, help="requests per retriever (default 20; quick 4)")
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "passages")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    count = args.passages or (100_000 if args.quick else 1_000_000)
    requests = args.requests or (4 if args.quick else 20)

    import passages as corpus
    import torch

    from speculation import HFGenerator, RalmConfig
    from tgrag.embed import create_embedder
    from tgrag.llm.tiny import build_tiny_llama

    torch.set_num_threads(1)
    started = time.perf_counter()
    full_cache = args.cache / "meta.json"
    if full_cache.exists() and json.loads(full_cache.read_text())["count"] >= count:
        texts, vectors = corpus.load(args.cache, json.loads(full_cache.read_text())["count"], limit=count)
    else:  # a cache of just what is asked for (the quick run on a fresh machine embeds 100,000)
        texts, vectors = corpus.load(args.cache.with_name(f"passages-{count}"), count)
    print(f"{len(texts):,} passages ready in {time.perf_counter() - started:.1f} s", flush=True)
    embedder = create_embedder("minilm")

    def encode(queries: list[str]) -> np.ndarray:
        return np.asarray(embedder.embed(queries), dtype=np.float32)

    config = RalmConfig(stride=4, query_tokens=32, max_new_tokens=64 if not args.quick else 32)
    result: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "mode": "quick" if args.quick else "full",
        "passages": len(texts),
        "requests": requests,
        "model": "tiny Llama (tgrag.llm.tiny), random-init, 2 layers",
        "config": {
            "stride": config.stride,
            "query_tokens": config.query_tokens,
            "max_new_tokens": config.max_new_tokens,
        },
        "retrievers": {},
    }
    with tempfile.TemporaryDirectory(prefix="ralmspec-") as tmp:
        generator = HFGenerator(build_tiny_llama(Path(tmp) / "tiny"), threads=1)
        prompts = prompts_from(texts, requests, seed=0)
        for kind in [k for k in args.kinds.split(",") if k]:
            t0 = time.perf_counter()
            retriever = make(kind, texts, vectors, encode)
            print(
                f"{kind}: index built in {time.perf_counter() - t0:.1f} s; {requests} requests ...",
                flush=True,
            )
            result["retrievers"][kind] = run_kind(kind, retriever, generator, prompts, config)
            print(f"  {result['retrievers'][kind]}", flush=True)
    r = result["retrievers"]
    result.update(
        identical=all(v["identical"] for v in r.values()),
        speedup_exact=r.get("exact", {}).get("speedup"),
        speedup_hnsw=r.get("hnsw", {}).get("speedup"),
        speedup_bm25=r.get("bm25", {}).get("speedup"),
        acceptance={k: v["acceptance"] for k, v in r.items()},
        strides={k: v["strides"] for k, v in r.items()},
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
