"""The vector tier on the compressed codebook memory bank (``memory.CodebookMemory``).

Spec ``codebook`` (16 codes of 8 bits a vector: 1.04% of float32 at 384 dimensions, codebooks
learned online as batches arrive) or ``codebook:m=8,stages=2,rerank=200`` with any
``CodebookConfig`` field. Searches score the codes by asymmetric distance and re-rank the best
``rerank`` exactly from float vectors kept on disk, memory-mapped, never in memory; ``vectors(ids)``
reads those exact vectors, so retrieval's own exact rescoring is unchanged.

A bank lives in a folder beside the other index files (``<kind>.codebook/``). One that is built
before it was ever saved starts in a private temporary folder and moves to its place on the first
save; after that, saves append to its vector file and rewrite its small state file atomically.
As with every derived index, a crash between saves is caught by the index manifest and the store
rebuilds it from SQLite.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from memory import CodebookConfig, CodebookMemory

from ..errors import InputError
from .vector import VECTOR_INDEXES, VectorIndex

SUFFIX = ".codebook"


def parse_options(arg: str | None, dim: int) -> CodebookConfig:
    """``"m=8,stages=2"`` -> a config for ``dim``; unknown fields and bad values raise ValueError."""
    fields = {f.name: f for f in dataclasses.fields(CodebookConfig)}
    values: dict[str, Any] = {"dim": dim}
    for part in filter(None, (arg or "").split(",")):
        name, sep, raw = part.partition("=")
        name = name.strip()
        if not sep or name not in fields or name == "dim":
            known = ", ".join(n for n in fields if n != "dim")
            raise ValueError(f"bad codebook option {part!r}: expected NAME=VALUE with NAME one of {known}")
        default = fields[name].default
        raw = raw.strip()
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"codebook option {name} must be true or false, got {raw!r}")
            values[name] = raw.lower() in ("true", "1")
        elif isinstance(default, (int, float)):
            try:
                values[name] = type(default)(raw)
            except ValueError:
                raise ValueError(f"codebook option {name} must be a number, got {raw!r}") from None
        else:
            values[name] = raw
    return CodebookConfig(**values)


class CodebookIndex:
    """``VectorIndex`` over a ``CodebookMemory`` (inner product, like the faiss default)."""

    def __init__(self, bank: CodebookMemory, scratch: Path | None = None) -> None:
        self._bank = bank
        self.dim = bank.dim
        self._scratch = scratch  # a temporary home, removed once the bank has moved to its folder
        if scratch is not None:
            weakref.finalize(self, shutil.rmtree, scratch, True)

    @classmethod
    def create(cls, config: CodebookConfig) -> CodebookIndex:
        scratch = Path(tempfile.mkdtemp(prefix="tgrag-codebook-"))
        return cls(CodebookMemory(config, scratch / "bank"), scratch)

    @classmethod
    def load(cls, path: Path) -> CodebookIndex:
        return cls(CodebookMemory.load(folder_of(path)))

    @property
    def bank(self) -> CodebookMemory:
        return self._bank

    def __len__(self) -> int:
        return len(self._bank)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._bank.add(np.asarray(ids, dtype=np.int64), np.asarray(vectors, dtype=np.float32))

    def remove(self, ids: np.ndarray) -> None:
        # Like faiss's remove_ids: ids that are not stored are ignored (summaries replace theirs
        # without knowing which were indexed).
        ids = np.asarray(ids, dtype=np.int64)
        present = ids[np.isin(ids, self._bank.ids())] if len(ids) else ids
        if len(present):
            self._bank.remove(present)

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if len(self) == 0 or (allowed is not None and len(allowed) == 0):
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        return self._bank.search(queries, max(1, min(k, len(self))), allowed=allowed)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Exact float vectors of ``ids`` (read from the bank's memory-mapped file)."""
        if len(ids) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self._bank.vectors(np.asarray(ids, dtype=np.int64))

    def save(self, path: Path) -> None:
        folder = folder_of(path)
        home = self._bank.path
        if home is not None and home.resolve() == folder.resolve():
            self._bank.save()
            return
        # First save (or a save elsewhere): write a complete copy, then live there. A stale bank
        # in the way is a leftover of an interrupted rebuild: the manifest never pointed to it.
        if folder.exists():
            shutil.rmtree(folder)
        self._bank.save(folder)
        self._bank = CodebookMemory.load(folder, verify=False)  # just written and synced
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def folder_of(path: Path) -> Path:
    """``index/fact.faiss`` (the name the derived indexes use for a kind) -> ``index/fact.codebook``."""
    return Path(path).with_suffix(SUFFIX)


@VECTOR_INDEXES.register("codebook")
def _codebook(arg: str | None, *, dim: int, path: Path | None = None, **_: object) -> VectorIndex:
    """An empty compressed bank configured by ``arg``, or the one saved beside ``path``."""
    if path is not None:
        return CodebookIndex.load(path)
    try:
        config = parse_options(arg, dim)
    except ValueError as exc:
        raise InputError(f"vector index codebook:{arg or ''}: {exc}") from None
    return CodebookIndex.create(config)
