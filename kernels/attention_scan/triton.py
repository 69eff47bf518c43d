"""attention_scan in Triton: all prefix outputs of single-query softmax attention in one pass.

One program owns one (batch, head) and a block of value columns and walks T in chunks of BLOCK_T,
carrying the scan state (m, u, w) across chunks. Inside a chunk the prefix is taken in parallel:
with M_t the running max up to step t (a max-scan, no exponentials), the weights
P[t, i] = 2^(s_i - M_t) for i <= t are at most 1 and P[t, argmax] = 1, so the numerator
P @ V (one tensor-core matmul) and the denominator (row sums, at least 1) never overflow or
underflow, whatever the score range; the carried state enters each row scaled by 2^(m - M_t).
That is the chunked form of the (max, denominator, numerator) associative scan, costing BLOCK_T
exponentials per output row instead of a log-depth tree of them per element.

Traffic: k and v read once, o written once (q and the state are negligible), the floor the
benchmark measures against.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import triton
import triton.language as tl

LOG2E = math.log2(math.e)


@triton.jit
def _max(a, b):
    return tl.maximum(a, b)


@triton.jit
def _attention_scan_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    o_ptr,
    m0_ptr,
    u0_ptr,
    w0_ptr,
    m_ptr,
    u_ptr,
    w_ptr,
    T,
    D,
    DV,
    scale,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    bh = tl.program_id(0)
    pid_dv = tl.program_id(1)
    ds = tl.arange(0, BLOCK_D)
    d_ok = ds < D
    dvs = pid_dv * BLOCK_DV + tl.arange(0, BLOCK_DV)
    dv_ok = dvs < DV
    ts = tl.arange(0, BLOCK_T)
    causal = ts[:, None] >= ts[None, :]
    # scale carries log2(e): scores are in log2 units and every exponential is an exp2
    qv = tl.load(q_ptr + bh * D + ds, mask=d_ok, other=0.0).to(tl.float32) * scale
    k_bh = k_ptr + bh.to(tl.int64) * T * D
    v_bh = v_ptr + bh.to(tl.int64) * T * DV
    o_bh = o_ptr + bh.to(tl.int64) * T * DV
    # the carried state (a fresh one is m=-inf, u=0, w=0): loaded, so its types are fixed fp32
    m_c = tl.load(m0_ptr + bh) * 1.4426950408889634  # natural units -> log2 units
    u_c = tl.load(u0_ptr + bh)
    w_c = tl.load(w0_ptr + bh * DV + dvs, mask=dv_ok, other=0.0)
    for t0 in range(0, T, BLOCK_T):
        t_ok = ts < T - t0
        kt = tl.load(
            k_bh + (t0 + ts)[:, None] * D + ds[None, :], mask=t_ok[:, None] & d_ok[None, :], other=0.0
        )
        s = tl.where(t_ok, tl.sum(kt.to(tl.float32) * qv[None, :], axis=1), float("-inf"))
        run = tl.maximum(tl.associative_scan(s, 0, _max), m_c)  # M_t
        run = tl.where(run == float("-inf"), 0.0, run)  # nothing seen yet: any finite offset
        # i <= t has s_i <= M_t; the min keeps the masked future (i > t) from overflowing to inf
        p = tl.where(causal, tl.exp2(tl.minimum(s[None, :] - run[:, None], 0.0)), 0.0)
        carry = tl.exp2(m_c - run)
        vt = tl.load(
            v_bh + (t0 + ts)[:, None] * DV + dvs[None, :], mask=t_ok[:, None] & dv_ok[None, :], other=0.0
        )
        num = tl.dot(p.to(vt.dtype), vt, input_precision=DOT_PRECISION) + carry[:, None] * w_c[None, :]
        den = tl.sum(p, axis=1) + carry * u_c
        tl.store(
            o_bh + (t0 + ts)[:, None] * DV + dvs[None, :],
            (num / den[:, None]).to(o_ptr.dtype.element_ty),
            mask=t_ok[:, None] & dv_ok[None, :],
        )
        # the state after the chunk's last step, for the next chunk
        m_new = tl.maximum(m_c, tl.max(s, axis=0))
        alpha = tl.exp2(m_c - m_new)
        p_last = tl.exp2(s - m_new)  # padded steps: 2^-inf = 0
        u_c = u_c * alpha + tl.sum(p_last, axis=0)
        w_c = w_c * alpha + tl.sum(p_last[:, None] * vt.to(tl.float32), axis=0)
        m_c = m_new
    if pid_dv == 0:
        tl.store(m_ptr + bh, m_c * 0.6931471805599453)  # back to natural units
        tl.store(u_ptr + bh, u_c)
    tl.store(w_ptr + bh * DV + dvs, w_c, mask=dv_ok)


def _pow2(x: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, x))))


def attention_scan_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    *,
    block_t: int | None = None,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(o (B, H, T, Dv) in v's dtype, state (m, u, w) float32); ``out`` is written in place."""
    b, h, t, d = k.shape
    dv = v.shape[3]
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    if out is None:
        out = torch.empty_like(v)
    elif out.shape != v.shape or out.dtype != v.dtype or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous {v.dtype} tensor of shape {tuple(v.shape)}")
    f32: dict[str, Any] = {"dtype": torch.float32, "device": q.device}
    m, u, w = torch.empty(b, h, **f32), torch.empty(b, h, **f32), torch.empty(b, h, dv, **f32)
    if state is None:
        m0, u0, w0 = (
            torch.full((b, h), float("-inf"), **f32),
            torch.zeros(b, h, **f32),
            torch.zeros(b, h, dv, **f32),
        )
    else:
        m0, u0, w0 = (x.contiguous() for x in state)
    block_dv = min(max(16, _pow2(dv)), 128)  # tl.dot needs >= 16; wider values split over programs
    # fp32: three tf32 products (about fp32 accuracy on tensor cores); "ieee" spills registers
    precision = "tf32x3" if v.dtype == torch.float32 else "tf32"
    block_d = max(16, _pow2(d))
    if block_t is None:  # bf16 compiles for sm_90 without spills (ptxas); fp32 at 128 spills a little
        block_t = 64 if max(block_d, block_dv) <= 64 else 32
    num_warps = 8 if block_t >= 64 else 4
    _attention_scan_kernel[(b * h, -(-dv // block_dv))](
        q, k, v, out, m0, u0, w0, m, u, w, t, d, dv, scale * LOG2E,
        BLOCK_T=block_t, BLOCK_D=block_d, BLOCK_DV=block_dv,
        DOT_PRECISION=precision, num_warps=num_warps,
    )  # fmt: skip
    return out, (m, u, w)
