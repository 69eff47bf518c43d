"""Shared fixtures. The embedder is loaded once per test process and shared by every store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tgrag.sdk import TemporalRAG

from .vllm_support import tiny_llama_dir, vllm_server  # noqa: F401  (fixtures for every test)
from .world import World, generate

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def world() -> World:
    return generate(seed=7)


@pytest.fixture(scope="session")
def world_store(tmp_path_factory: pytest.TempPathFactory, world: World) -> Iterator[TemporalRAG]:
    """The generated world ingested slice by slice, each slice at its publication time."""
    path = tmp_path_factory.mktemp("world") / "store"
    rag = TemporalRAG.open(path)
    for docs in world.slices():
        day = max(d.date for d in docs if d.date is not None)
        rag.ingest(docs, ingested_at=datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc))
    yield rag
    rag.close()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def nan_outputs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every float tensor torch.empty / empty_like allocates starts as NaN, so an element a kernel
    never writes fails the comparison instead of passing by luck."""
    import torch

    empty, empty_like = torch.empty, torch.empty_like

    def poisoned(t: torch.Tensor) -> torch.Tensor:
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", lambda *a, **kw: poisoned(empty(*a, **kw)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **kw: poisoned(empty_like(*a, **kw)))
    yield


def data_dir(name: str) -> Path:
    """A dataset folder under ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not present")
    return path
