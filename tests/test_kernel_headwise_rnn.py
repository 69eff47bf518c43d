"""headwise_rnn: the Triton LSTM/GRU kernels against the PyTorch reference, the reference against
torch.nn.LSTM / torch.nn.GRU, the dispatcher and input checks.

Without CUDA the kernels run under the Triton interpreter (fp32, tiny shapes); the variable must be
set before the kernel module is imported (triton reads it when a kernel is decorated).
"""

from __future__ import annotations

import pytest
import torch

import kernels.headwise_rnn as hrnn
from kernels.headwise_rnn import GATES, RNNOutput, fits_on_chip, headwise_rnn
from kernels.headwise_rnn.reference import headwise_rnn_reference

from .kernel_support import (  # sets TRITON_INTERPRET (kernels load lazily)
    CUDA,
    DEVICE,
    gpu,
    needs_cuda,
    rel_rms,
)


def inputs(
    cell: str,
    B: int,
    T: int,
    H: int,
    Dh: int,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    states: bool = True,
) -> dict[str, torch.Tensor | None]:
    G = GATES[cell]
    g = torch.Generator().manual_seed(seed)
    wx = torch.randn(B, T, H, G * Dh, generator=g)
    r = torch.randn(H, G * Dh, Dh, generator=g) / Dh**0.5
    b = 0.1 * torch.randn(H, G * Dh, generator=g)
    h0 = 0.5 * torch.randn(B, H, Dh, generator=g) if states else None
    c0 = 0.5 * torch.randn(B, H, Dh, generator=g) if states and cell == "lstm" else None
    return {
        "wx": wx.to(DEVICE, dtype),
        "r": r.to(DEVICE, dtype),
        "b": b.to(DEVICE),
        "h0": None if h0 is None else h0.to(DEVICE),
        "c0": None if c0 is None else c0.to(DEVICE),
    }


def check(got: RNNOutput, want: RNNOutput, tol: float) -> None:
    assert not got.h.isnan().any() and not got.h_n.isnan().any()
    assert rel_rms(got.h, want.h) <= tol
    assert rel_rms(got.h_n, want.h_n) <= tol
    if want.c_n is None:
        assert got.c_n is None
    else:
        assert got.c_n is not None and not got.c_n.isnan().any()
        assert rel_rms(got.c_n, want.c_n) <= tol


# (B, T, H, Dh): odd T, non-power-of-two Dh (60, 100), batch not a multiple of the 16-row block
SHAPES = [(3, 63, 2, 32), (2, 111, 1, 60), (17, 20, 2, 16), (2, 12, 1, 100), (1, 1, 3, 8)]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize(("B", "T", "H", "Dh"), SHAPES)
def test_kernel_matches_reference(nan_outputs: None, cell: str, B: int, T: int, H: int, Dh: int) -> None:
    x = inputs(cell, B, T, H, Dh)
    out = torch.full((B, T, H, Dh), float("nan"), device=DEVICE)
    if CUDA and not fits_on_chip(torch.float32, Dh):  # fp32 tiles past 64 exceed shared memory
        with pytest.raises(ValueError, match="on chip"):
            headwise_rnn(**x, cell=cell, backend="triton")  # type: ignore[arg-type]
        return
    got = headwise_rnn(**x, cell=cell, out=out, backend="triton")  # type: ignore[arg-type]
    assert got.h is out
    check(got, headwise_rnn_reference(**x, cell=cell), 1e-3)  # type: ignore[arg-type]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_kernel_default_states_and_no_bias(nan_outputs: None, cell: str) -> None:
    x = inputs(cell, 5, 30, 2, 24, seed=1, states=False)
    x["b"] = None
    check(headwise_rnn(**x, cell=cell, backend="triton"), headwise_rnn_reference(**x, cell=cell), 1e-3)  # type: ignore[arg-type]


def test_an_unwritten_step_fails(nan_outputs: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard itself: a launch that skips the last step's output leaves NaN and fails."""
    import kernels.headwise_rnn.triton as kernel

    real = kernel.forward

    def skip_last_step(cell: str, wx: torch.Tensor, *rest: torch.Tensor) -> None:
        r, b, h0, c0, out, h_n, c_n = rest
        scratch = out.clone()
        real(cell, wx, r, b, h0, c0, scratch, h_n, c_n)
        out[:, :-1] = scratch[:, :-1]

    monkeypatch.setattr(kernel, "forward", skip_last_step)
    x = inputs("lstm", 2, 9, 1, 16)
    got = headwise_rnn(**x, backend="triton")  # type: ignore[arg-type]
    assert not rel_rms(got.h, headwise_rnn_reference(**x).h) <= 1e-3  # type: ignore[arg-type]


def _torch_rnn(cell: str, H: int, Dh: int, seed: int) -> torch.nn.LSTM | torch.nn.GRU:
    torch.manual_seed(seed)
    cls = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
    net = cls(input_size=7, hidden_size=H * Dh, batch_first=True)
    G = GATES[cell]
    with torch.no_grad():  # heads do not mix: zero the recurrent weights off the diagonal blocks
        w = net.get_parameter("weight_hh_l0").view(G, H, Dh, H, Dh)
        for i in range(H):
            for j in range(H):
                if i != j:
                    w[:, i, :, j].zero_()
    return net


def _as_headwise(
    net: torch.nn.LSTM | torch.nn.GRU, x: torch.Tensor, cell: str, H: int, Dh: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torch's layout stacks gates outermost ((G, H, Dh) rows); ours is per head ((H, G, Dh))."""
    G = GATES[cell]
    B, T, _ = x.shape
    p = net.get_parameter
    with torch.no_grad():
        wx = (
            (x @ p("weight_ih_l0").T + p("bias_ih_l0"))
            .view(B, T, G, H, Dh)
            .transpose(2, 3)
            .reshape(B, T, H, G * Dh)
        )
        w = p("weight_hh_l0").view(G, H, Dh, H, Dh)
        r = torch.stack([w[:, i, :, i] for i in range(H)]).reshape(H, G * Dh, Dh)
        b = p("bias_hh_l0").view(G, H, Dh).transpose(0, 1).reshape(H, G * Dh)
    return wx, r, b


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize(("H", "T"), [(1, 500), (3, 111)])
def test_reference_matches_torch_nn(cell: str, H: int, T: int) -> None:
    """H = 1 is torch's own cell; H > 1 is torch's cell with a block-diagonal recurrent matrix."""
    Dh = 12
    net = _torch_rnn(cell, H, Dh, seed=H)
    x = torch.randn(4, T, 7)
    h0 = torch.randn(1, 4, H * Dh) * 0.5
    c0 = torch.randn(1, 4, H * Dh) * 0.5
    with torch.no_grad():
        if cell == "lstm":
            want, (want_h, want_c) = net(x, (h0, c0))
        else:
            want, want_h = net(x, h0)
    wx, r, b = _as_headwise(net, x, cell, H, Dh)
    got = headwise_rnn_reference(
        wx,
        r,
        b,
        h0[0].view(4, H, Dh),
        c0[0].view(4, H, Dh) if cell == "lstm" else None,
        cell=cell,  # type: ignore[arg-type]
    )
    assert rel_rms(got.h.reshape(4, T, H * Dh), want) <= 1e-5
    assert rel_rms(got.h_n.reshape(4, H * Dh), want_h[0]) <= 1e-5
    if cell == "lstm":
        assert got.c_n is not None and rel_rms(got.c_n.reshape(4, H * Dh), want_c[0]) <= 1e-5


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_kernel_matches_torch_nn(cell: str) -> None:
    H, Dh, T = 2, 16, 25
    net = _torch_rnn(cell, H, Dh, seed=9)
    x = torch.randn(3, T, 7)
    with torch.no_grad():
        want = net(x)[0]
    wx, r, b = _as_headwise(net, x, cell, H, Dh)
    got = headwise_rnn(wx.to(DEVICE), r.to(DEVICE), b.to(DEVICE), cell=cell, backend="triton")  # type: ignore[arg-type]
    assert rel_rms(got.h.cpu().reshape(3, T, H * Dh), want) <= 1e-3


def test_fits_on_chip() -> None:
    assert fits_on_chip(torch.bfloat16, 128) and fits_on_chip(torch.float16, 100)
    assert fits_on_chip(torch.float32, 64) and not fits_on_chip(torch.float32, 65)
    assert not fits_on_chip(torch.bfloat16, 129)


def test_empty_sequence_passes_states_through() -> None:
    x = inputs("lstm", 2, 0, 2, 8)
    got = headwise_rnn(**x, backend="triton")  # type: ignore[arg-type]
    assert got.h.shape == (2, 0, 2, 8)
    assert x["h0"] is not None and torch.equal(got.h_n, x["h0"])


def test_auto_on_cpu_runs_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = hrnn.headwise_rnn_reference

    def spy(*a: object, **kw: object) -> RNNOutput:
        calls.append("ref")
        return real(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(hrnn, "headwise_rnn_reference", spy)
    x = {k: (v.cpu() if v is not None else None) for k, v in inputs("gru", 1, 3, 1, 4).items()}
    headwise_rnn(**x, cell="gru")  # type: ignore[arg-type]
    assert calls == ["ref"]
    with pytest.raises(ValueError, match="backend"):
        headwise_rnn(**x, cell="gru", backend="gpu")  # type: ignore[arg-type]


def _bad_calls() -> list[tuple[str, dict[str, object]]]:
    wx, r = torch.zeros(2, 5, 3, 16), torch.zeros(3, 16, 4)
    return [
        ("cell must be", {"wx": wx, "r": r, "cell": "rnn"}),
        ("wx must be", {"wx": wx[0], "r": r}),
        ("r must be", {"wx": wx, "r": r[:2]}),
        ("r must be", {"wx": wx, "r": torch.zeros(3, 12, 4)}),
        ("last dim", {"wx": wx, "r": torch.zeros(3, 12, 3)}),
        ("float32, float16 or bfloat16", {"wx": wx.double(), "r": r.double()}),
        ("share", {"wx": wx, "r": r.half()}),
        ("b must be", {"wx": wx, "r": r, "b": torch.zeros(3, 12)}),
        ("h0 must be", {"wx": wx, "r": r, "h0": torch.zeros(2, 3, 5)}),
        ("c0 must be", {"wx": wx, "r": r, "c0": torch.zeros(3, 4)}),
        (
            "no cell state",
            {"wx": wx[..., :12], "r": torch.zeros(3, 12, 4), "c0": torch.zeros(2, 3, 4), "cell": "gru"},
        ),
        ("out must be", {"wx": wx, "r": r, "out": torch.zeros(2, 5, 3, 5)}),
    ]


@pytest.mark.parametrize(("match", "kwargs"), _bad_calls())
def test_bad_inputs_raise(match: str, kwargs: dict[str, object]) -> None:
    for backend in ("reference", "auto"):
        with pytest.raises(ValueError, match=match):
            headwise_rnn(backend=backend, **kwargs)  # type: ignore[arg-type]


@gpu
@needs_cuda
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize(("B", "T", "H", "Dh"), [(16, 256, 12, 64), (16, 256, 24, 32), (5, 500, 3, 100)])
def test_gpu_bf16(cell: str, B: int, T: int, H: int, Dh: int) -> None:
    x = inputs(cell, B, T, H, Dh, seed=3, dtype=torch.bfloat16)
    out = torch.full((B, T, H, Dh), float("nan"), device=DEVICE, dtype=torch.bfloat16)
    got = headwise_rnn(**x, cell=cell, out=out, backend="triton")  # type: ignore[arg-type]
    check(got, headwise_rnn_reference(**x, cell=cell), 1e-2)  # type: ignore[arg-type]


@gpu
@needs_cuda
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gpu_auto_uses_triton_and_matches(monkeypatch: pytest.MonkeyPatch, cell: str) -> None:
    x = inputs(cell, 20, 300, 4, 64, seed=4)
    monkeypatch.setattr(hrnn, "headwise_rnn_reference", None)  # auto must not call it
    got = headwise_rnn(**x, cell=cell)  # type: ignore[arg-type]
    monkeypatch.undo()
    check(got, headwise_rnn_reference(**x, cell=cell), 1e-3)  # type: ignore[arg-type]
