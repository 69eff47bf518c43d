"""Input validation for pq_scan and pq_attend, shared by the reference and the kernel paths, so
that both reject the same bad input with the same clear ValueError."""

from __future__ import annotations

import torch

LUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
CENTROIDS = 256  # 8-bit codes: one byte per sub-quantiser


def check_codes_lut(codes: torch.Tensor, lut: torch.Tensor, allowed: torch.Tensor | None) -> None:
    if codes.dim() != 2 or codes.dtype != torch.uint8:
        raise ValueError(f"codes must be a 2-D uint8 tensor (N, M); got {tuple(codes.shape)} {codes.dtype}")
    n, m = codes.shape
    if n == 0 or m == 0:
        raise ValueError(f"codes must be non-empty; got shape {tuple(codes.shape)}")
    if lut.dim() != 3 or lut.shape[1] != m or lut.shape[2] != CENTROIDS:
        raise ValueError(
            f"lut must have shape (Q, {m}, {CENTROIDS}) for codes with M={m}; got {tuple(lut.shape)}"
        )
    if lut.shape[0] == 0:
        raise ValueError("lut must hold at least one query")
    if lut.dtype not in LUT_DTYPES:
        raise ValueError(f"lut must be float32, bfloat16 or float16; got {lut.dtype}")
    if lut.device != codes.device:
        raise ValueError(f"codes and lut must be on one device; got {codes.device} and {lut.device}")
    if allowed is not None:
        if allowed.dtype != torch.bool or allowed.shape != (n,):
            raise ValueError(
                f"allowed must be a bool tensor of shape ({n},); got {tuple(allowed.shape)} {allowed.dtype}"
            )
        if allowed.device != codes.device:
            raise ValueError("allowed must be on the device of codes")


def check_k(k: int, n: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an int in [1, N={n}]; got {k!r}")


def check_values(values: torch.Tensor, codes: torch.Tensor, temperature: float) -> None:
    if values.dim() != 2 or values.shape[0] != codes.shape[0] or values.shape[1] == 0:
        raise ValueError(f"values must have shape (N={codes.shape[0]}, Dv); got {tuple(values.shape)}")
    if values.dtype not in LUT_DTYPES:
        raise ValueError(f"values must be float32, bfloat16 or float16; got {values.dtype}")
    if values.device != codes.device:
        raise ValueError("values must be on the device of codes")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive; got {temperature!r}")
