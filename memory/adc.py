"""Asymmetric distance computation (ADC): score coded vectors against float queries with
lookup tables, in chunks, keeping a running top-k with ``np.argpartition``.

Queries stay exact; only the stored side is quantised. A vector's inner product with query q
is ``sum_j lut[q, j, codes[i, j]]``; squared L2 follows as ``||q||^2 - 2 ip + ||x_hat||^2``.
"""

from __future__ import annotations

import numpy as np

# Score block (queries x chunk) kept under ~4M floats (16 MB).
_BLOCK_FLOATS = 1 << 22
_MIN_CHUNK = 1024
# Below this many queries, gathering along each query's table row beats gathering (K, nq) rows.
_FEW_QUERIES = 16


def adc_ip(lut: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Inner products (nq, n) float32 of the queries behind ``lut`` (nq, M, K) and ``codes`` (n, M)."""
    nq, ncol, _ = lut.shape
    out = np.zeros((nq, len(codes)), dtype=np.float32)
    if nq < _FEW_QUERIES:
        for j in range(ncol):
            out += np.take(lut[:, j, :], codes[:, j].astype(np.intp), axis=1)
        return out
    # Many queries: per column, gather whole (nq,) rows of the transposed table, contiguous.
    table = np.ascontiguousarray(lut.transpose(1, 2, 0))  # (M, K, nq)
    acc = np.zeros((len(codes), nq), dtype=np.float32)
    for j in range(ncol):
        acc += table[j][codes[:, j]]
    out[:] = acc.T
    return out


def chunk_rows(nq: int) -> int:
    return max(_MIN_CHUNK, _BLOCK_FLOATS // max(1, nq))


def adc_scores(
    lut: np.ndarray, codes: np.ndarray, xnorms: np.ndarray | None, qnorms: np.ndarray | None
) -> np.ndarray:
    """Scores (nq, n), larger is better: inner products, or negated squared L2 distances when
    ``xnorms`` (||x_hat||^2 per vector) and ``qnorms`` (||q||^2 per query) are given."""
    ip = adc_ip(lut, codes)
    if xnorms is None or qnorms is None:
        return ip
    ip *= 2.0
    ip -= xnorms[None, :]
    ip -= qnorms[:, None]
    return ip


def topk_merge(
    best_s: np.ndarray, best_i: np.ndarray, scores: np.ndarray, index: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The k largest of the running best (nq, k0) and a new block (nq, c) of ``scores`` whose
    columns are the positions ``index`` (c,)."""
    s = np.concatenate([best_s, scores], axis=1)
    i = np.concatenate([best_i, np.broadcast_to(index, scores.shape)], axis=1)
    if s.shape[1] <= k:
        return s, i
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    return np.take_along_axis(s, part, axis=1), np.take_along_axis(i, part, axis=1)


def sort_desc(scores: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ordered best first; ties by the smaller index, so results do not depend on chunking."""
    order = np.lexsort((index, -scores), axis=1) if scores.size else np.zeros(scores.shape, np.intp)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(index, order, axis=1)


def adc_topk(
    lut: np.ndarray,
    codes: np.ndarray,
    k: int,
    xnorms: np.ndarray | None = None,
    qnorms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``min(k, n)`` by ADC score per query: (scores (nq, k') float32, row positions
    (nq, k') int64), best first. Scores are larger-is-better (negated distances for L2)."""
    nq = lut.shape[0]
    n = len(codes)
    best_s = np.empty((nq, 0), dtype=np.float32)
    best_i = np.empty((nq, 0), dtype=np.int64)
    step = chunk_rows(nq)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        xn = None if xnorms is None else xnorms[lo:hi]
        block = adc_scores(lut, codes[lo:hi], xn, qnorms)
        best_s, best_i = topk_merge(best_s, best_i, block, np.arange(lo, hi, dtype=np.int64), k)
    return sort_desc(best_s, best_i)
