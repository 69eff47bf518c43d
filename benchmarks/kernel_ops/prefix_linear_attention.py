"""prefix_linear_attention: the fused Triton prefill against flash-linear-attention and SDPA.

Issue shape: bf16, B16 H16 T32k D64, prefix P = T/4 (a retrieved context of 8k tokens in front of
the stream; the prefix reduction is inside every timed call). Baselines, all computing the same
o: fla-core's ``chunk_linear_attn`` (``normalize=False``, its native (B, T, H, D) layout) started
from the prefix state computed by one torch matmul; SDPA flash causal (softmax attention, for
scale); the PyTorch reference (small shapes only). The floor is the issue's: q, k, v read once and
o written once, at the device copy bandwidth measured in this run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from kernels.prefix_linear_attention import prefix_linear_attention
from kernels.prefix_linear_attention.reference import prefix_linear_attention_reference

from .timing import OpResult, Row, copy_bandwidth, median_ms

OP = "prefix_linear_attention"


QKV = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _inputs(n: int, shape: tuple[int, int, int, int], dtype: torch.dtype, device: str) -> list[QKV]:
    gen = torch.Generator(device=device).manual_seed(0)

    def one() -> torch.Tensor:
        return torch.randn(shape, generator=gen, device=device, dtype=dtype) * 0.3

    return [(one(), one(), one()) for _ in range(n)]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt()).item()


def _bench_cpu() -> OpResult:
    B, H, T, D, P = 1, 2, 1024, 64, 256
    sets = _inputs(2, (B, H, T, D), torch.float32, "cpu")
    ms = median_ms(lambda i: prefix_linear_attention_reference(*sets[i], P), 2, warmup=1, reps=5)
    shape = f"B{B} H{H} T{T} D{D} P{P} fp32"
    return OpResult(
        OP,
        [Row(OP, "reference (torch, cpu)", shape, ms)],
        speedup=None,
        baseline="none (no CUDA)",
        achieved_fraction_of_floor=None,
        notes=["no CUDA: only the PyTorch reference was timed; the Triton kernel needs a GPU"],
    )


def bench(quick: bool) -> OpResult:
    if not torch.cuda.is_available():
        return _bench_cpu()
    B, H, T, D = (8, 16, 8192, 64) if quick else (16, 16, 32768, 64)
    P = T // 4
    dtype = torch.bfloat16
    n_sets = 2  # each set is far larger than L2: two are enough that no call reads warm data
    reps = 10 if quick else 20
    shape = f"B{B} H{H} T{T} D{D} P{P} bf16"
    notes: list[str] = []
    rows: list[Row] = []
    bw = copy_bandwidth()
    floor_bytes = 4 * B * H * T * D * torch.finfo(dtype).bits // 8
    floor_ms = floor_bytes / bw * 1e3
    notes.append(f"copy bandwidth {bw / 1e12:.2f} TB/s; floor (q, k, v, o once) {floor_ms:.3f} ms")

    def row(method: str, ms: float, **extra: object) -> None:
        rows.append(Row(OP, method, shape, ms, {"floor_frac": floor_ms / ms, **extra}))

    sets = _inputs(n_sets, (B, H, T, D), dtype, "cuda")
    ours = median_ms(lambda i: prefix_linear_attention(*sets[i], P, backend="triton"), n_sets, reps=reps)
    row("triton (ours)", ours)
    ours0 = median_ms(lambda i: prefix_linear_attention(*sets[i], 0, backend="triton"), n_sets, reps=reps)
    row("triton (ours), P=0", ours0)
    o_ours, _ = prefix_linear_attention(*sets[0], P, backend="triton")

    baseline, base_ms = "reference", None
    try:
        from fla.ops.linear_attn import chunk_linear_attn
    except ImportError:
        chunk_linear_attn = None
        notes.append("fla-core not installed: the baseline is the PyTorch reference")
    if chunk_linear_attn is not None:
        fla_sets = [tuple(x.transpose(1, 2).contiguous() for x in qkv) for qkv in sets]  # fla's (B, T, H, D)

        def fla(i: int, prefix: int) -> torch.Tensor:
            q, k, v = fla_sets[i]
            s0 = None
            if prefix:  # the prefix state as cheaply as torch does it: one bf16 batched matmul
                s0 = torch.matmul(k[:, :prefix].permute(0, 2, 3, 1), v[:, :prefix].transpose(1, 2)).float()
            return chunk_linear_attn(q, k, v, scale=D**-0.5, initial_state=s0, normalize=False)[0]

        base_ms = median_ms(lambda i: fla(i, P), n_sets, reps=reps)
        row("fla chunk_linear_attn + prefix matmul", base_ms)
        row("fla chunk_linear_attn, P=0", median_ms(lambda i: fla(i, 0), n_sets, reps=reps))
        baseline = "fla chunk_linear_attn (fla-core) + torch prefix state"
        notes.append(f"ours vs fla output: relative RMS {_rel(o_ours, fla(0, P).transpose(1, 2)):.2e}")
        del fla_sets

    sdpa = _sdpa(sets)
    if sdpa is not None:
        row("sdpa flash causal (softmax)", median_ms(sdpa, n_sets, warmup=1, reps=3 if quick else 5))

    if quick or base_ms is None:  # the reference loops over chunks: only at the quick shape
        small = [(q[:1, :4], k[:1, :4], v[:1, :4]) for q, k, v in sets]
        ref_ms = median_ms(
            lambda i: prefix_linear_attention_reference(*small[i], P), n_sets, warmup=1, reps=3
        )
        scaled = ref_ms * B * H / 4  # the reference is throughput-bound: scale to the full batch
        row("reference (torch), scaled from B1 H4", scaled)
        if base_ms is None:
            base_ms = scaled
    notes.append(
        f"P = T/4; with the prefix's second read, the kernel's own traffic is {1 + P / (2 * T):.3f}x the floor"
    )
    return OpResult(
        OP,
        rows,
        speedup=base_ms / ours,
        baseline=baseline,
        achieved_fraction_of_floor=floor_ms / ours,
        notes=notes,
    )


def _sdpa(sets: list[QKV]) -> Callable[[int], object] | None:
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        return None
    import torch.nn.functional as F

    def run(i: int) -> object:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(*sets[i], is_causal=True)

    return run
