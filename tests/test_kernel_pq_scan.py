"""pq_scan and pq_attend: the Triton kernels against the PyTorch reference, the exact top-k
through bucket maxima, deleted rows, the dispatcher and input checks.

Without CUDA the kernels run under the Triton interpreter (fp32, tiny shapes); the variable must be
set before the kernel module is imported (triton reads it when a kernel is decorated).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import kernels.pq_scan as pq
from kernels.pq_scan import pq_attend, pq_scan
from kernels.pq_scan.reference import pq_attend_reference, pq_scan_reference, pq_scores

from .kernel_support import DEVICE, gpu, needs_cuda, rel_rms  # sets TRITON_INTERPRET (kernels load lazily)

ROOT = Path(__file__).resolve().parents[1]


def tri() -> Any:
    return pytest.importorskip("kernels.pq_scan.triton")


def bank(
    n: int, m: int, q: int, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 256, (n, m), generator=g, dtype=torch.uint8)
    lut = torch.randn(q, m, 256, generator=g)
    allowed = torch.rand(n, generator=g) > 0.3
    return codes.to(DEVICE), lut.to(DEVICE, dtype), allowed.to(DEVICE)


def bucket_max_reference(
    codes: torch.Tensor, lut: torch.Tensor, allowed: torch.Tensor | None, bn: int
) -> torch.Tensor:
    scores = pq_scores(codes, lut, allowed)
    n = scores.shape[1]
    pad = -n % bn
    padded = torch.nn.functional.pad(scores, (0, pad), value=float("-inf"))
    return padded.view(scores.shape[0], -1, bn).max(dim=2).values


def assert_topk_matches(
    got: tuple[torch.Tensor, torch.Tensor], want: tuple[torch.Tensor, torch.Tensor], tol: float
) -> None:
    (gs, gi), (ws, wi) = got, want
    finite = torch.isfinite(ws)
    assert torch.equal(finite, torch.isfinite(gs))
    assert rel_rms(gs[finite], ws[finite]) <= tol
    assert torch.equal(gi[~finite], wi[~finite])  # -1 past the allowed rows
    # indices only where the score is distinct from its neighbours (ties may come in any order)
    gap = torch.full_like(ws, float("inf"))
    diff = (ws[:, 1:] - ws[:, :-1]).abs()
    gap[:, 1:] = torch.minimum(gap[:, 1:], diff)
    gap[:, :-1] = torch.minimum(gap[:, :-1], diff)
    distinct = finite & (gap > 1e-4 * ws.abs().clamp_min(1))
    assert torch.equal(gi[distinct], wi[distinct])


# (N, M, Q, block_n): M=12 and 16 read codes as int32 words, M=5 and 10 byte by byte
BUCKET_CASES = [(63, 8, 3, 16), (111, 12, 5, 32), (500, 16, 2, 64), (100, 10, 9, 16), (1000, 5, 1, 128)]


@pytest.mark.parametrize("n,m,q,bn", BUCKET_CASES)
@pytest.mark.parametrize("with_allowed", [False, True])
def test_bucket_max_kernel_matches_reference_and_writes_every_element(
    n: int, m: int, q: int, bn: int, with_allowed: bool
) -> None:
    codes, lut, allowed = bank(n, m, q, seed=n)
    mask = allowed if with_allowed else None
    out = torch.full((q, -(-n // bn)), float("nan"), device=DEVICE)
    tri().bucket_max(codes, lut, mask, block_n=bn, out=out)
    want = bucket_max_reference(codes, lut, mask, bn)
    assert not out.isnan().any()
    assert torch.equal(torch.isfinite(out), torch.isfinite(want))
    assert rel_rms(out[torch.isfinite(want)], want[torch.isfinite(want)]) <= 1e-3


# (N, M, Q, k, block_n): k below and above the number of buckets, odd k
TOPK_CASES = [
    (63, 8, 3, 5, 16),
    (111, 12, 2, 1, 16),
    (500, 16, 3, 7, 32),
    (1000, 10, 2, 33, 64),
    (200, 16, 1, 17, 16),
]


@pytest.mark.parametrize("n,m,q,k,bn", TOPK_CASES)
def test_pq_scan_triton_topk_is_exact(n: int, m: int, q: int, k: int, bn: int) -> None:
    codes, lut, allowed = bank(n, m, q, seed=k)
    for mask in (None, allowed):
        got = tri().pq_scan_triton(codes, lut, k, mask, block_n=bn)
        assert_topk_matches(got, pq_scan_reference(codes, lut, k, mask), 1e-3)


def test_pq_scan_with_fewer_allowed_rows_than_k_pads_with_minus_one() -> None:
    codes, lut, _ = bank(70, 8, 2)
    allowed = torch.zeros(70, dtype=torch.bool, device=DEVICE)
    allowed[[3, 40, 69]] = True
    for backend in ("triton", "reference"):
        scores, indices = pq_scan(codes, lut, 5, allowed=allowed, backend=backend)
        assert sorted(indices[0, :3].tolist()) == [3, 40, 69]
        assert indices[:, 3:].eq(-1).all() and scores[:, 3:].eq(float("-inf")).all()


def test_pq_scan_ties_return_the_right_scores() -> None:
    # every row has the same code: all scores tie; any k rows are right
    codes = torch.full((90, 8), 7, dtype=torch.uint8, device=DEVICE)
    lut = torch.randn(2, 8, 256, device=DEVICE)
    scores, indices = pq_scan(codes, lut, 9, backend="triton")
    want, _ = pq_scan_reference(codes, lut, 9)
    assert rel_rms(scores, want) <= 1e-6
    assert all(len(set(row)) == 9 for row in indices.tolist())


# (N, M, Q, Dv, temperature, splits, block_n)
ATTEND_CASES = [(63, 8, 3, 60, 1.0, 1, 16), (111, 12, 2, 100, 0.3, 3, 16), (500, 10, 17, 20, 2.0, 4, 64)]


@pytest.mark.parametrize("n,m,q,dv,temp,splits,bn", ATTEND_CASES)
def test_pq_attend_triton_matches_reference(
    nan_outputs: None, n: int, m: int, q: int, dv: int, temp: float, splits: int, bn: int
) -> None:
    codes, lut, allowed = bank(n, m, q, seed=dv)
    values = torch.randn(n, dv, device=DEVICE)
    for mask in (None, allowed):
        parts = tri().attend_partials(codes, lut, values, temp, mask, block_n=bn, splits=splits)
        assert not any(p.isnan().any() for p in parts)
        got = tri().combine_partials(*parts)
        assert rel_rms(got, pq_attend_reference(codes, lut, values, temp, mask)) <= 1e-3


def test_pq_attend_public_api_on_the_kernel() -> None:
    codes, lut, allowed = bank(77, 16, 2)
    values = torch.randn(77, 24, device=DEVICE)
    got = pq_attend(codes, lut, values, temperature=0.5, allowed=allowed, backend="triton")
    assert got.shape == (2, 24) and got.dtype == torch.float32
    assert rel_rms(got, pq_attend_reference(codes, lut, values, 0.5, allowed)) <= 1e-3


def test_reference_attend_is_softmax_over_decoded_inner_products() -> None:
    # the LUT of a query against a codebook is the inner product with the decoded vector
    g = torch.Generator().manual_seed(3)
    m, sub, n = 4, 3, 50
    books = torch.randn(m, 256, sub, generator=g)
    codes = torch.randint(0, 256, (n, m), generator=g, dtype=torch.uint8)
    query = torch.randn(m * sub, generator=g)
    decoded = torch.cat([books[j, codes[:, j].long()] for j in range(m)], dim=1)
    lut = torch.einsum("jcs,js->jc", books, query.view(m, sub))[None]
    values = torch.randn(n, 5, generator=g)
    want = torch.softmax(decoded @ query / 0.7, dim=0) @ values
    assert rel_rms(pq_attend_reference(codes, lut, values, 0.7)[0], want) <= 1e-5
    assert torch.equal(pq_scan_reference(codes, lut, 3)[1][0], (decoded @ query).topk(3).indices)


def test_auto_backend_on_cpu_tensors_runs_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    codes, lut, _ = bank(20, 4, 1)
    calls: list[str] = []
    real = pq.pq_scan_reference

    def spy(*args: Any) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append("ref")
        return real(*args)

    monkeypatch.setattr(pq, "pq_scan_reference", spy)
    pq_scan(codes.cpu(), lut.cpu(), 3)
    assert calls == ["ref"]
    with pytest.raises(ValueError, match="backend"):
        pq_scan(codes, lut, 3, backend="cuda")


def test_importing_the_op_does_not_import_triton() -> None:
    code = "import sys, kernels.pq_scan; assert 'triton' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda c, lut, v: (c.long(), lut, v), "uint8"),
        (lambda c, lut, v: (c[:, :3], lut, v), "lut must have shape"),
        (lambda c, lut, v: (c, lut[:, :, :255], v), "lut must have shape"),
        (lambda c, lut, v: (c, lut.double(), v), "float32, bfloat16"),
        (lambda c, lut, v: (c, lut, v[:5]), "values must have shape"),
        (lambda c, lut, v: (c, lut, v.long()), "values must be float32"),
    ],
)
def test_bad_input_is_a_clear_value_error(change: Any, match: str) -> None:
    codes, lut, _ = bank(20, 4, 2)
    values = torch.randn(20, 3, device=DEVICE)
    c, t, v = change(codes, lut, values)
    for backend in ("reference", "triton"):
        with pytest.raises(ValueError, match=match):
            pq_attend(c, t, v, backend=backend)
        if not match.startswith("values"):
            with pytest.raises(ValueError, match=match):
                pq_scan(c, t, 2, backend=backend)


def test_bad_k_allowed_and_temperature_are_value_errors() -> None:
    codes, lut, _ = bank(20, 4, 2)
    values = torch.randn(20, 3, device=DEVICE)
    for k in (0, 21, 2.0, True):
        with pytest.raises(ValueError, match="k must be"):
            pq_scan(codes, lut, k, backend="triton")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="allowed"):
        pq_scan(codes, lut, 2, allowed=torch.ones(20, device=DEVICE), backend="triton")
    with pytest.raises(ValueError, match="temperature"):
        pq_attend(codes, lut, values, temperature=0.0, backend="triton")


@gpu
@needs_cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-3), (torch.bfloat16, 1e-2)])
def test_gpu_large_shapes(dtype: torch.dtype, tol: float) -> None:
    codes, lut, allowed = bank(100_003, 16, 37, dtype=dtype)
    for mask in (None, allowed):
        got = pq_scan(codes, lut, 101, allowed=mask)
        assert_topk_matches(got, pq_scan_reference(codes, lut, 101, mask), tol)
        out = torch.full((37, -(-100_003 // 128)), float("nan"), device=DEVICE)
        tri().bucket_max(codes, lut, mask, out=out)
        assert rel_rms(out, bucket_max_reference(codes, lut, mask, 128)) <= tol
    codes, lut, _ = bank(100_003, 12, 5, dtype=dtype)
    values = torch.randn(100_003, 100, device=DEVICE, dtype=dtype)
    attended = pq_attend(codes, lut, values, temperature=0.25)
    assert rel_rms(attended, pq_attend_reference(codes, lut, values, 0.25)) <= tol
