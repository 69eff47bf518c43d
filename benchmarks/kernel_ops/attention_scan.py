"""attention_scan: the chunked (max, denominator, numerator) scan in Triton against the PyTorch
reference (logcumsumexp prefix sums) and SDPA flash causal with the one query repeated at every
step (the same outputs by O(T^2) work: what attention without the scan costs).

Shape: bf16, B16 H16 T32k (quick: T8k), D = Dv = 64. The floor: k and v read once and o written
once, at the device copy bandwidth measured in this run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from kernels.attention_scan import attention_scan
from kernels.attention_scan.reference import attention_scan_reference

from .timing import OpResult, Row, copy_bandwidth, median_ms

OP = "attention_scan"


def _inputs(
    n: int, b: int, h: int, t: int, d: int, dtype: torch.dtype, device: str
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator(device=device).manual_seed(0)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, device=device, dtype=dtype)

    return [(rnd(b, h, d), rnd(b, h, t, d), rnd(b, h, t, d)) for _ in range(n)]


def _bench_cpu() -> OpResult:
    b, h, t, d = 1, 4, 4096, 64
    sets = _inputs(2, b, h, t, d, torch.float32, "cpu")
    ms = median_ms(lambda i: attention_scan_reference(*sets[i], d**-0.5), 2, warmup=1, reps=5)
    return OpResult(
        OP,
        [Row(OP, "reference (torch, cpu)", f"B{b} H{h} T{t} D{d} fp32", ms)],
        speedup=None,
        baseline="none (no CUDA)",
        achieved_fraction_of_floor=None,
        notes=["no CUDA: only the PyTorch reference was timed; the Triton kernel needs a GPU"],
    )


def _sdpa(sets: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> Callable[[int], object] | None:
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        return None
    import torch.nn.functional as F

    queries = [s[0][:, :, None].expand_as(s[1]).contiguous() for s in sets]

    def run(i: int) -> object:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(queries[i], sets[i][1], sets[i][2], is_causal=True)

    return run


def bench(quick: bool) -> OpResult:
    if not torch.cuda.is_available():
        return _bench_cpu()
    b, h, t, d = (16, 16, 8192, 64) if quick else (16, 16, 32768, 64)
    dtype = torch.bfloat16
    reps = 10 if quick else 20
    shape = f"B{b} H{h} T{t} D{d} Dv{d} bf16"
    bw = copy_bandwidth()
    floor_ms = 3 * b * h * t * d * 2 / bw * 1e3
    notes = [f"copy bandwidth {bw / 1e12:.2f} TB/s; floor (k, v read and o written once) {floor_ms:.3f} ms"]
    rows: list[Row] = []

    def row(method: str, ms: float) -> None:
        rows.append(Row(OP, method, shape, ms, {"floor_frac": floor_ms / ms}))

    sets = _inputs(2, b, h, t, d, dtype, "cuda")
    ours = median_ms(lambda i: attention_scan(*sets[i], backend="triton"), 2, reps=reps)
    row("triton (ours)", ours)
    ref = median_ms(lambda i: attention_scan_reference(*sets[i], d**-0.5), 2, warmup=1, reps=3)
    row("reference (torch logcumsumexp)", ref)
    got = attention_scan(*sets[0], backend="triton").out.float()
    q0, k0, v0 = (x.float() for x in sets[0])
    want = attention_scan_reference(q0, k0, v0, d**-0.5)[0]
    notes.append(f"ours vs fp32 reference: relative RMS {((got - want).norm() / want.norm()).item():.2e}")
    sdpa = _sdpa(sets)
    if sdpa is not None:
        row("sdpa flash causal, q repeated (O(T^2))", median_ms(sdpa, 2, warmup=1, reps=3))
    return OpResult(
        OP,
        rows,
        speedup=ref / ours,
        baseline="attention_scan_reference (torch logcumsumexp)",
        achieved_fraction_of_floor=floor_ms / ours,
        notes=notes,
    )
