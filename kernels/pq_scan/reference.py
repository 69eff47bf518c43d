"""pq_scan in plain PyTorch: the definition the Triton kernel is tested against.

Product quantisation splits a vector into M sub-vectors and stores each as the index (one byte)
of its nearest of 256 centroids. For a query, ``lut[q, j, c]`` is the inner product of the
query's j-th sub-vector with centroid c of sub-space j, so the query's score against row n is
``sum_j lut[q, j, codes[n, j]]`` (asymmetric distance: the query is not quantised).
"""

from __future__ import annotations

import torch


def pq_scores(codes: torch.Tensor, lut: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """(Q, N) float32 scores; rows not ``allowed`` score -inf."""
    lut32 = lut.float()
    scores = torch.zeros(lut.shape[0], codes.shape[0], dtype=torch.float32, device=codes.device)
    for j in range(codes.shape[1]):  # one sub-space at a time: (Q, N) memory, never (Q, N, M)
        scores += lut32[:, j, codes[:, j].long()]
    if allowed is not None:
        scores.masked_fill_(~allowed, float("-inf"))
    return scores


def pq_scan_reference(
    codes: torch.Tensor, lut: torch.Tensor, k: int, allowed: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (scores, indices), largest first; slots past the allowed rows hold -inf and -1."""
    scores, indices = pq_scores(codes, lut, allowed).topk(k, dim=1)
    return scores, indices.masked_fill(scores == float("-inf"), -1)


def pq_attend_reference(
    codes: torch.Tensor,
    lut: torch.Tensor,
    values: torch.Tensor,
    temperature: float = 1.0,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(scores / temperature) @ values over all allowed rows: (Q, Dv) float32."""
    weights = torch.softmax(pq_scores(codes, lut, allowed) / temperature, dim=1)
    return weights @ values.float()
