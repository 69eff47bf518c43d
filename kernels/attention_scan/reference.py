"""attention_scan in plain PyTorch: the definition the Triton kernel is tested against.

Aaren ("Attention as an RNN", Feng et al. 2024): one query per head attends to a growing prefix of
keys, and every prefix's output is wanted, o_t = sum_{i<=t} softmax(s_1..s_t)_i v_i with
s_i = scale * q . k_i. Streaming keeps the state (m, u, w): m the running max of the scores,
u = sum_i exp(s_i - m) and w = sum_i exp(s_i - m) v_i, so o_t = w_t / u_t, and two states combine
associatively: m = max(m1, m2), u = u1 e^(m1-m) + u2 e^(m2-m), w likewise.

Here the prefix sums are taken in log space with ``logcumsumexp`` (values split into their
positive and negative parts so that the logarithm exists): O(T * Dv) memory and stable for any
score range. tests/test_kernel_attention_scan.py checks it against the literal masked softmax.
"""

from __future__ import annotations

import torch

State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def attention_scan_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, state: State | None = None
) -> tuple[torch.Tensor, State]:
    """All prefix outputs (B, H, T, Dv) in v's dtype, and the state (m, u, w) after the last step."""
    work = torch.float64 if q.dtype == torch.float64 else torch.float32
    s = torch.einsum("bhd,bhtd->bht", q.to(work), k.to(work)) * scale
    vals = v.to(work)
    m = s.max(dim=2).values
    if state is not None:  # the carried state acts as one earlier step: score m + log u, value w / u
        m0, u0, w0 = (t.to(work) for t in state)
        m = torch.maximum(m, m0)
        s = torch.cat([(m0 + torch.log(u0))[..., None], s], dim=2)
        first = torch.where(u0[..., None] > 0, w0 / u0[..., None], torch.zeros_like(w0))
        vals = torch.cat([first[:, :, None], vals], dim=2)
    log_den = torch.logcumsumexp(s, dim=2)[..., None]
    pos = torch.logcumsumexp(s[..., None] + torch.log(vals.clamp(min=0)), dim=2)
    neg = torch.logcumsumexp(s[..., None] + torch.log((-vals).clamp(min=0)), dim=2)
    out = torch.exp(pos - log_den) - torch.exp(neg - log_den)
    if state is not None:
        out = out[:, :, 1:]
    u = torch.exp(log_den[:, :, -1, 0] - m)
    w = out[:, :, -1] * u[..., None]
    return out.to(v.dtype), (m.float(), u.float(), w.float())


def attention_scan_naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """The literal definition, O(T^2): softmax over each prefix through a causal mask (for tests)."""
    s = torch.einsum("bhd,bhtd->bht", q, k) * scale
    t = s.shape[-1]
    causal = torch.ones(t, t, dtype=torch.bool, device=s.device).tril()
    scores = s[:, :, None, :].expand(-1, -1, t, -1).masked_fill(~causal, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v
