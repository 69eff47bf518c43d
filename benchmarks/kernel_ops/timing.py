"""Shared timing and result types for the kernel benchmarks."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Row:
    """One timed method on one shape: ``ms`` is the median; ``extra`` holds bandwidth, tokens/s..."""

    op: str
    method: str
    shape: str
    ms: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class OpResult:
    """What an op reports: every row, and the headline figures for the JSON line.

    ``speedup`` is the kernel against the op's main baseline (named in ``baseline``);
    ``achieved_fraction_of_floor`` is the bandwidth (or compute) floor's time over the kernel's time.
    """

    op: str
    rows: list[Row]
    speedup: float | None  # None where the kernel cannot run (no CUDA)
    baseline: str
    achieved_fraction_of_floor: float | None
    notes: list[str] = field(default_factory=list)


def median_ms(fn: Callable[[int], object], inputs: int, warmup: int = 3, reps: int = 20) -> float:
    """Median time of ``fn(i)`` in milliseconds, rotating over ``inputs`` prepared input sets
    (so that caches do not flatter), with CUDA events on a GPU and wall time elsewhere."""
    cuda = torch.cuda.is_available()
    for i in range(warmup):
        fn(i % inputs)
    times: list[float] = []
    for i in range(reps):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(i % inputs)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn(i % inputs)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


@functools.cache
def copy_bandwidth() -> float:
    """Device copy bandwidth in bytes/s (read + write) of one large torch copy, measured once a
    run: every op's bandwidth floor is taken against it."""
    src = torch.empty(1 << 28, dtype=torch.bfloat16, device="cuda")  # 512 MiB, far past L2
    dst = torch.empty_like(src)
    ms = median_ms(lambda i: dst.copy_(src), 1, warmup=3, reps=10)
    return 2 * src.numel() * src.element_size() / (ms * 1e-3)


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu (no CUDA: reference timings only; Triton kernels need a GPU)"


def fmt_rows(rows: Sequence[Row]) -> str:
    lines = [f"{'op':<26}{'method':<30}{'shape':<34}{'ms':>10}  extra"]
    for r in rows:
        extra = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.extra.items())
        lines.append(f"{r.op:<26}{r.method:<30}{r.shape:<34}{r.ms:>10.3f}  {extra}")
    return "\n".join(lines)
