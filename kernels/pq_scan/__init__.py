"""pq_scan: scoring product-quantised codes against per-query look-up tables, with a fused top-k
and a softmax read-out; the GPU path of the memory bank's search.

    scores, indices = pq_scan(codes, lut, k)             # (Q, k) float32, (Q, k) int64
    out = pq_attend(codes, lut, values, temperature=0.1) # (Q, Dv) float32

``codes`` is (N, M) uint8 (M sub-quantisers of 256 centroids); ``lut`` is (Q, M, 256) float32,
bfloat16 or float16 with ``lut[q, j, c]`` the inner product of query q's j-th sub-vector with
centroid c; the score of row n is ``sum_j lut[q, j, codes[n, j]]``. ``allowed`` (N,) bool leaves
out deleted rows. Decoded vectors are never built, and on the Triton path neither is the (Q, N)
score matrix.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from kernels.dispatch import use_triton

from .checks import check_codes_lut, check_k, check_values
from .reference import pq_attend_reference, pq_scan_reference, pq_scores

__all__ = ["PQTopK", "pq_attend", "pq_scan", "pq_scores"]


class PQTopK(NamedTuple):
    """Largest first. Past the allowed rows (fewer than k), scores are -inf and indices -1."""

    scores: torch.Tensor  # (Q, k) float32
    indices: torch.Tensor  # (Q, k) int64 rows of codes


def pq_scan(
    codes: torch.Tensor,
    lut: torch.Tensor,
    k: int,
    *,
    allowed: torch.Tensor | None = None,
    backend: str = "auto",
) -> PQTopK:
    """The k best-scoring rows of ``codes`` for each query of ``lut``."""
    check_codes_lut(codes, lut, allowed)
    check_k(k, codes.shape[0])
    if use_triton(backend, codes, lut):
        from .triton import pq_scan_triton  # lazy: importing the op must not import triton

        return PQTopK(*pq_scan_triton(codes, lut, k, allowed))
    return PQTopK(*pq_scan_reference(codes, lut, k, allowed))


def pq_attend(
    codes: torch.Tensor,
    lut: torch.Tensor,
    values: torch.Tensor,
    *,
    temperature: float = 1.0,
    allowed: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """softmax(scores / temperature) @ values over all allowed rows: (Q, Dv) float32 (NaN for a
    query with no allowed row, as a softmax over nothing)."""
    check_codes_lut(codes, lut, allowed)
    check_values(values, codes, temperature)
    if use_triton(backend, codes, lut, values):
        from .triton import pq_attend_triton

        return pq_attend_triton(codes, lut, values, temperature, allowed)
    return pq_attend_reference(codes, lut, values, temperature, allowed)
