"""Triton kernels for the head-wise LSTM and GRU forward (FlashRNN style).

One program owns one head and a block of ``BB`` (>= 16, for ``tl.dot``) batch rows and runs the
whole sequence. The head's recurrent matrix is loaded once, transposed into one ``(Dh, Dh)`` tile
per gate, and stays on chip for all T steps; the states live in float32 registers. Per step:
``G`` small ``tl.dot``s ``h @ R_g^T``, the pointwise cell, one store of ``h``.

The recurrence makes this latency-bound, so the step's critical path is what counts:

- the next step's input projections are loaded (by hand) before this step's pointwise work, so the
  HBM latency hides behind the cell instead of stalling the next step's dot;
- ``c`` is never written per step (only ``h`` is an output; the final states once at the end);
- ``wx`` is read in its caller layout ``(B, T, H, G*Dh)`` and ``h`` written in ``(B, T, H, Dh)``:
  no transposing copies around the kernel;
- on a GPU with 16-bit inputs, ``tanh`` and the sigmoid use the single-instruction
  ``tanh.approx.f32`` (relative error ~2**-11, far below bf16's rounding); fp32 inputs and the
  interpreter keep the exact forms.

Padding: ``Dh`` is padded to a power of two ``DP``; the padded rows and columns of R, the bias and
the inputs are loaded as zeros, so padded state lanes stay exactly zero and never feed back.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_CONFIGS = [triton.Config({}, num_warps=w, num_stages=1) for w in (2, 4, 8)]
_KEY = ["B", "H", "DH", "DTYPE_KEY"]


@triton.jit
def _tanh(x, FAST: tl.constexpr):
    if FAST:
        return tl.inline_asm_elementwise(
            "tanh.approx.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def _sigmoid(x, FAST: tl.constexpr):
    if FAST:
        return 0.5 * _tanh(0.5 * x, FAST) + 0.5
    else:
        return tl.sigmoid(x)


@triton.jit
def _load_rt(r_head, g: tl.constexpr, DH: tl.constexpr, offs_d, mask_dd):
    # tile[k, j] = R[g*DH + j, k]: so that h (BB, DP) @ tile gives the gate's recurrent part
    return tl.load(r_head + (g * DH + offs_d[None, :]) * DH + offs_d[:, None], mask=mask_dd, other=0.0)


@triton.jit
def _load_bias(
    b_head, g: tl.constexpr, DH: tl.constexpr, DP: tl.constexpr, offs_d, mask_d, HAS_BIAS: tl.constexpr
):
    if HAS_BIAS:
        return tl.load(b_head + g * DH + offs_d, mask=mask_d, other=0.0).to(tl.float32)[None, :]
    else:
        return tl.zeros([1, DP], dtype=tl.float32)


@triton.jit
def _load_state(ptr, state_off, mask, HAS: tl.constexpr, BB: tl.constexpr, DP: tl.constexpr):
    if HAS:
        return tl.load(ptr + state_off, mask=mask, other=0.0)
    else:
        return tl.zeros([BB, DP], dtype=tl.float32)


@triton.jit
def _tile(B, T, H, G: tl.constexpr, DH: tl.constexpr, DP: tl.constexpr, BB: tl.constexpr):
    """This program's head and batch tile: masks, and offsets of its state, gate inputs (``G``
    gates a step) and outputs. Shared by both cells so their layouts cannot drift apart."""
    i_h = tl.program_id(0)
    i_b = tl.program_id(1)
    offs_b = i_b * BB + tl.arange(0, BB)
    offs_d = tl.arange(0, DP)
    mask_d = offs_d < DH
    mask_bd = (offs_b < B)[:, None] & mask_d[None, :]
    mask_dd = mask_d[:, None] & mask_d[None, :]
    rows = offs_b.to(tl.int64)[:, None]
    state_off = (rows * H + i_h) * DH + offs_d[None, :]
    x_off = rows * T * (H * G * DH) + i_h * G * DH + offs_d[None, :]
    o_off = (rows * T * H + i_h) * DH + offs_d[None, :]
    return i_h, offs_d, mask_d, mask_bd, mask_dd, state_off, x_off, o_off


@triton.jit
def _lstm_kernel(
    wx,
    r,
    bias,
    h0,
    c0,
    out,
    h_n,
    c_n,
    B,
    T,
    H,
    DTYPE_KEY: tl.constexpr,  # read only by the autotuner's key
    DH: tl.constexpr,
    DP: tl.constexpr,
    BB: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_H0: tl.constexpr,
    HAS_C0: tl.constexpr,
    FAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    i_h, offs_d, mask_d, mask_bd, mask_dd, state_off, x_off, o_off = _tile(B, T, H, 4, DH, DP, BB)
    r_head = r + i_h * 4 * DH * DH
    r_i = _load_rt(r_head, 0, DH, offs_d, mask_dd)
    r_f = _load_rt(r_head, 1, DH, offs_d, mask_dd)
    r_g = _load_rt(r_head, 2, DH, offs_d, mask_dd)
    r_o = _load_rt(r_head, 3, DH, offs_d, mask_dd)
    b_head = bias + i_h * 4 * DH
    b_i = _load_bias(b_head, 0, DH, DP, offs_d, mask_d, HAS_BIAS)
    b_f = _load_bias(b_head, 1, DH, DP, offs_d, mask_d, HAS_BIAS)
    b_g = _load_bias(b_head, 2, DH, DP, offs_d, mask_d, HAS_BIAS)
    b_o = _load_bias(b_head, 3, DH, DP, offs_d, mask_d, HAS_BIAS)

    h = _load_state(h0, state_off, mask_bd, HAS_H0, BB, DP)
    c = _load_state(c0, state_off, mask_bd, HAS_C0, BB, DP)

    stride_t = H * 4 * DH
    x_ptr = wx + x_off
    stride_ot = H * DH
    o_ptr = out + o_off

    x_i = tl.load(x_ptr + 0 * DH, mask=mask_bd, other=0.0)
    x_f = tl.load(x_ptr + 1 * DH, mask=mask_bd, other=0.0)
    x_g = tl.load(x_ptr + 2 * DH, mask=mask_bd, other=0.0)
    x_o = tl.load(x_ptr + 3 * DH, mask=mask_bd, other=0.0)
    for t in range(T):
        hr = h.to(r_i.dtype)
        a_i = x_i.to(tl.float32) + b_i + tl.dot(hr, r_i, input_precision=PRECISION)
        a_f = x_f.to(tl.float32) + b_f + tl.dot(hr, r_f, input_precision=PRECISION)
        a_g = x_g.to(tl.float32) + b_g + tl.dot(hr, r_g, input_precision=PRECISION)
        a_o = x_o.to(tl.float32) + b_o + tl.dot(hr, r_o, input_precision=PRECISION)
        # prefetch step t+1 now: its latency overlaps the pointwise cell below
        # (the last step re-reads step 0: in bounds, and cheaper than a per-step time mask)
        nxt = x_ptr + ((t + 1) % T) * stride_t
        x_i = tl.load(nxt + 0 * DH, mask=mask_bd, other=0.0)
        x_f = tl.load(nxt + 1 * DH, mask=mask_bd, other=0.0)
        x_g = tl.load(nxt + 2 * DH, mask=mask_bd, other=0.0)
        x_o = tl.load(nxt + 3 * DH, mask=mask_bd, other=0.0)
        c = _sigmoid(a_f, FAST) * c + _sigmoid(a_i, FAST) * _tanh(a_g, FAST)
        h = _sigmoid(a_o, FAST) * _tanh(c, FAST)
        tl.store(o_ptr + t * stride_ot, h.to(out.dtype.element_ty), mask=mask_bd)

    tl.store(h_n + state_off, h, mask=mask_bd)
    tl.store(c_n + state_off, c, mask=mask_bd)


@triton.jit
def _gru_kernel(
    wx,
    r,
    bias,
    h0,
    out,
    h_n,
    B,
    T,
    H,
    DTYPE_KEY: tl.constexpr,  # read only by the autotuner's key
    DH: tl.constexpr,
    DP: tl.constexpr,
    BB: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_H0: tl.constexpr,
    FAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    i_h, offs_d, mask_d, mask_bd, mask_dd, state_off, x_off, o_off = _tile(B, T, H, 3, DH, DP, BB)
    r_head = r + i_h * 3 * DH * DH
    r_r = _load_rt(r_head, 0, DH, offs_d, mask_dd)
    r_z = _load_rt(r_head, 1, DH, offs_d, mask_dd)
    r_n = _load_rt(r_head, 2, DH, offs_d, mask_dd)
    b_head = bias + i_h * 3 * DH
    b_r = _load_bias(b_head, 0, DH, DP, offs_d, mask_d, HAS_BIAS)
    b_z = _load_bias(b_head, 1, DH, DP, offs_d, mask_d, HAS_BIAS)
    b_n = _load_bias(b_head, 2, DH, DP, offs_d, mask_d, HAS_BIAS)

    h = _load_state(h0, state_off, mask_bd, HAS_H0, BB, DP)

    stride_t = H * 3 * DH
    x_ptr = wx + x_off
    stride_ot = H * DH
    o_ptr = out + o_off

    x_r = tl.load(x_ptr + 0 * DH, mask=mask_bd, other=0.0)
    x_z = tl.load(x_ptr + 1 * DH, mask=mask_bd, other=0.0)
    x_n = tl.load(x_ptr + 2 * DH, mask=mask_bd, other=0.0)
    for t in range(T):
        hr = h.to(r_r.dtype)
        a_r = x_r.to(tl.float32) + b_r + tl.dot(hr, r_r, input_precision=PRECISION)
        a_z = x_z.to(tl.float32) + b_z + tl.dot(hr, r_z, input_precision=PRECISION)
        rec_n = b_n + tl.dot(hr, r_n, input_precision=PRECISION)
        x_nf = x_n.to(tl.float32)
        nxt = x_ptr + ((t + 1) % T) * stride_t  # prefetch step t+1 (see the LSTM kernel)
        x_r = tl.load(nxt + 0 * DH, mask=mask_bd, other=0.0)
        x_z = tl.load(nxt + 1 * DH, mask=mask_bd, other=0.0)
        x_n = tl.load(nxt + 2 * DH, mask=mask_bd, other=0.0)
        n = _tanh(x_nf + _sigmoid(a_r, FAST) * rec_n, FAST)
        z = _sigmoid(a_z, FAST)
        h = (1.0 - z) * n + z * h
        tl.store(o_ptr + t * stride_ot, h.to(out.dtype.element_ty), mask=mask_bd)

    tl.store(h_n + state_off, h, mask=mask_bd)


_lstm_tuned = triton.autotune(_CONFIGS, key=_KEY)(_lstm_kernel)
_gru_tuned = triton.autotune(_CONFIGS, key=_KEY)(_gru_kernel)


def forward(
    cell: str,
    wx: torch.Tensor,
    r: torch.Tensor,
    bias: torch.Tensor | None,
    h0: torch.Tensor | None,
    c0: torch.Tensor | None,
    out: torch.Tensor,
    h_n: torch.Tensor,
    c_n: torch.Tensor | None,
) -> None:
    """Launch (T >= 1): contiguous ``wx`` ``(B, T, H, G*Dh)``, ``r`` ``(H, G*Dh, Dh)`` in ``wx``'s dtype,
    ``bias`` ``(H, G*Dh)`` and states ``(B, H, Dh)`` in float32; writes ``out``, ``h_n``, ``c_n``."""
    B, T, H, _ = wx.shape
    DH = r.shape[-1]
    DP = max(16, triton.next_power_of_2(DH))  # tl.dot needs every dim >= 16
    BB = 16
    grid = (H, triton.cdiv(B, BB))
    dummy = h_n  # stands in for absent optional tensors; never read (the HAS_* flags are off)
    fast = wx.is_cuda and wx.dtype in (torch.float16, torch.bfloat16)
    meta = {
        "DH": DH,
        "DP": DP,
        "BB": BB,
        "HAS_BIAS": bias is not None,
        "HAS_H0": h0 is not None,
        "FAST": fast,
        # fp32 on a GPU: tf32x3 (about fp32 accuracy on tensor cores); ieee dots crash LLVM's SLP
        # vectorizer for some GRU configs (triton 3.9) and need twice the shared memory
        "PRECISION": "tf32" if wx.dtype != torch.float32 else ("tf32x3" if wx.is_cuda else "ieee"),
    }
    b_arg = bias if bias is not None else dummy
    h0_arg = h0 if h0 is not None else dummy
    args: tuple[object, ...]
    if cell == "lstm":
        assert c_n is not None
        c0_arg = c0 if c0 is not None else dummy
        args = (wx, r, b_arg, h0_arg, c0_arg, out, h_n, c_n, B, T, H)
        meta["HAS_C0"] = c0 is not None
        kernel, tuned = _lstm_kernel, _lstm_tuned
    else:
        args = (wx, r, b_arg, h0_arg, out, h_n, B, T, H)
        kernel, tuned = _gru_kernel, _gru_tuned
    if wx.is_cuda:
        tuned[grid](*args, DTYPE_KEY=str(wx.dtype), **meta)
    else:  # the interpreter (CPU tests): one fixed config, no autotuning
        kernel[grid](*args, DTYPE_KEY="", **meta)
