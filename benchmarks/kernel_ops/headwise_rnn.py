"""headwise_rnn: the fused Triton LSTM/GRU forward against FlashRNN, cuDNN and a PyTorch loop.

Issue shapes: bf16, batch 16, T 1024, 12 heads x 64 and 24 x 32 (hidden 768), input projections
precomputed. Baselines: FlashRNN's ``triton_fused`` LSTM (pip ``flashrnn``; it has no fused GRU),
cuDNN ``nn.LSTM`` / ``nn.GRU`` with a dense hidden 768 (its time includes the input projection),
and the PyTorch reference loop. The headline speedup is the smaller of the two LSTM shapes' over
FlashRNN (the target holds only if both clear it). The floor (``wx`` read and ``h`` written once)
is far below any recurrent kernel: T dependent steps make the op latency-bound, so the fraction
is reported for completeness, not as a target.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels.headwise_rnn import GATES, Cell, headwise_rnn
from kernels.headwise_rnn.reference import headwise_rnn_reference

from .timing import OpResult, Row, copy_bandwidth, median_ms

OP = "headwise_rnn"
HEADS = ((12, 64), (24, 32))
CELLS: tuple[Cell, ...] = ("lstm", "gru")


def _inputs(
    cell: str, n: int, B: int, T: int, H: int, Dh: int, dtype: torch.dtype, device: str
) -> list[dict[str, Any]]:
    G = GATES[cell]
    gen = torch.Generator(device=device).manual_seed(0)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, device=device, dtype=torch.float32).mul_(scale).to(dtype)

    r = randn(H, G * Dh, Dh, scale=Dh**-0.5)
    b = randn(H, G * Dh, scale=0.1).float()
    return [{"wx": randn(B, T, H, G * Dh), "r": r, "b": b} for _ in range(n)]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt()).item()


def _bench_cpu() -> OpResult:
    B, T, H, Dh = 4, 128, 4, 32
    rows = []
    for cell in CELLS:
        sets = _inputs(cell, 2, B, T, H, Dh, torch.float32, "cpu")
        ms = median_ms(lambda i: headwise_rnn_reference(**sets[i], cell=cell), 2, warmup=1, reps=5)  # noqa: B023
        rows.append(Row(OP, f"reference {cell} (torch, cpu)", f"B{B} T{T} {H}x{Dh} fp32", ms))
    return OpResult(
        OP,
        rows,
        speedup=None,
        baseline="none (no CUDA)",
        achieved_fraction_of_floor=None,
        notes=["no CUDA: only the PyTorch reference was timed; the Triton kernels need a GPU"],
    )


def _flashrnn() -> Any:
    try:
        from flashrnn import flashrnn
    except Exception:  # ImportError, or its CUDA-extension helpers failing to import
        return None
    return flashrnn


def bench(quick: bool) -> OpResult:
    if not torch.cuda.is_available():
        return _bench_cpu()
    B, T = 16, 1024
    dtype = torch.bfloat16
    n_sets, reps = 3, (10 if quick else 30)
    rows: list[Row] = []
    notes: list[str] = []
    bw = copy_bandwidth()
    flashrnn = _flashrnn()
    if flashrnn is None:
        notes.append("flashrnn not installed: the LSTM baseline is the PyTorch reference loop")
    speedups: list[float] = []
    fraction: float | None = None

    for cell in CELLS:
        G = GATES[cell]
        for H, Dh in HEADS:
            shape = f"B{B} T{T} {H}x{Dh} bf16"
            sets = _inputs(cell, n_sets, B, T, H, Dh, dtype, "cuda")
            floor_ms = B * T * H * Dh * (G + 1) * 2 / bw * 1e3  # wx read, h written (bf16)

            def ours(i: int, sets: list[dict[str, Any]] = sets, cell: Cell = cell) -> object:
                return headwise_rnn(**sets[i], cell=cell, backend="triton")

            ours_ms = median_ms(ours, n_sets, reps=reps)
            tok = B * T / (ours_ms * 1e-3)
            rows.append(
                Row(
                    OP,
                    f"triton (ours) {cell}",
                    shape,
                    ours_ms,
                    {"Mtok/s": tok / 1e6, "floor_frac": floor_ms / ours_ms},
                )
            )
            if cell == "lstm" and (H, Dh) == HEADS[0]:
                fraction = floor_ms / ours_ms

            def ref(i: int, sets: list[dict[str, Any]] = sets, cell: Cell = cell) -> object:
                return headwise_rnn_reference(**sets[i], cell=cell)

            ref_ms = median_ms(ref, n_sets, warmup=1, reps=3)
            rows.append(Row(OP, f"reference loop {cell}", shape, ref_ms, {"ours_speedup": ref_ms / ours_ms}))
            base_ms = ref_ms
            if cell == "lstm" and flashrnn is not None:
                fr_ms, err = _time_flashrnn(flashrnn, sets, B, T, H, Dh, n_sets, reps)
                rows.append(
                    Row(OP, "flashrnn triton_fused lstm", shape, fr_ms, {"ours_speedup": fr_ms / ours_ms})
                )
                notes.append(f"{shape}: ours vs flashrnn h, relative RMS {err}")
                base_ms = fr_ms
            if cell == "lstm" or flashrnn is None:
                speedups.append(base_ms / ours_ms)
            del sets

        dense_ms = _time_cudnn(cell, B, T, HEADS[0][0] * HEADS[0][1], dtype, n_sets, reps)
        rows.append(Row(OP, f"cudnn nn.{cell.upper()} dense hidden 768", f"B{B} T{T} 768 bf16", dense_ms))

    notes.append(
        f"copy bandwidth {bw / 1e12:.2f} TB/s; the fraction of floor is the LSTM {HEADS[0][0]}x{HEADS[0][1]} case"
    )
    notes.append("headline speedup: the smaller of the two LSTM shapes")
    baseline = "flashrnn triton_fused (LSTM)" if flashrnn is not None else "PyTorch reference loop"
    return OpResult(
        OP, rows, speedup=min(speedups), baseline=baseline, achieved_fraction_of_floor=fraction, notes=notes
    )


def _time_flashrnn(
    flashrnn: Any, sets: list[dict[str, Any]], B: int, T: int, H: int, Dh: int, n_sets: int, reps: int
) -> tuple[float, str]:
    """FlashRNN's inputs in its own layouts: Wx (B, T, G, H, D), R (G, H, Dout, Din), b (G, H, D)."""
    G = 4
    fr = []
    for s in sets:
        wx = s["wx"].view(B, T, H, G, Dh).transpose(2, 3).contiguous()
        r = s["r"].view(H, G, Dh, Dh).transpose(0, 1).contiguous()
        b = s["b"].view(H, G, Dh).transpose(0, 1).contiguous().to(s["wx"].dtype)
        fr.append((wx, r, b))

    def run(i: int) -> Any:
        with torch.no_grad():
            return flashrnn(*fr[i], function="lstm", backend="triton_fused", dtype="bfloat16")

    ms = median_ms(run, n_sets, reps=reps)
    try:  # the same recurrence? (their h: (states, B, T, H, D); bias rounded to bf16 on their side)
        h = run(0)[0][0]
        mine = headwise_rnn(
            sets[0]["wx"], sets[0]["r"], fr[0][2].transpose(0, 1).reshape(H, G * Dh).float(), backend="triton"
        ).h
        err = f"{_rel(mine, h):.2e}"
    except Exception as e:  # a layout surprise must not lose the timing
        err = f"not compared ({type(e).__name__}: {e})"
    return ms, err


def _time_cudnn(cell: str, B: int, T: int, hidden: int, dtype: torch.dtype, n_sets: int, reps: int) -> float:
    cls = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
    net = cls(hidden, hidden, batch_first=True).to("cuda", dtype)
    xs = [torch.randn(B, T, hidden, device="cuda", dtype=dtype) for _ in range(n_sets)]

    def run(i: int) -> object:
        with torch.no_grad():
            return net(xs[i])

    return median_ms(run, n_sets, reps=max(5, reps // 3))
