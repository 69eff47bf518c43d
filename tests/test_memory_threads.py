"""memory/: ``CodebookConfig.threads`` splits the quantiser's heavy passes (assignment and sums
per sub-space, score-aware coding per block of rows) over threads; nothing else may change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memory import CodebookConfig, CodebookMemory
from memory.kmeans import assign, group_sums, in_parallel

from .test_memory_codebook import clustered

DIM = 48


def test_in_parallel_keeps_order_and_runs_everything() -> None:
    items = list(range(23))
    assert in_parallel(lambda i: i * i, items, threads=3) == [i * i for i in items]
    assert in_parallel(lambda i: i + 1, [], threads=2) == []


def test_assign_and_group_sums_equal_their_one_thread_results() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3001, 4, 12)).astype(np.float32)
    c = rng.standard_normal((4, 64, 12)).astype(np.float32)
    codes1, err1 = assign(x, c)
    codes2, err2 = assign(x, c, threads=2)
    assert np.array_equal(codes1, codes2) and np.array_equal(err1, err2)
    sums1, counts1 = group_sums(x, codes1, 64)
    sums2, counts2 = group_sums(x, codes1, 64, threads=3)
    assert np.array_equal(sums1, sums2) and np.array_equal(counts1, counts2)
    assert counts1.sum() == 3001 * 4


@pytest.mark.parametrize("stages", [1, 3])
def test_a_bank_on_two_threads_equals_one_on_one(tmp_path: Path, stages: int) -> None:
    """Same stream, same seed: the same codes, refits included, and the same search results
    (score-aware coding on, so its per-block pass runs threaded too)."""
    rng = np.random.default_rng(3)
    batches = [clustered(700, DIM, rng, domain=i // 3) for i in range(6)]
    queries = clustered(20, DIM, rng, domain=1)
    banks = {}
    for threads in (1, 2):
        cfg = CodebookConfig(dim=DIM, m=4, nbits=6, stages=stages, threads=threads, refit_sample=1500)
        bank = CodebookMemory(cfg, path=tmp_path / f"t{threads}")
        for i, x in enumerate(batches):
            bank.add(np.arange(i * 700, (i + 1) * 700), x)
        banks[threads] = bank
    one, two = banks[1], banks[2]
    assert one.stats().refits >= 1 and one.stats().refits == two.stats().refits
    ids = np.arange(6 * 700)
    assert np.array_equal(one.decode(ids), two.decode(ids))
    (s1, i1), (s2, i2) = one.search(queries, 10), two.search(queries, 10)
    assert np.array_equal(i1, i2) and np.array_equal(s1, s2)


def test_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threads"):
        CodebookConfig(dim=DIM, threads=0)
