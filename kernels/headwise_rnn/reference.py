"""Head-wise LSTM and GRU over a sequence (FlashRNN style), the definition in plain PyTorch.

The input projections are precomputed by the caller: ``wx`` is ``(B, T, H, G*Dh)`` with the
gates stacked gate-major along the last dim (``[gate 0 | gate 1 | ...]``, ``Dh`` each). Each head
has its own recurrent matrix, ``r[h]`` of shape ``(G*Dh, Dh)`` (PyTorch's ``weight_hh`` layout,
``gates = r[h] @ h_prev``) and recurrent bias ``b[h]`` of shape ``(G*Dh,)`` (PyTorch's
``bias_hh``); fold the input bias (``bias_ih``) into ``wx``. Heads never mix: hidden size H*Dh
with a block-diagonal recurrent matrix.

Gate order and equations are PyTorch's (``torch.nn.LSTM`` / ``torch.nn.GRU``), with
``a_g = wx_g + R_g h + b_g``:

- LSTM, G=4, gates (i, f, g, o): ``c' = s(a_f) c + s(a_i) tanh(a_g)``, ``h' = s(a_o) tanh(c')``.
- GRU, G=3, gates (r, z, n): ``r = s(a_r)``, ``z = s(a_z)``,
  ``n = tanh(wx_n + r * (R_n h + b_n))`` (the reset gate scales the recurrent part, bias
  included), ``h' = (1 - z) n + z h``.

Outputs: every hidden state ``h`` ``(B, T, H, Dh)`` in ``wx``'s dtype, and the final states
``(B, H, Dh)`` in float32 (``c_n`` is None for the GRU). States run in float32 throughout.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

Cell = Literal["lstm", "gru"]
GATES: dict[str, int] = {"lstm": 4, "gru": 3}


class RNNOutput(NamedTuple):
    h: Tensor  # (B, T, H, Dh), every step's hidden state
    h_n: Tensor  # (B, H, Dh), float32
    c_n: Tensor | None  # (B, H, Dh), float32; LSTM only


def lstm_cell(pre: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """``pre`` ``(..., 4, Dh)``: all four pre-activations; returns ``(h', c')``."""
    i, f, g, o = pre.unbind(-2)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_cell(x: Tensor, rec: Tensor, h: Tensor) -> Tensor:
    """``x`` ``(..., 3, Dh)`` input part, ``rec`` ``(..., 3, Dh)`` recurrent part with its bias."""
    r = torch.sigmoid(x[..., 0, :] + rec[..., 0, :])
    z = torch.sigmoid(x[..., 1, :] + rec[..., 1, :])
    n = torch.tanh(x[..., 2, :] + r * rec[..., 2, :])
    return (1 - z) * n + z * h


def headwise_rnn_reference(
    wx: Tensor,
    r: Tensor,
    b: Tensor | None = None,
    h0: Tensor | None = None,
    c0: Tensor | None = None,
    cell: Cell = "lstm",
) -> RNNOutput:
    """A step loop in float32; see the module docstring for shapes and equations."""
    B, T, H, GD = wx.shape
    G = GATES[cell]
    Dh = GD // G
    rf = r.float()
    bias = b.float().view(H, G, Dh) if b is not None else torch.zeros(H, G, Dh, device=wx.device)
    h = h0.float() if h0 is not None else torch.zeros(B, H, Dh, device=wx.device)
    c = c0.float() if c0 is not None else torch.zeros(B, H, Dh, device=wx.device)
    x_all = wx.float().view(B, T, H, G, Dh)
    out = torch.empty(B, T, H, Dh, dtype=wx.dtype, device=wx.device)
    for t in range(T):
        rec = torch.einsum("hnk,bhk->bhn", rf, h).view(B, H, G, Dh) + bias
        if cell == "lstm":
            h, c = lstm_cell(x_all[:, t] + rec, c)
        else:
            h = gru_cell(x_all[:, t], rec, h)
        out[:, t] = h.to(wx.dtype)
    return RNNOutput(out, h, c if cell == "lstm" else None)
