"""prefix_linear_attention: the Triton kernels against the PyTorch reference, the reference against
an O(T^2) brute force, prefill/decode consistency, the dispatcher and input checks.

Without CUDA the kernels run under the Triton interpreter (fp32, tiny shapes); the variable must be
set before the kernel module is imported (triton reads it when a kernel is decorated).
"""

from __future__ import annotations

import pytest
import torch

import kernels.prefix_linear_attention as pla
from kernels.prefix_linear_attention import (
    prefix_linear_attention,
    prefix_linear_attention_step,
)
from kernels.prefix_linear_attention.reference import (
    causal_linear_attention_bruteforce,
    prefix_linear_attention_reference,
    prefix_state,
)

from .kernel_support import DEVICE, gpu, needs_cuda, rel_rms  # sets TRITON_INTERPRET (kernels load lazily)


def qkv(B: int, H: int, T: int, dk: int, dv: int, seed: int = 0, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, T, d, generator=g) for d in (dk, dk, dv))
    return q.to(DEVICE, dtype), k.to(DEVICE, dtype), v.to(DEVICE, dtype)


# (B, H, T, Dk, Dv, prefix_len): odd T, non-power-of-two D, prefix edges (0, mid-chunk, all of T)
SHAPES = [
    (1, 2, 63, 32, 32, 0),
    (2, 1, 111, 60, 100, 70),
    (1, 1, 130, 16, 16, 130),
    (1, 2, 64, 64, 64, 64),
    (1, 1, 5, 8, 24, 3),
]


@pytest.mark.parametrize(("B", "H", "T", "dk", "dv", "P"), SHAPES)
def test_kernel_matches_reference(
    nan_outputs: None, B: int, H: int, T: int, dk: int, dv: int, P: int
) -> None:
    q, k, v = qkv(B, H, T, dk, dv)
    out = torch.full((B, H, T, dv), float("nan"), device=DEVICE)
    o, state = prefix_linear_attention(q, k, v, P, out=out, backend="triton")
    assert o is out
    want_o, want_state = prefix_linear_attention_reference(q, k, v, P)
    assert not o.isnan().any() and not state.isnan().any()
    assert rel_rms(o, want_o) <= 1e-3
    assert rel_rms(state, want_state) <= 1e-3


def test_an_unwritten_element_fails(nan_outputs: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard itself: a launch that skips the last token's output or one state entry fails."""
    import kernels.prefix_linear_attention.triton as kernel

    real = kernel.prefill

    def skip_last_token(*args: object) -> None:
        *head, out, final = args
        assert isinstance(out, torch.Tensor)
        scratch = out.clone()
        real(*head, scratch, final)  # type: ignore[arg-type, call-arg]
        out[:, :, :-1] = scratch[:, :, :-1]  # the last token stays as allocated (NaN)

    def skip_state_entry(*args: object) -> None:
        real(*args)  # type: ignore[arg-type]
        args[-1][0, 0, 0, 0] = float("nan")  # type: ignore[index]  # as if never written

    q, k, v = qkv(1, 1, 10, 16, 16)
    want_o, want_s = prefix_linear_attention_reference(q, k, v, 2)
    for broken, (i, want) in ((skip_last_token, (0, want_o)), (skip_state_entry, (1, want_s))):
        monkeypatch.setattr(kernel, "prefill", broken)
        got = prefix_linear_attention(q, k, v, 2, backend="triton")[i]
        assert not rel_rms(got, want) <= 1e-3


@pytest.mark.parametrize(("T", "P"), [(500, 0), (500, 123), (111, 111)])
def test_reference_matches_bruteforce(T: int, P: int) -> None:
    q, k, v = qkv(1, 2, T, 12, 20, seed=1)
    o, _ = prefix_linear_attention_reference(q, k, v, P, chunk=64)
    assert rel_rms(o, causal_linear_attention_bruteforce(q, k, v, P)) <= 1e-5


@pytest.mark.parametrize("P", [0, 7, 40])
def test_kernel_matches_bruteforce(P: int) -> None:
    q, k, v = qkv(2, 1, 40, 16, 16, seed=2)
    o, _ = prefix_linear_attention(q, k, v, P, scale=0.5, backend="triton")
    assert rel_rms(o, causal_linear_attention_bruteforce(q, k, v, P, scale=0.5)) <= 1e-3


def test_prefix_is_an_initial_state() -> None:
    """Reading the prefix non-causally is plain causal linear attention from the prefix state."""
    q, k, v = qkv(1, 2, 70, 16, 32, seed=3)
    o, s = prefix_linear_attention(q, k, v, 25, backend="triton")
    o0, s0 = prefix_linear_attention(q, k, v, 0, initial_state=prefix_state(k, v, 25), backend="triton")
    assert rel_rms(o, o0) <= 1e-5 and rel_rms(s, s0) <= 1e-5


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_decode_step_continues_prefill(backend: str) -> None:
    q, k, v = qkv(2, 2, 34, 20, 24, seed=4)
    o_all, s_all = prefix_linear_attention(q, k, v, 10, backend=backend)
    _, s = prefix_linear_attention(q[:, :, :-2], k[:, :, :-2], v[:, :, :-2], 10, backend=backend)
    for t in (-2, -1):
        o_t, s = prefix_linear_attention_step(q[:, :, t], k[:, :, t], v[:, :, t], s, backend=backend)
        assert rel_rms(o_t, o_all[:, :, t]) <= 1e-5
    assert rel_rms(s, s_all) <= 1e-5


def test_step_inplace_and_against_reference(nan_outputs: None) -> None:
    q, k, v = qkv(3, 2, 1, 60, 100, seed=5)
    q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]
    state = torch.randn(3, 2, 60, 100, device=DEVICE)
    want_o, want_s = prefix_linear_attention_step(q, k, v, state, backend="reference")
    o, s = prefix_linear_attention_step(q, k, v, state.clone(), backend="triton")
    assert rel_rms(o, want_o) <= 1e-5 and rel_rms(s, want_s) <= 1e-5
    mine = state.clone()
    o2, s2 = prefix_linear_attention_step(q, k, v, mine, inplace=True, backend="triton")
    assert s2 is mine and rel_rms(s2, want_s) <= 1e-5 and rel_rms(o2, want_o) <= 1e-5


def test_chunked_prefill_continues() -> None:
    """Prefill in two calls (the second with prefix_len=0 from the first's state) = one call."""
    q, k, v = qkv(1, 2, 90, 16, 16, seed=6)
    o, s = prefix_linear_attention(q, k, v, 30, backend="triton")
    o1, s1 = prefix_linear_attention(q[:, :, :50], k[:, :, :50], v[:, :, :50], 30, backend="triton")
    o2, s2 = prefix_linear_attention(
        q[:, :, 50:], k[:, :, 50:], v[:, :, 50:], 0, initial_state=s1, backend="triton"
    )
    assert rel_rms(torch.cat([o1, o2], dim=2), o) <= 1e-5 and rel_rms(s2, s) <= 1e-5


def test_auto_on_cpu_runs_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = pla.prefix_linear_attention_reference

    def spy(*a: object, **kw: object) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append("ref")
        return real(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(pla, "prefix_linear_attention_reference", spy)
    q, k, v = (x.cpu() for x in qkv(1, 1, 8, 4, 4))
    prefix_linear_attention(q, k, v, 2)
    assert calls == ["ref"]
    with pytest.raises(ValueError, match="backend"):
        prefix_linear_attention(q, k, v, 2, backend="cuda")
    with pytest.raises(ValueError, match="backend"):
        prefix_linear_attention_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], torch.zeros(1, 1, 4, 4), backend="x")


def _bad_calls() -> list[tuple[str, dict[str, object]]]:
    q, k, v = (x.cpu() for x in qkv(1, 2, 8, 4, 6))
    return [
        ("dims", {"q": q[0], "k": k, "v": v}),
        ("same shape", {"q": q, "k": k[..., :3], "v": v}),
        ("last dim", {"q": q, "k": k, "v": v[:, :, :5]}),
        ("float32, float16 or bfloat16", {"q": q.double(), "k": k.double(), "v": v.double()}),
        ("share a dtype", {"q": q, "k": k.half(), "v": v}),
        ("float32, float16 or bfloat16", {"q": q.long(), "k": k.long(), "v": v.long()}),
        ("prefix_len", {"q": q, "k": k, "v": v, "prefix_len": 9}),
        ("prefix_len", {"q": q, "k": k, "v": v, "prefix_len": -1}),
        ("prefix_len", {"q": q, "k": k, "v": v, "prefix_len": 2.0}),
        ("initial_state", {"q": q, "k": k, "v": v, "initial_state": torch.zeros(1, 2, 6, 4)}),
        ("out", {"q": q, "k": k, "v": v, "out": torch.zeros(1, 2, 8, 4)}),
    ]


@pytest.mark.parametrize(("match", "kwargs"), _bad_calls())
def test_bad_inputs_raise(match: str, kwargs: dict[str, object]) -> None:
    kwargs.setdefault("prefix_len", 2)
    for backend in ("reference", "auto"):
        with pytest.raises(ValueError, match=match):
            prefix_linear_attention(backend=backend, **kwargs)  # type: ignore[arg-type]


def test_bad_step_inputs_raise() -> None:
    q, k, v = (x[:, :, 0].cpu() for x in qkv(1, 2, 1, 4, 6))
    with pytest.raises(ValueError, match="state"):
        prefix_linear_attention_step(q, k, v, torch.zeros(1, 2, 4, 5))
    with pytest.raises(ValueError, match="float32"):
        prefix_linear_attention_step(q, k, v, torch.zeros(1, 2, 4, 6, dtype=torch.bfloat16))


@gpu
@needs_cuda
@pytest.mark.parametrize(("T", "D", "P"), [(1000, 64, 300), (4096, 128, 4096), (511, 100, 0)])
def test_gpu_bf16(T: int, D: int, P: int) -> None:
    q, k, v = qkv(2, 4, T, D, D, seed=7, dtype=torch.bfloat16)
    q, k = q * 0.3, k * 0.3
    out = torch.full((2, 4, T, D), float("nan"), device=DEVICE, dtype=torch.bfloat16)
    o, state = prefix_linear_attention(q, k, v, P, out=out, backend="triton")
    want_o, want_state = prefix_linear_attention_reference(q, k, v, P)
    assert rel_rms(o, want_o.float()) <= 1e-2
    assert rel_rms(state, want_state) <= 1e-2


@gpu
@needs_cuda
def test_gpu_auto_uses_triton_and_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pla, "prefix_linear_attention_reference", None)  # auto must not call it
    q, k, v = qkv(2, 3, 300, 64, 64, seed=8)
    o, s = prefix_linear_attention(q, k, v, 77)
    monkeypatch.undo()
    want_o, want_s = prefix_linear_attention_reference(q, k, v, 77)
    assert rel_rms(o, want_o) <= 1e-3 and rel_rms(s, want_s) <= 1e-3
