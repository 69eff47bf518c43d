"""Read-outs over ADC candidates: exact re-ranking, and the attention read-out of MBC."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .adc import adc_scores, adc_topk, chunk_rows, sort_desc

# Floats per block of gathered candidate vectors (queries x candidates x dim), ~32 MB.
_RERANK_FLOATS = 1 << 23


def exact_scores(
    q: np.ndarray, cand: np.ndarray, fetch: Callable[[np.ndarray], np.ndarray], l2: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Re-score candidate positions (nq, c) with the exact vectors ``fetch(positions)`` gives;
    returns (larger-is-better scores, positions), best first."""
    nq, c = cand.shape
    dim = q.shape[1]
    out = np.empty((nq, c), dtype=np.float32)
    step = max(1, _RERANK_FLOATS // max(1, c * dim))
    for lo in range(0, nq, step):
        block = cand[lo : lo + step]
        vecs = fetch(block.ravel()).reshape(len(block), c, dim)
        if l2:
            diff = vecs - q[lo : lo + step, None, :]
            out[lo : lo + step] = -np.einsum("qcd,qcd->qc", diff, diff)
        else:
            out[lo : lo + step] = np.einsum("qd,qcd->qc", q[lo : lo + step], vecs)
    return sort_desc(out, cand)


def attend_codes(
    lut: np.ndarray,
    codes: np.ndarray,
    values: Callable[[np.ndarray], np.ndarray],
    temperature: float,
    top: int | None,
    xnorms: np.ndarray | None,
    qnorms: np.ndarray | None,
) -> np.ndarray:
    """``softmax(adc_score / temperature) @ values`` per query (nq, dv).

    Without ``top`` the softmax streams over chunks of codes (running max and sum, as in
    flash attention), so neither the full score matrix nor all values are held at once.
    """
    nq = lut.shape[0]
    if top is not None:
        s, p = adc_topk(lut, codes, top, xnorms, qnorms)
        logits = s.astype(np.float64) / temperature
        w = np.exp(logits - logits[:, :1])  # column 0 is the row maximum (sorted best first)
        w /= w.sum(axis=1, keepdims=True)
        v = values(p.ravel()).astype(np.float64)
        v = v.reshape(nq, p.shape[1], -1)
        return np.einsum("qt,qtd->qd", w, v).astype(np.float32)
    run_max = np.full(nq, -np.inf)
    run_sum = np.zeros(nq)
    acc: np.ndarray | None = None
    step = chunk_rows(nq)
    for lo in range(0, len(codes), step):
        hi = min(len(codes), lo + step)
        xn = None if xnorms is None else xnorms[lo:hi]
        logits = adc_scores(lut, codes[lo:hi], xn, qnorms).astype(np.float64) / temperature
        new_max = np.maximum(run_max, logits.max(axis=1))
        scale = np.exp(run_max - new_max)
        w = np.exp(logits - new_max[:, None])
        v = values(np.arange(lo, hi)).astype(np.float64)
        acc = w @ v if acc is None else acc * scale[:, None] + w @ v
        run_sum = run_sum * scale + w.sum(axis=1)
        run_max = new_max
    assert acc is not None  # the bank is non-empty
    return (acc / run_sum[:, None]).astype(np.float32)
