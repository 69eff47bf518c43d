"""The speculative RaLM loop's own cost per step, with a free retriever and a free generator.

    python benchmarks/ralm_overhead.py

Both loops run 200 requests of 16 steps over components that cost nothing, so what is timed is
the bookkeeping alone: the baseline loop, the speculative loop with speculation off (a scheduler
that always answers 0), and with ``OS3Scheduler``. On a real retriever where speculation cannot
pay (HNSW in benchmarks/ralmspec.py) this is what speculation-off costs over the baseline.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speculation import (
    FixedStride,
    Hit,
    OS3Scheduler,
    RalmConfig,
    SpeculativeRetriever,
    baseline,
    speculative,
)


class FreeRetriever:
    name = "free"

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        return [[Hit(i, 1.0 / (i + 1)) for i in range(k)] for _ in queries]

    def rank_within(
        self, queries: Sequence[str], ids: Sequence[int], k: int | None = None
    ) -> list[list[Hit]]:
        return [[Hit(i, 1.0 / (i + 1)) for i in sorted(ids)][:k] for _ in queries]

    def text(self, doc_id: int) -> str:
        return f"doc {doc_id}"


class FreeGenerator:
    def encode(self, text: str) -> list[int]:
        return [len(w) for w in text.split()]

    def decode(self, ids: list[int]) -> str:
        return " ".join(f"w{i}" for i in ids)

    def greedy(self, prompt_ids: list[int], n: int) -> list[int]:
        return [7] * n


class Off(FixedStride):
    """Speculation off: every step retrieves for real."""

    def stride(self, asynchronous: bool = False, remaining: int | None = None) -> int:
        return 0


def main() -> int:
    config = RalmConfig(stride=4, query_tokens=32, max_new_tokens=64)
    retriever, generator = FreeRetriever(), FreeGenerator()
    requests, steps = 200, 200 * 16
    out: dict[str, float] = {}
    for name, scheduler in (("off", Off()), ("os3", OS3Scheduler(max_stride=16))):
        spec = SpeculativeRetriever(retriever, prefetch=20, scheduler=scheduler)
        start = time.perf_counter()
        for _ in range(requests):
            baseline(generator, retriever, "some prompt text here", config)
        out[f"baseline_us_per_step_{name}_run"] = (time.perf_counter() - start) / steps * 1e6
        start = time.perf_counter()
        for _ in range(requests):
            speculative(generator, spec, "some prompt text here", config)
        out[f"speculative_{name}_us_per_step"] = (time.perf_counter() - start) / steps * 1e6
    print(json.dumps({k: round(v, 1) for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
