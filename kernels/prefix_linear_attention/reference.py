"""Prefix linear attention (JRT-RNN's "just read twice"), the definition in plain PyTorch.

Shapes: ``q, k`` are ``(B, H, T, Dk)``, ``v`` is ``(B, H, T, Dv)``; states are ``(B, H, Dk, Dv)``
in float32. The feature map is the identity: a caller wanting ``phi`` (elu + 1, a Taylor map...)
applies it to ``q`` and ``k`` first, which keeps the kernel a pure streaming op. No normaliser
(as in flash-linear-attention's ``normalize=False``): a normaliser is one extra value column
(append a column of ones to ``v``) if a model wants it.

With ``P = prefix_len`` and ``S0`` the initial state (zero unless given)::

    S_pre = S0 + sum_{j < P} k_j v_j^T                 # the non-causal read of the prefix
    o_t   = scale * q_t^T (S_pre + sum_{j <= t} k_j v_j^T)   for every t in [0, T)
    final = S_pre + sum_{j < T} k_j v_j^T

So the prefix is read twice: once non-causally (every position, the prefix's own included, sees
the whole prefix) and once causally like any token. ``prefix_len = 0`` is plain causal linear
attention, and the decode step ``S += k v^T; o = scale * q^T S`` continues the prefill exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor


def default_scale(dk: int, scale: float | None) -> float:
    return dk**-0.5 if scale is None else scale


def prefix_state(k: Tensor, v: Tensor, prefix_len: int, initial_state: Tensor | None = None) -> Tensor:
    """``S0 + sum_{j < P} k_j v_j^T`` in float32, shape ``(B, H, Dk, Dv)``."""
    kp = k[:, :, :prefix_len].float()
    vp = v[:, :, :prefix_len].float()
    state = kp.transpose(-1, -2) @ vp
    if initial_state is not None:
        state = state + initial_state.float()
    return state


def prefix_linear_attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    prefix_len: int,
    scale: float | None = None,
    initial_state: Tensor | None = None,
    chunk: int = 64,
) -> tuple[Tensor, Tensor]:
    """Chunked form of the definition (fp32 inside): returns ``(o, final_state)``, ``o`` in
    ``q``'s dtype and the state in float32. Chunking only bounds memory; the result is exact."""
    s = default_scale(q.shape[-1], scale)
    state = prefix_state(k, v, prefix_len, initial_state)
    T = q.shape[2]
    out = torch.empty(*q.shape[:3], v.shape[-1], dtype=torch.float32, device=q.device)
    for t0 in range(0, T, chunk):
        qc, kc, vc = (x[:, :, t0 : t0 + chunk].float() for x in (q, k, v))
        n = qc.shape[2]
        causal = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
        scores = (qc @ kc.transpose(-1, -2)).masked_fill(~causal, 0.0)
        out[:, :, t0 : t0 + n] = s * (qc @ state + scores @ vc)
        state = state + kc.transpose(-1, -2) @ vc
    return out.to(q.dtype), state


def prefix_linear_attention_step_reference(
    q: Tensor, k: Tensor, v: Tensor, state: Tensor, scale: float | None = None
) -> tuple[Tensor, Tensor]:
    """One decode token: ``q, k`` ``(B, H, Dk)``, ``v`` ``(B, H, Dv)``, ``state`` ``(B, H, Dk, Dv)``.
    Returns ``(o, new_state)``: the token is added to the state before it is read."""
    s = default_scale(q.shape[-1], scale)
    new_state = state.float() + k.float().unsqueeze(-1) * v.float().unsqueeze(-2)
    o = s * (q.float().unsqueeze(-2) @ new_state).squeeze(-2)
    return o.to(q.dtype), new_state


def causal_linear_attention_bruteforce(
    q: Tensor, k: Tensor, v: Tensor, prefix_len: int, scale: float | None = None
) -> Tensor:
    """O(T^2) form, for tests: position t attends to ``j <= t`` and to the whole prefix again."""
    s = default_scale(q.shape[-1], scale)
    qf, kf, vf = q.double(), k.double(), v.double()
    T = q.shape[2]
    idx = torch.arange(T, device=q.device)
    causal = (idx[None, :] <= idx[:, None]).double()  # (T, T): j <= t
    prefix = (idx[None, :] < prefix_len).double()  # (1, T): j in the prefix, for every t
    weight = causal + prefix
    scores = (qf @ kf.transpose(-1, -2)) * weight
    return (s * scores @ vf).to(q.dtype)
