"""attention_scan: the Triton kernel against the PyTorch reference, the reference against the
literal masked softmax, streaming through the carried state, the dispatcher and input checks.

Without CUDA the kernel runs under the Triton interpreter (fp32, tiny shapes); the variable must be
set before the kernel module is imported (triton reads it when a kernel is decorated).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import kernels.attention_scan as scan
from kernels.attention_scan import ScanState, attention_scan
from kernels.attention_scan.reference import attention_scan_naive, attention_scan_reference

from .kernel_support import DEVICE, gpu, needs_cuda, rel_rms  # sets TRITON_INTERPRET (kernels load lazily)

ROOT = Path(__file__).resolve().parents[1]


def tri() -> Any:
    return pytest.importorskip("kernels.attention_scan.triton")


def qkv(
    b: int,
    h: int,
    t: int,
    d: int,
    dv: int,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    spread: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, d, generator=g) * spread  # spread widens the score range
    k, v = torch.randn(b, h, t, d, generator=g), torch.randn(b, h, t, dv, generator=g)
    return q.to(DEVICE, dtype), k.to(DEVICE, dtype), v.to(DEVICE, dtype)


def gold(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, state: Any = None) -> Any:
    return attention_scan_reference(q.double(), k.double(), v.double(), scale, state)


# (B, H, T, D, Dv, block_t): odd T across and inside chunks, D and Dv not powers of two
CASES = [(1, 2, 63, 60, 60, 16), (2, 1, 111, 100, 100, 32), (1, 1, 500, 16, 20, 64), (1, 1, 63, 8, 8, 64)]


@pytest.mark.parametrize("b,h,t,d,dv,bt", CASES)
def test_kernel_matches_reference_and_writes_every_element(
    nan_outputs: None, b: int, h: int, t: int, d: int, dv: int, bt: int
) -> None:
    q, k, v = qkv(b, h, t, d, dv, seed=t)
    out = torch.full_like(v, float("nan"))
    o, (m, u, w) = tri().attention_scan_triton(q, k, v, d**-0.5, block_t=bt, out=out)
    want, (wm, wu, ww) = gold(q, k, v, d**-0.5)
    assert o is out and not out.isnan().any()
    assert rel_rms(out, want) <= 1e-3
    for got_s, want_s in ((m, wm), (u, wu), (w, ww)):
        assert not got_s.isnan().any() and rel_rms(got_s, want_s) <= 1e-3


def test_reference_is_the_masked_softmax_even_for_wide_score_ranges() -> None:
    for spread in (1.0, 60.0):  # scores up to hundreds: exp would overflow without the max
        q, k, v = qkv(2, 2, 40, 12, 7, spread=spread)
        q, k, v = q.double(), k.double(), v.double()
        want = attention_scan_naive(q, k, v, 0.3)
        assert rel_rms(attention_scan_reference(q, k, v, 0.3)[0], want) <= 1e-10
        got = tri().attention_scan_triton(q.float(), k.float(), v.float(), 0.3, block_t=16)[0]
        assert rel_rms(got, want) <= 1e-3


def test_streaming_through_the_state_equals_one_pass() -> None:
    q, k, v = qkv(1, 2, 111, 20, 12)
    whole, final = gold(q, k, v, 0.25)
    for backend in ("triton", "reference"):
        first = attention_scan(q, k[:, :, :50], v[:, :, :50], scale=0.25, backend=backend)
        rest = attention_scan(q, k[:, :, 50:], v[:, :, 50:], scale=0.25, state=first.state, backend=backend)
        assert rel_rms(torch.cat([first.out, rest.out], dim=2), whole) <= 1e-3
        for got_s, want_s in zip(rest.state, final, strict=True):
            assert rel_rms(got_s, want_s) <= 1e-3


def test_one_step_returns_its_value() -> None:
    q, k, v = qkv(2, 3, 1, 16, 16)
    for backend in ("triton", "reference"):
        res = attention_scan(q, k, v, backend=backend)
        assert rel_rms(res.out, v) <= 1e-6
        assert rel_rms(res.state.u, torch.ones(2, 3)) <= 1e-6


def test_auto_backend_on_cpu_tensors_runs_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    q, k, v = (x.cpu() for x in qkv(1, 1, 5, 4, 4))
    calls: list[str] = []
    real = scan.attention_scan_reference

    def spy(*args: Any) -> Any:
        calls.append("ref")
        return real(*args)

    monkeypatch.setattr(scan, "attention_scan_reference", spy)
    attention_scan(q, k, v)
    assert calls == ["ref"]
    with pytest.raises(ValueError, match="backend"):
        attention_scan(q, k, v, backend="fast")


def test_importing_the_op_does_not_import_triton() -> None:
    code = "import sys, kernels.attention_scan; assert 'triton' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_bad_input_is_a_clear_value_error() -> None:
    q, k, v = qkv(1, 2, 9, 4, 3)
    state = ScanState(torch.zeros(1, 2), torch.ones(1, 2), torch.zeros(1, 2, 3))
    bad = [
        ((q[0], k, v), {}, "expected q"),
        ((q, k[..., :3], v), {}, "k must have shape"),
        ((q, k, v[:, :, :5]), {}, "v must have shape"),
        ((q, k, v.double()), {}, "one float dtype"),
        ((q.long(), k.long(), v.long()), {}, "one float dtype"),
        ((q, k[:, :, :0], v[:, :, :0]), {}, "non-empty"),
        ((q, k, v), {"state": ScanState(state.m, state.u, state.w[..., :2])}, "state"),
        ((q, k, v), {"scale": float("inf")}, "scale"),
    ]
    for args, kwargs, match in bad:
        for backend in ("reference", "triton"):
            with pytest.raises(ValueError, match=match):
                attention_scan(*args, backend=backend, **kwargs)  # type: ignore[arg-type]


@gpu
@needs_cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-3), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("t,d,dv", [(500, 64, 64), (1111, 100, 60), (4096, 128, 256)])
def test_gpu_shapes(nan_outputs: None, dtype: torch.dtype, tol: float, t: int, d: int, dv: int) -> None:
    q, k, v = qkv(2, 5, t, d, dv, dtype=dtype)
    res = attention_scan(q, k, v)
    want, state = gold(q, k, v, d**-0.5)
    assert rel_rms(res.out, want) <= tol
    for got_s, want_s in zip(res.state, state, strict=True):
        assert rel_rms(got_s, want_s) <= tol
