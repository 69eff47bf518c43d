"""pq_scan in Triton: scoring product-quantised codes against lookup tables, never decoding them.

Two kernels share one tile-scoring routine:

* ``bucket_max``: for each query and each bucket of ``block_n`` consecutive rows, the bucket's best
  score. The exact top-k then needs only the k best buckets: every row of the true top-k lies in a
  bucket whose maximum is at least the k-th best score, and there are at most k such buckets, so
  rescoring the rows of the top-k buckets (k * block_n rows, in PyTorch) gives the exact answer.
  The kernel streams the codes once and writes Q * N / block_n floats: no (Q, N) score matrix,
  and no sorting network inside the kernel.
* ``attend``: softmax(scores / temperature) @ values with an online softmax (running max,
  denominator, numerator) over the tiles of one split of N; the splits' partials are merged after.

Layout, for bandwidth: a program scores ``BLOCK_Q`` queries against one tile of codes, and the
programs that share a tile are adjacent in the grid, so the tile is read from HBM once and from L2
by the others. The look-up table is re-laid out as (query block, M, 256, BLOCK_Q): the entries of
one centroid for the block's queries are contiguous, so a gather fetches one 32-byte sector for
BLOCK_Q queries (instead of one sector per query), and one query block's table (M * 256 *
BLOCK_Q entries, 128 KiB at M=16 in fp32) stays in L1. Codes are read as int32 words (four
sub-quantisers a load) when M is a multiple of 4.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import triton
import triton.language as tl

from .checks import CENTROIDS

_L1_BUDGET = 128 * 1024  # bytes of look-up table a program may keep hot in L1
_SECTOR = 32  # bytes: the granularity of an L1/L2 access


@triton.jit
def _tile_scores(
    codes_ptr,
    lut_blk,
    row0,
    N,
    M: tl.constexpr,
    AS_WORDS: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Scores (BLOCK_N, BLOCK_Q) in fp32 of rows row0.. against the block's queries, and the mask
    of rows that exist. Out-of-range rows read code 0, so every gather address is valid."""
    local = tl.arange(0, BLOCK_N)
    in_range = local < N - row0
    qs = tl.arange(0, BLOCK_Q)
    acc = tl.zeros((BLOCK_N, BLOCK_Q), dtype=tl.float32)
    if AS_WORDS:
        base = codes_ptr + row0 * (M // 4)  # codes viewed as int32: four codes a word
        for w in tl.static_range(M // 4):
            word = tl.load(base + local * (M // 4) + w, mask=in_range, other=0)
            for b in tl.static_range(4):
                code = (word >> (8 * b)) & 255  # little-endian: byte b is sub-quantiser 4w+b
                entry = ((4 * w + b) * 256 + code)[:, None] * BLOCK_Q + qs[None, :]
                acc += tl.load(lut_blk + entry).to(tl.float32)
    else:
        base = codes_ptr + row0 * M
        for j in tl.static_range(M):
            code = tl.load(base + local * M + j, mask=in_range, other=0).to(tl.int32)
            entry = (j * 256 + code)[:, None] * BLOCK_Q + qs[None, :]
            acc += tl.load(lut_blk + entry).to(tl.float32)
    return acc, in_range


@triton.jit
def _bucket_max_kernel(
    codes_ptr,
    lut_ptr,
    allowed_ptr,
    out_ptr,
    N,
    Q,
    NB,
    QB,
    M: tl.constexpr,
    AS_WORDS: tl.constexpr,
    HAS_ALLOWED: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    # Query block varies fastest: the QB programs reading one tile of codes run side by side.
    pid = tl.program_id(0)
    pid_q = pid % QB
    pid_n = pid // QB
    row0 = pid_n.to(tl.int64) * BLOCK_N
    lut_blk = lut_ptr + pid_q * (M * 256 * BLOCK_Q)
    scores, keep = _tile_scores(codes_ptr, lut_blk, row0, N, M, AS_WORDS, BLOCK_Q, BLOCK_N)
    if HAS_ALLOWED:
        local = tl.arange(0, BLOCK_N)
        keep = keep & (tl.load(allowed_ptr + row0 + local, mask=keep, other=0) != 0)
    best = tl.max(tl.where(keep[:, None], scores, float("-inf")), axis=0)
    qs = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    tl.store(out_ptr + qs.to(tl.int64) * NB + pid_n, best, mask=qs < Q)


@triton.jit
def _attend_kernel(
    codes_ptr,
    lut_ptr,
    allowed_ptr,
    values_ptr,
    m_ptr,
    l_ptr,
    acc_ptr,
    N,
    Q,
    NB,
    QB,
    DV,
    S,
    tiles_per_split,
    scale,
    M: tl.constexpr,
    AS_WORDS: tl.constexpr,
    HAS_ALLOWED: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_DV: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_q = pid % QB
    pid_s = pid // QB
    pid_dv = tl.program_id(1)
    lut_blk = lut_ptr + pid_q * (M * 256 * BLOCK_Q)
    local = tl.arange(0, BLOCK_N)
    dvs = pid_dv * BLOCK_DV + tl.arange(0, BLOCK_DV)
    dv_ok = dvs < DV
    m_i = tl.full((BLOCK_Q,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_Q,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_Q, BLOCK_DV), dtype=tl.float32)
    t_start = pid_s * tiles_per_split
    t_end = tl.minimum(t_start + tiles_per_split, NB)
    split_row0 = t_start.to(tl.int64) * BLOCK_N
    for i in range(0, t_end - t_start):
        row0 = split_row0 + i * BLOCK_N
        s, keep = _tile_scores(codes_ptr, lut_blk, row0, N, M, AS_WORDS, BLOCK_Q, BLOCK_N)
        in_range = keep
        if HAS_ALLOWED:
            keep = keep & (tl.load(allowed_ptr + row0 + local, mask=keep, other=0) != 0)
        s = tl.where(keep[:, None], s * scale, float("-inf"))  # log2 units: exp2 below
        m_new = tl.maximum(m_i, tl.max(s, axis=0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # all masked so far: no NaN
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe[None, :])  # (BLOCK_N, BLOCK_Q)
        l_i = l_i * alpha + tl.sum(p, axis=0)
        v_blk = values_ptr + row0 * DV
        v = tl.load(
            v_blk + local[:, None] * DV + dvs[None, :], mask=in_range[:, None] & dv_ok[None, :], other=0.0
        )
        pv = tl.dot(tl.trans(p).to(v.dtype), v, input_precision=DOT_PRECISION)
        acc = acc * alpha[:, None] + pv
        m_i = m_new
    qs = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    q_ok = qs < Q
    row = qs.to(tl.int64) * S + pid_s  # partials laid out (Q, S) and (Q, S, DV)
    if pid_dv == 0:
        tl.store(m_ptr + row, m_i, mask=q_ok)
        tl.store(l_ptr + row, l_i, mask=q_ok)
    tl.store(acc_ptr + row[:, None] * DV + dvs[None, :], acc, mask=q_ok[:, None] & dv_ok[None, :])


def _pow2(x: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, x))))


def scan_block_q(q: int, m: int, dtype: torch.dtype) -> int:
    """Queries per program: one sector of table entries per gather, a table that fits L1."""
    elt = torch.empty((), dtype=dtype).element_size()
    cap = max(1, _L1_BUDGET // (m * CENTROIDS * elt))
    cap = 1 << (cap.bit_length() - 1)  # round down to a power of two
    return max(2, min(_SECTOR // elt, cap, _pow2(q)))


def blocked_lut(lut: torch.Tensor, block_q: int) -> torch.Tensor:
    """(Q, M, 256) -> (ceil(Q / block_q), M, 256, block_q), padded queries zero (a small copy)."""
    q, m, c = lut.shape
    qb = -(-q // block_q)
    padded = lut.new_zeros(qb * block_q, m, c)
    padded[:q] = lut
    return padded.view(qb, block_q, m, c).permute(0, 2, 3, 1).contiguous()


def _codes_arg(codes: torch.Tensor) -> tuple[torch.Tensor, bool]:
    codes = codes.contiguous()
    if codes.shape[1] % 4 == 0 and codes.storage_offset() % 4 == 0:
        return codes.view(torch.int32), True
    return codes, False


def _allowed_arg(allowed: torch.Tensor | None, codes: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if allowed is None:
        return codes, False  # any pointer: the kernel never reads it
    return allowed.contiguous().view(torch.uint8), True


def bucket_max(
    codes: torch.Tensor,
    lut: torch.Tensor,
    allowed: torch.Tensor | None = None,
    *,
    block_n: int = 128,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """(Q, ceil(N / block_n)) float32: each query's best score in each bucket of block_n rows
    (-inf for a bucket with no allowed row). ``out`` is written in place when given."""
    n, m = codes.shape
    q = lut.shape[0]
    nb = -(-n // block_n)
    block_q = scan_block_q(q, m, lut.dtype)
    table = blocked_lut(lut, block_q)
    qb = table.shape[0]
    if out is None:
        out = torch.empty(q, nb, dtype=torch.float32, device=codes.device)
    elif out.shape != (q, nb) or out.dtype != torch.float32 or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous float32 tensor of shape {(q, nb)}")
    codes_arg, as_words = _codes_arg(codes)
    allowed_arg, has_allowed = _allowed_arg(allowed, codes)
    _bucket_max_kernel[(qb * nb,)](
        codes_arg, table, allowed_arg, out, n, q, nb, qb,
        M=m, AS_WORDS=as_words, HAS_ALLOWED=has_allowed, BLOCK_Q=block_q, BLOCK_N=block_n,
        num_warps=4,
    )  # fmt: skip
    return out


def refine_topk(
    codes: torch.Tensor,
    lut: torch.Tensor,
    k: int,
    allowed: torch.Tensor | None,
    bmax: torch.Tensor,
    block_n: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k from the bucket maxima: rescore the rows of each query's k best buckets."""
    n = codes.shape[0]
    q, nb = bmax.shape
    if nb <= k:  # every bucket is a candidate
        rows = torch.arange(n, device=codes.device).expand(q, n)
    else:
        buckets = bmax.topk(k, dim=1).indices  # (Q, k)
        offsets = torch.arange(block_n, device=codes.device)
        rows = (buckets[:, :, None] * block_n + offsets).reshape(q, k * block_n)
    exists = rows < n
    rows = rows.clamp(max=n - 1)
    cand = codes[rows].long()  # (Q, C, M): k * block_n rows a query, never all N
    scores = lut.float().gather(2, cand.transpose(1, 2)).sum(dim=1)  # (Q, C)
    keep = exists if allowed is None else exists & allowed[rows]
    scores = scores.masked_fill(~keep, float("-inf"))
    top, pos = scores.topk(k, dim=1)
    indices = rows.gather(1, pos).masked_fill(top == float("-inf"), -1)
    return top, indices


def pq_scan_triton(
    codes: torch.Tensor, lut: torch.Tensor, k: int, allowed: torch.Tensor | None = None, *, block_n: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    bmax = bucket_max(codes, lut, allowed, block_n=block_n)
    return refine_topk(codes, lut, k, allowed, bmax, block_n)


def attend_block_dv(dv: int) -> int:
    return min(max(16, _pow2(dv)), 128)  # tl.dot needs >= 16; wider values split over programs


def attend_splits(codes: torch.Tensor, q: int, dv: int, block_n: int) -> int:
    """Splits of N so that the grid fills the GPU about four times over."""
    nb = -(-codes.shape[0] // block_n)
    if not codes.is_cuda:
        return min(nb, 2)
    sms = torch.cuda.get_device_properties(codes.device).multi_processor_count
    others = -(-q // 16) * -(-dv // attend_block_dv(dv))
    return max(1, min(nb, -(-4 * sms // others)))


def attend_partials(
    codes: torch.Tensor,
    lut: torch.Tensor,
    values: torch.Tensor,
    temperature: float = 1.0,
    allowed: torch.Tensor | None = None,
    *,
    block_n: int = 64,
    splits: int | None = None,
    out: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per split of N: running max m (Q, S) in log2 units, denominator l (Q, S) and numerator
    acc (Q, S, Dv), all float32; ``combine_partials`` merges them."""
    n, m = codes.shape
    q, dv = lut.shape[0], values.shape[1]
    nb = -(-n // block_n)
    s = splits if splits is not None else attend_splits(codes, q, dv, block_n)
    s = max(1, min(s, nb))
    tiles = -(-nb // s)
    s = -(-nb // tiles)  # no split without a tile
    block_q = 16  # tl.dot's smallest M
    block_dv = attend_block_dv(dv)
    table = blocked_lut(lut, block_q)
    qb = table.shape[0]
    f32: dict[str, Any] = {"dtype": torch.float32, "device": codes.device}
    if out is None:
        out = (torch.empty(q, s, **f32), torch.empty(q, s, **f32), torch.empty(q, s, dv, **f32))
    expected = ((q, s), (q, s), (q, s, dv))
    if tuple(tuple(t.shape) for t in out) != expected or any(t.dtype != torch.float32 for t in out):
        raise ValueError(f"out must be float32 tensors of shapes {expected}")
    m_out, l_out, acc_out = out
    codes_arg, as_words = _codes_arg(codes)
    allowed_arg, has_allowed = _allowed_arg(allowed, codes)
    values = values.contiguous()
    # fp32: three tf32 products (about fp32 accuracy on tensor cores); "ieee" spills registers
    precision = "tf32x3" if values.dtype == torch.float32 else "tf32"
    _attend_kernel[(qb * s, -(-dv // block_dv))](
        codes_arg, table, allowed_arg, values, m_out, l_out, acc_out,
        n, q, nb, qb, dv, s, tiles, math.log2(math.e) / temperature,
        M=m, AS_WORDS=as_words, HAS_ALLOWED=has_allowed, BLOCK_Q=block_q, BLOCK_N=block_n,
        BLOCK_DV=block_dv, DOT_PRECISION=precision, num_warps=8 if block_dv > 64 else 4,
    )  # fmt: skip
    return out


def combine_partials(m: torch.Tensor, l: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:  # noqa: E741
    """Merge split partials: rescale each by 2^(m_s - max m) and divide (Q, Dv) float32."""
    top = m.max(dim=1, keepdim=True).values
    w = torch.exp2(m - top)  # a query with no allowed row gets NaN, as softmax over nothing does
    return (w[:, :, None] * acc).sum(dim=1) / (w * l).sum(dim=1, keepdim=True)


def pq_attend_triton(
    codes: torch.Tensor,
    lut: torch.Tensor,
    values: torch.Tensor,
    temperature: float = 1.0,
    allowed: torch.Tensor | None = None,
    *,
    block_n: int = 64,
    splits: int | None = None,
) -> torch.Tensor:
    m, l, acc = attend_partials(codes, lut, values, temperature, allowed, block_n=block_n, splits=splits)  # noqa: E741
    return combine_partials(m, l, acc)
