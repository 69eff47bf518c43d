"""Prefix linear attention (JRT-RNN): prefill with a non-causal prefix read, and a decode step.

``prefix_linear_attention(q, k, v, prefix_len)`` returns ``(o, final_state)``;
``prefix_linear_attention_step(q, k, v, state)`` adds one token. The definition, shapes and
conventions are in ``reference.py``; the Triton kernels in ``triton.py`` (imported only when used).
"""

from __future__ import annotations

import torch
from torch import Tensor

from kernels.dispatch import use_triton

from .reference import (
    default_scale,
    prefix_linear_attention_reference,
    prefix_linear_attention_step_reference,
)

__all__ = ["prefix_linear_attention", "prefix_linear_attention_step"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _check_qkv(q: Tensor, k: Tensor, v: Tensor, ndim: int) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.dim() != ndim:
            raise ValueError(f"{name} must have {ndim} dims, got shape {tuple(x.shape)}")
        if x.dtype not in _DTYPES:
            raise ValueError(f"{name} must be float32, float16 or bfloat16, got {x.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.shape != k.shape:
        raise ValueError(f"q and k must have the same shape, got {tuple(q.shape)} and {tuple(k.shape)}")
    if v.shape[:-1] != q.shape[:-1]:
        raise ValueError(f"v must match q in all but the last dim, got {tuple(v.shape)} vs {tuple(q.shape)}")
    if q.shape[-1] == 0 or v.shape[-1] == 0:
        raise ValueError("head dims must be positive")
    if not (q.device == k.device == v.device):
        raise ValueError("q, k, v must be on one device")


def _check_state(state: Tensor, q: Tensor, v: Tensor, name: str) -> None:
    want = (q.shape[0], q.shape[1], q.shape[-1], v.shape[-1])
    if tuple(state.shape) != want:
        raise ValueError(f"{name} must have shape {want}, got {tuple(state.shape)}")
    if state.device != q.device:
        raise ValueError(f"{name} must be on {q.device}")


def prefix_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    prefix_len: int,
    *,
    scale: float | None = None,
    initial_state: Tensor | None = None,
    out: Tensor | None = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Prefill ``T`` tokens whose first ``prefix_len`` form the non-causally read prefix.

    ``q, k``: ``(B, H, T, Dk)``; ``v``: ``(B, H, T, Dv)``; ``scale`` defaults to ``Dk ** -0.5``;
    ``initial_state`` (``(B, H, Dk, Dv)``, e.g. a previous call's final state) is added to the
    prefix state. Returns ``o`` ``(B, H, T, Dv)`` in the input dtype (written into ``out`` when
    given) and the float32 final state ``(B, H, Dk, Dv)``.
    """
    _check_qkv(q, k, v, 4)
    T = q.shape[2]
    if isinstance(prefix_len, bool) or not isinstance(prefix_len, int) or not 0 <= prefix_len <= T:
        raise ValueError(f"prefix_len must be an int in [0, T={T}], got {prefix_len!r}")
    if initial_state is not None:
        _check_state(initial_state, q, v, "initial_state")
    want_out = (*q.shape[:3], v.shape[-1])
    if out is not None and (tuple(out.shape) != want_out or out.dtype != q.dtype or out.device != q.device):
        raise ValueError(f"out must be a {q.dtype} tensor of shape {want_out} on {q.device}")
    s = default_scale(q.shape[-1], scale)

    if not use_triton(backend, q, k, v):
        o, state = prefix_linear_attention_reference(q, k, v, prefix_len, s, initial_state)
        if out is not None:
            out.copy_(o)
            o = out
        return o, state

    from . import triton as kernel  # lazy: importing triton costs time and needs the package

    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    if out is None or not out.is_contiguous():
        o = torch.empty(want_out, dtype=q.dtype, device=q.device)
    else:
        o = out
    s0 = initial_state.float().contiguous() if initial_state is not None else None
    final = torch.empty(
        q.shape[0], q.shape[1], q.shape[-1], v.shape[-1], dtype=torch.float32, device=q.device
    )
    kernel.prefill(q, k, v, prefix_len, s, s0, o, final)
    if out is not None and o is not out:
        out.copy_(o)
        o = out
    return o, final


def prefix_linear_attention_step(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    state: Tensor,
    *,
    scale: float | None = None,
    inplace: bool = False,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """One decode token: ``q, k`` ``(B, H, Dk)``, ``v`` ``(B, H, Dv)``, ``state`` float32
    ``(B, H, Dk, Dv)``. Returns ``(o, new_state)``; ``inplace`` updates ``state`` itself."""
    _check_qkv(q, k, v, 3)
    _check_state(state, q, v, "state")
    if state.dtype != torch.float32:
        raise ValueError(f"state must be float32, got {state.dtype}")
    s = default_scale(q.shape[-1], scale)

    if not use_triton(backend, q, k, v, state):
        o, new_state = prefix_linear_attention_step_reference(q, k, v, state, s)
        if inplace:
            state.copy_(new_state)
            new_state = state
        return o, new_state

    from . import triton as kernel

    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    o = torch.empty(*q.shape[:2], v.shape[-1], dtype=q.dtype, device=q.device)
    if inplace and state.is_contiguous():
        kernel.step(q, k, v, state, s, o, state)
        return o, state
    new_state = torch.empty_like(state, memory_format=torch.contiguous_format)
    kernel.step(q, k, v, state.contiguous(), s, o, new_state)
    if inplace:
        state.copy_(new_state)
        new_state = state
    return o, new_state
