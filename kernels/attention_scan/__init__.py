"""attention_scan: Aaren's attention as an RNN, every prefix output of one query per head in one
pass, with the (max, denominator, numerator) state carried so a stream can continue.

    res = attention_scan(q, k, v)                 # q (B, H, D), k (B, H, T, D), v (B, H, T, Dv)
    res.out                                       # (B, H, T, Dv): o_t = softmax(s_1..t) @ v_1..t
    more = attention_scan(q, k2, v2, state=res.state)   # continues the stream after T steps

s_t = scale * q . k_t, scale 1/sqrt(D) by default. The state (m, u, w) holds the running max of
the scores (natural units), u = sum exp(s_i - m) and w = sum exp(s_i - m) v_i, all float32.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from kernels.dispatch import use_triton

from .checks import check_inputs
from .reference import attention_scan_reference

__all__ = ["ScanResult", "ScanState", "attention_scan"]


class ScanState(NamedTuple):
    m: torch.Tensor  # (B, H) running max of the scores
    u: torch.Tensor  # (B, H) denominator, relative to exp(m)
    w: torch.Tensor  # (B, H, Dv) numerator, relative to exp(m)


class ScanResult(NamedTuple):
    out: torch.Tensor  # (B, H, T, Dv) in v's dtype
    state: ScanState  # after the last step


def attention_scan(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float | None = None,
    state: ScanState | None = None,
    backend: str = "auto",
) -> ScanResult:
    """All prefix outputs of softmax attention of q over (k, v), and the final scan state."""
    check_inputs(q, k, v, state)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite; got {scale}")
    if use_triton(backend, q, k, v):
        from .triton import attention_scan_triton  # lazy: importing the op must not import triton

        out, new_state = attention_scan_triton(q, k, v, scale, state)
    else:
        out, new_state = attention_scan_reference(q, k, v, scale, state)
    return ScanResult(out, ScanState(*new_state))
