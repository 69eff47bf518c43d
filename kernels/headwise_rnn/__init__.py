"""Head-wise LSTM and GRU forward over a whole sequence, recurrent weights kept on chip.

``headwise_rnn(wx, r, b, h0, c0, cell="lstm" | "gru")`` returns ``RNNOutput(h, h_n, c_n)``. The
definition (shapes, gate order, the GRU variant) is in ``reference.py``; the Triton kernels in
``triton.py`` (imported only when used).
"""

from __future__ import annotations

import torch
from torch import Tensor

from kernels.dispatch import use_triton

from .reference import GATES, Cell, RNNOutput, headwise_rnn_reference

__all__ = ["GATES", "Cell", "RNNOutput", "fits_on_chip", "headwise_rnn"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _check(
    wx: Tensor, r: Tensor, b: Tensor | None, h0: Tensor | None, c0: Tensor | None, cell: str
) -> tuple[int, int, int, int]:
    if cell not in GATES:
        raise ValueError(f"cell must be one of {', '.join(GATES)}, got {cell!r}")
    G = GATES[cell]
    if wx.dim() != 4:
        raise ValueError(f"wx must be (B, T, H, G*Dh), got shape {tuple(wx.shape)}")
    B, T, H, GD = wx.shape
    if r.dim() != 3 or r.shape[0] != H or r.shape[1] != G * r.shape[2] or r.shape[2] == 0:
        raise ValueError(f"r must be (H, {G}*Dh, Dh) with H={H} for a {cell}, got shape {tuple(r.shape)}")
    Dh = r.shape[2]
    if G * Dh != GD:
        raise ValueError(f"wx's last dim must be {G}*Dh = {G * Dh} for a {cell}, got {GD}")
    for name, x in (("wx", wx), ("r", r)):
        if x.dtype not in _DTYPES:
            raise ValueError(f"{name} must be float32, float16 or bfloat16, got {x.dtype}")
    if r.dtype != wx.dtype:
        raise ValueError(f"r must share wx's dtype {wx.dtype}, got {r.dtype}")
    if b is not None and tuple(b.shape) != (H, G * Dh):
        raise ValueError(f"b must be (H, G*Dh) = {(H, G * Dh)}, got {tuple(b.shape)}")
    for name, s in (("h0", h0), ("c0", c0)):
        if s is not None and tuple(s.shape) != (B, H, Dh):
            raise ValueError(f"{name} must be (B, H, Dh) = {(B, H, Dh)}, got {tuple(s.shape)}")
    if cell == "gru" and c0 is not None:
        raise ValueError("a GRU has no cell state: c0 must be None")
    for name, opt in (("r", r), ("b", b), ("h0", h0), ("c0", c0)):
        if opt is not None and opt.device != wx.device:
            raise ValueError(f"{name} must be on wx's device {wx.device}")
    return B, T, H, Dh


def fits_on_chip(dtype: torch.dtype, dh: int) -> bool:
    """Whether a GPU kernel can keep a head's recurrent matrix on chip: every gate's tile is
    padded to a power of two, and the shared memory (227 KiB on an H100) holds
    16-bit tiles up to Dh = 128, fp32 ones (tf32x3 dots) up to Dh = 64."""
    padded = max(16, 1 << (dh - 1).bit_length())
    return padded <= (64 if dtype == torch.float32 else 128)


def headwise_rnn(
    wx: Tensor,
    r: Tensor,
    b: Tensor | None = None,
    h0: Tensor | None = None,
    c0: Tensor | None = None,
    *,
    cell: Cell = "lstm",
    out: Tensor | None = None,
    backend: str = "auto",
) -> RNNOutput:
    """Run the cell over all T steps. ``wx`` ``(B, T, H, G*Dh)``, ``r`` ``(H, G*Dh, Dh)`` in
    ``wx``'s dtype, ``b`` ``(H, G*Dh)``, ``h0``/``c0`` ``(B, H, Dh)``; ``out`` (``(B, T, H, Dh)``,
    ``wx``'s dtype) receives every hidden state when given. On a GPU, shapes whose weights do
    not fit on chip (``fits_on_chip``) run the reference under ``"auto"`` and raise under
    ``"triton"``."""
    B, T, H, Dh = _check(wx, r, b, h0, c0, cell)
    if out is not None and (
        tuple(out.shape) != (B, T, H, Dh) or out.dtype != wx.dtype or out.device != wx.device
    ):
        raise ValueError(f"out must be a {wx.dtype} tensor of shape {(B, T, H, Dh)} on {wx.device}")

    run_triton = use_triton(backend, wx, r)
    if run_triton and wx.is_cuda and not fits_on_chip(wx.dtype, Dh):
        if backend == "triton":
            raise ValueError(f"Dh={Dh} in {wx.dtype} does not fit on chip: use 16-bit inputs or Dh <= 64")
        run_triton = False
    if not run_triton:
        res = headwise_rnn_reference(wx, r, b, h0, c0, cell)
        if out is not None:
            out.copy_(res.h)
            res = RNNOutput(out, res.h_n, res.c_n)
        return res

    if T == 0 or B == 0:  # nothing to run: the states pass through
        h_e = out if out is not None else torch.empty(B, T, H, Dh, dtype=wx.dtype, device=wx.device)
        zeros = torch.zeros(B, H, Dh, dtype=torch.float32, device=wx.device)
        h_last = h0.float().clone() if h0 is not None else zeros
        c_last = (c0.float().clone() if c0 is not None else zeros.clone()) if cell == "lstm" else None
        return RNNOutput(h_e, h_last, c_last)

    from . import triton as kernel  # lazy: importing triton costs time and needs the package

    def f32(x: Tensor | None) -> Tensor | None:
        return None if x is None else x.float().contiguous()

    h = (
        out
        if out is not None and out.is_contiguous()
        else torch.empty(B, T, H, Dh, dtype=wx.dtype, device=wx.device)
    )
    h_n = torch.empty(B, H, Dh, dtype=torch.float32, device=wx.device)
    c_n = torch.empty_like(h_n) if cell == "lstm" else None
    kernel.forward(cell, wx.contiguous(), r.contiguous(), f32(b), f32(h0), f32(c0), h, h_n, c_n)
    if out is not None and h is not out:
        out.copy_(h)
        h = out
    return RNNOutput(h, h_n, c_n)
