"""Choosing between an op's Triton kernel and its PyTorch reference.

Every op folder exposes one public function taking ``backend``: ``"auto"`` runs the Triton kernel
when the inputs live on a CUDA device and triton imports, and the reference otherwise;
``"triton"`` and ``"reference"`` force one. Tests on CPU call the kernel with ``"triton"`` under
``TRITON_INTERPRET=1`` (set by the test before the kernel module is imported).
"""

from __future__ import annotations

import importlib.util
from typing import Literal

import torch

Backend = Literal["auto", "triton", "reference"]
BACKENDS: tuple[str, ...] = ("auto", "triton", "reference")


def triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


def use_triton(backend: str, *tensors: torch.Tensor) -> bool:
    """Whether this call should run the Triton kernel."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend == "reference":
        return False
    if backend == "triton":
        if not triton_importable():
            raise RuntimeError("backend='triton' needs the triton package")
        return True
    return triton_importable() and all(t.is_cuda for t in tensors)
