"""Triton kernels for prefix linear attention: a fused prefill and a one-token decode step.

Prefill design (bandwidth first). One program owns one (batch, head, block of value columns) and
sweeps the sequence in chunks of ``BT`` tokens with the ``(Dk, BV)`` state in registers:

1. prefix pass: ``S += k_c^T v_c`` over the prefix chunks (the non-causal read);
2. main pass, per chunk: ``o_c = scale * (q_c S + tril(q_c k_c^T) v_c)``, then ``S += k_c^T v_c``.

Every tensor core op is a (64 x D) x (D x 64) ``tl.dot``. Nothing but ``o`` and the final state is
written, so HBM traffic is q, k, v read once, o written once, plus the prefix's k and v read a
second time: the two-kernel chunked form (fla's ``chunk``) also writes and re-reads one state per
chunk, about as many bytes as k. The sequential sweep keeps HBM busy because B*H*(Dv/BV)
programs (256 at the issue's shape, 512 with BV=32) are all resident at once and each requests
chunk c+1 before computing chunk c (prefetched by hand: triton 3.9's pipeliner leaves these loads,
each feeding two dots, unpipelined). fp32 inputs use tf32x3 dots on a GPU (see ``_precision``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# num_stages=1: the kernel prefetches by hand (the compiler's pipeliner leaves these loads alone)
_CONFIGS = [triton.Config({"BV": bv}, num_warps=w, num_stages=1) for bv in (32, 64) for w in (4, 8)]


@triton.jit
def _load_q(q_base, t0, end, offs_t, offs_k, mask_k, DK: tl.constexpr):
    t = t0 + offs_t
    return tl.load(
        q_base + t[:, None] * DK + offs_k[None, :], mask=(t < end)[:, None] & mask_k[None, :], other=0.0
    )


@triton.jit
def _load_kv(
    k_base, v_base, t0, end, offs_t, offs_k, offs_v, mask_k, mask_v, DK: tl.constexpr, DV: tl.constexpr
):
    """Chunk ``[t0, t0 + BT)`` of k (transposed: ``(BK, BT)``) and v (``(BT, BV)``); rows at or
    past ``end`` read as zeros (so a chunk past the end is a harmless no-op)."""
    t = t0 + offs_t
    in_range = t < end
    kt = tl.load(
        k_base + t[None, :] * DK + offs_k[:, None], mask=mask_k[:, None] & in_range[None, :], other=0.0
    )
    vc = tl.load(
        v_base + t[:, None] * DV + offs_v[None, :], mask=in_range[:, None] & mask_v[None, :], other=0.0
    )
    return kt, vc


@triton.jit
def _prefill_kernel(
    q,
    k,
    v,
    o,
    s0,
    s_out,
    T,
    P,
    scale,
    WORK: tl.constexpr,  # a coarse size bucket, read only by the autotuner's key
    DK: tl.constexpr,
    DV: tl.constexpr,
    BK: tl.constexpr,
    BT: tl.constexpr,
    HAS_S0: tl.constexpr,
    PRECISION: tl.constexpr,
    BV: tl.constexpr,
):
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1).to(tl.int64)  # int64: B*H*T*D passes 2**31 at long contexts
    offs_t = tl.arange(0, BT)
    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    mask_k = offs_k < DK  # Dk and Dv need not be powers of two: blocks are padded and masked
    mask_v = offs_v < DV
    q_base = q + i_bh * T * DK
    k_base = k + i_bh * T * DK
    v_base = v + i_bh * T * DV
    o_base = o + i_bh * T * DV
    state_off = i_bh * DK * DV + offs_k[:, None] * DV + offs_v[None, :]
    state_mask = mask_k[:, None] & mask_v[None, :]

    if HAS_S0:
        state = tl.load(s0 + state_off, mask=state_mask, other=0.0)
    else:
        state = tl.zeros([BK, BV], dtype=tl.float32)

    # Loads are software-pipelined by hand: chunk c+1's tiles are requested before chunk c's dots,
    # so HBM latency overlaps tensor-core work even with only ~2 programs per SM.
    # 1. the prefix, read non-causally into the state
    kt, vc = _load_kv(k_base, v_base, 0, P, offs_t, offs_k, offs_v, mask_k, mask_v, DK, DV)
    for t0 in range(0, P, BT):
        k_next, v_next = _load_kv(k_base, v_base, t0 + BT, P, offs_t, offs_k, offs_v, mask_k, mask_v, DK, DV)
        state += tl.dot(kt, vc, input_precision=PRECISION)
        kt, vc = k_next, v_next

    # 2. every chunk, causally, on top of the prefix state
    causal = offs_t[:, None] >= offs_t[None, :]
    qc = _load_q(q_base, 0, T, offs_t, offs_k, mask_k, DK)
    kt, vc = _load_kv(k_base, v_base, 0, T, offs_t, offs_k, offs_v, mask_k, mask_v, DK, DV)
    for t0 in range(0, T, BT):
        q_next = _load_q(q_base, t0 + BT, T, offs_t, offs_k, mask_k, DK)
        k_next, v_next = _load_kv(k_base, v_base, t0 + BT, T, offs_t, offs_k, offs_v, mask_k, mask_v, DK, DV)
        scores = tl.dot(qc, kt, input_precision=PRECISION)
        scores = tl.where(causal, scores, 0.0)
        # the state is read before this chunk's keys enter it: the tril term covers them
        acc = tl.dot(qc, state.to(qc.dtype), input_precision=PRECISION)
        acc = tl.dot(scores.to(vc.dtype), vc, acc=acc, input_precision=PRECISION)
        t = t0 + offs_t
        tl.store(
            o_base + t[:, None] * DV + offs_v[None, :],
            (acc * scale).to(o.dtype.element_ty),
            mask=(t < T)[:, None] & mask_v[None, :],
        )
        state += tl.dot(kt, vc, input_precision=PRECISION)
        qc, kt, vc = q_next, k_next, v_next

    tl.store(s_out + state_off, state, mask=state_mask)


_prefill_tuned = triton.autotune(_CONFIGS, key=["WORK", "DK", "DV"])(_prefill_kernel)


@triton.jit
def _step_kernel(
    q,
    k,
    v,
    state,
    o,
    s_out,
    scale,
    DK: tl.constexpr,
    DV: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
):
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1).to(tl.int64)
    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    mask_k = offs_k < DK
    mask_v = offs_v < DV
    state_off = i_bh * DK * DV + offs_k[:, None] * DV + offs_v[None, :]
    state_mask = mask_k[:, None] & mask_v[None, :]
    qv = tl.load(q + i_bh * DK + offs_k, mask=mask_k, other=0.0).to(tl.float32)
    kv = tl.load(k + i_bh * DK + offs_k, mask=mask_k, other=0.0).to(tl.float32)
    vv = tl.load(v + i_bh * DV + offs_v, mask=mask_v, other=0.0).to(tl.float32)
    s = tl.load(state + state_off, mask=state_mask, other=0.0)
    s += kv[:, None] * vv[None, :]
    out = tl.sum(qv[:, None] * s, axis=0) * scale
    tl.store(o + i_bh * DV + offs_v, out.to(o.dtype.element_ty), mask=mask_v)
    tl.store(s_out + state_off, s, mask=state_mask)


def _precision(dtype: torch.dtype, interpreted: bool) -> str:
    """16-bit inputs: plain tensor-core dots. fp32 inputs on a GPU: tf32x3 (three TF32 products,
    about fp32 accuracy, the 1e-3 test bound) rather than ieee, whose FMA-based dots compile
    minutes long and need far more shared memory. The interpreter computes in fp32 either way."""
    if dtype != torch.float32:
        return "tf32"
    return "ieee" if interpreted else "tf32x3"


def prefill(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    prefix_len: int,
    scale: float,
    initial_state: torch.Tensor | None,
    out: torch.Tensor,
    final_state: torch.Tensor,
) -> None:
    """Launch the prefill: inputs contiguous ``(B, H, T, D)``; writes ``out`` and ``final_state``."""
    B, H, T, DK = q.shape
    DV = v.shape[-1]
    BK = max(16, triton.next_power_of_2(DK))  # tl.dot needs every dim >= 16
    s0 = initial_state if initial_state is not None else final_state  # unread when HAS_S0 is off
    args = (q, k, v, out, s0, final_state, T, prefix_len, scale)
    meta = {
        "DK": DK,
        "DV": DV,
        "BK": BK,
        "BT": 64,
        "HAS_S0": initial_state is not None,
        "PRECISION": _precision(q.dtype, interpreted=not q.is_cuda),
    }
    if q.is_cuda:
        work = (B * H * T).bit_length()

        def grid(m: dict[str, int]) -> tuple[int, int]:
            return (triton.cdiv(DV, m["BV"]), B * H)

        _prefill_tuned[grid](*args, WORK=work, **meta)
    else:  # the interpreter (CPU tests): one fixed config, no autotuning
        bv = min(64, max(16, triton.next_power_of_2(DV)))
        _prefill_kernel[(triton.cdiv(DV, bv), B * H)](*args, WORK=0, BV=bv, **meta)


def step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    state: torch.Tensor,
    scale: float,
    out: torch.Tensor,
    new_state: torch.Tensor,
) -> None:
    """Launch one decode step: ``q, k`` ``(B, H, Dk)``, ``v`` ``(B, H, Dv)``, fp32 state.
    ``new_state`` may be ``state`` itself (each program reads its tile before writing it)."""
    B, H, DK = q.shape
    DV = v.shape[-1]
    BK = triton.next_power_of_2(DK)
    BV = min(64, triton.next_power_of_2(DV))
    _step_kernel[(triton.cdiv(DV, BV), B * H)](
        q, k, v, state, out, new_state, scale, DK=DK, DV=DV, BK=BK, BV=BV
    )
