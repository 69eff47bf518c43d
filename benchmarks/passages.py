"""A corpus of passages with MiniLM embeddings, built once and cached on disk (for benchmarks/ralmspec.py).

    python benchmarks/passages.py [--count 1000000] [--cache .cache/passages]

Passages are the sentences of the generated evolving world (eval/datasets/world.py, scale xl:
2,600 companies over 64 quarters), deduplicated, in document order, cut at ``--count``. Vectors
come from all-MiniLM-L6-v2 (tgrag's embedder: bf16 autocast on capable CPUs), normalised, stored
as float16 (``vectors.npy``) beside ``passages.txt`` (one passage a line) and ``meta.json``. A
cache whose meta matches the request is reused; an interrupted build resumes from its last
saved block.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BLOCK = 50_000  # vectors written per block file, so a killed build loses at most one block


def build_passages(count: int) -> list[str]:
    from eval.datasets import world
    from tgrag.text import split_sentences

    seen: set[str] = set()
    out: list[str] = []
    for doc in world.generate("xl").documents:
        for span in split_sentences(doc.text):
            text = span.text.strip()
            if len(text) >= 20 and text not in seen:
                seen.add(text)
                out.append(text)
                if len(out) >= count:
                    return out
    return out


def load(cache: Path, count: int, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """(passages, float32 normalised vectors), building what the cache lacks.

    ``limit``: only the first ``limit`` passages (their blocks alone are embedded if missing).
    """
    from tgrag.embed import create_embedder

    cache.mkdir(parents=True, exist_ok=True)
    meta_path, text_path = cache / "meta.json", cache / "passages.txt"
    meta = {"count": count, "source": "world:xl sentences", "model": "all-MiniLM-L6-v2", "dtype": "float16"}
    if not (meta_path.exists() and json.loads(meta_path.read_text()) == meta and text_path.exists()):
        started = time.perf_counter()
        passages = build_passages(count)
        text_path.write_text("\n".join(passages) + "\n")
        meta_path.write_text(json.dumps(meta))
        for old in cache.glob("block-*.npy"):
            old.unlink()
        print(f"{len(passages):,} passages in {time.perf_counter() - started:.1f} s", flush=True)
    passages = text_path.read_text().splitlines()
    if limit is not None:
        passages = passages[:limit]
    embedder = None
    blocks = []
    for start in range(0, len(passages), BLOCK):
        path = cache / f"block-{start // BLOCK:04d}.npy"
        if not path.exists():
            embedder = embedder or create_embedder("minilm")
            t0 = time.perf_counter()
            vecs = embedder.embed(passages[start : start + BLOCK]).astype(np.float16)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, vecs)
            tmp.replace(path)  # atomic: a block is there whole or not at all
            rate = len(vecs) / (time.perf_counter() - t0)
            print(f"  embedded {start + len(vecs):,}/{len(passages):,} ({rate:.0f} passages/s)", flush=True)
        blocks.append(np.load(path))
    vectors = np.concatenate(blocks).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
    return passages, vectors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=1_000_000)
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "passages")
    args = p.parse_args(argv)
    passages, vectors = load(args.cache, args.count)
    print(json.dumps({"passages": len(passages), "dim": int(vectors.shape[1]), "cache": str(args.cache)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
