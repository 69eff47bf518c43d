"""What the kernel tests share. Importing it first puts Triton in interpreter mode when there is
no CUDA: triton reads the variable when a kernel is decorated, so it must be set before any
``kernels.<op>.triton`` module is imported."""

from __future__ import annotations

import os

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICE = "cuda" if CUDA else "cpu"
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA")


def rel_rms(got: torch.Tensor, want: torch.Tensor) -> float:
    """Relative RMS error of ``got`` against ``want`` (the issue's tolerance measure)."""
    got, want = got.double(), want.double()
    return ((got - want).pow(2).mean().sqrt() / want.pow(2).mean().sqrt().clamp_min(1e-30)).item()
