"""Input validation for attention_scan, shared by the reference and the kernel paths."""

from __future__ import annotations

import torch

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def check_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
) -> None:
    if q.dim() != 3 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            "expected q (B, H, D), k (B, H, T, D), v (B, H, T, Dv); "
            f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    b, h, d = q.shape
    if k.shape[:2] != (b, h) or k.shape[3] != d:
        raise ValueError(f"k must have shape ({b}, {h}, T, {d}); got {tuple(k.shape)}")
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(f"v must have shape {tuple(k.shape[:3])} + (Dv,); got {tuple(v.shape)}")
    if min(b, h, d, k.shape[2], v.shape[3]) == 0:
        raise ValueError("q, k and v must be non-empty")
    if q.dtype not in DTYPES or not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"q, k, v must share one float dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if not q.device == k.device == v.device:
        raise ValueError("q, k and v must be on one device")
    if state is not None:
        m, u, w = state
        shapes = ((b, h), (b, h), (b, h, v.shape[3]))
        if tuple(tuple(t.shape) for t in (m, u, w)) != shapes:
            raise ValueError(f"state (m, u, w) must have shapes {shapes}")
        if any(t.dtype != torch.float32 or t.device != q.device for t in (m, u, w)):
            raise ValueError("state tensors must be float32 on the device of q")
