"""memory/: refits (rotation and codebooks learned afresh from the kept exact vectors) at
geometric growth points and after a shift; many small adds end up like one big one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memory import CodebookConfig, CodebookMemory
from memory.bank import STATE_FILE
from memory.persist import read_state, write_state

from .test_memory_codebook import clustered, mse

DIM = 32


def config(**kw: object) -> CodebookConfig:
    # The layout these tests were written for, with plain squared-error coding: they compare
    # reconstruction errors, which score-aware coding trades for score errors on purpose.
    base: dict[str, object] = {"stages": 2, "parallel_weight": 1.0, **kw}
    return CodebookConfig(dim=DIM, m=8, nbits=6, **base)  # type: ignore[arg-type]


def test_a_shift_refits_and_the_new_domain_is_coded_better(tmp_path: Path) -> None:
    """Six batches of one domain, then three of another: with shift refits (growth refits off)
    the bank notices the jump in reconstruction error, learns a new rotation and codebooks on
    a sample of what it keeps, and codes the new domain far better than a bank without."""
    errors, refits, moved = {}, {}, {}
    for name, kw in (
        ("off", {"refit_growth": 0, "refit_shift": 0}),
        ("shift", {"refit_growth": 0, "refit_shift": 1.5}),
    ):
        rng = np.random.default_rng(0)
        bank = CodebookMemory(config(**kw), path=tmp_path / name)
        for i in range(6):
            bank.add(np.arange(i * 400, (i + 1) * 400), clustered(400, DIM, rng, domain=0))
        before = bank._quant.rotation.copy()  # type: ignore[union-attr]
        new = []
        for i in range(6, 9):
            x = clustered(400, DIM, rng, domain=1)
            bank.add(np.arange(i * 400, (i + 1) * 400), x)
            new.append(x)
        ids = np.arange(2400, 3600)
        errors[name] = mse(bank.decode(ids), np.concatenate(new))
        refits[name] = bank.stats().refits
        moved[name] = float(np.abs(bank._quant.rotation - before).max())  # type: ignore[operator]
    assert refits == {"off": 0, "shift": 1}
    assert moved["off"] == 0.0 and moved["shift"] > 1e-3  # the rotation was learned again
    assert errors["shift"] < 0.6 * errors["off"], errors


def test_growth_refits_are_geometric_and_recode_everything(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    bank = CodebookMemory(config(refit_shift=0), path=tmp_path / "b")
    x = clustered(4000, DIM, rng)
    counts = []
    for lo in range(0, 4000, 100):
        bank.add(np.arange(lo, lo + 100), x[lo : lo + 100])
        counts.append(bank.stats().refits)
    # Fits at 100 (the first), then at 200, 400, 800, 1600 and 3200 vectors.
    assert bank.stats().refits == 5
    assert [i + 1 for i in range(1, 40) if counts[i] > counts[i - 1]] == [2, 4, 8, 16, 32]
    # Right after a refit every stored code is the encoding of its exact vector.
    bank2 = CodebookMemory(config(refit_shift=0, reencode="none"), path=tmp_path / "c")
    for lo in range(0, 1600, 100):
        bank2.add(np.arange(lo, lo + 100), x[lo : lo + 100])
    assert bank2.stats().refits == 4
    ids = bank2.ids()
    fresh = bank2._quant.decode(bank2._quant.encode(bank2.vectors(ids)))
    np.testing.assert_allclose(bank2.decode(ids), fresh, atol=1e-5)
    # Without a folder there are no exact vectors to refit from.
    plain = CodebookMemory(config())
    for lo in range(0, 1600, 100):
        plain.add(np.arange(lo, lo + 100), x[lo : lo + 100])
    assert plain.stats().refits == 0


def _recall(bank: CodebookMemory, q: np.ndarray, x: np.ndarray) -> float:
    want = np.argsort(-(q @ x.T), axis=1)[:, :10]
    got = bank.search(q, 10, rerank=20)[1]
    return float(np.mean([len(set(w) & set(g)) / 10 for w, g in zip(want, got, strict=True)]))


def test_many_small_adds_end_up_like_one_big_add(tmp_path: Path) -> None:
    """Three domains of 1,500 vectors, added one domain a call or 50 vectors a call: the small
    calls no longer leave the codebooks fitted to the first 50 vectors (refits rebuild them as
    the bank doubles) nor forget too fast (each small update forgets in proportion), and the
    re-encoding follows the vectors added, not the number of calls."""
    rng = np.random.default_rng(2)
    x = np.concatenate([clustered(1500, DIM, rng, centers=60, domain=d) for d in range(3)])
    q = np.concatenate([clustered(40, DIM, rng, centers=60, domain=d) for d in range(3)])
    ids = np.arange(len(x))
    out = {}
    for name, step, kw in (
        ("big", 1500, {}),
        ("small", 50, {}),
        ("small-no-refit", 50, {"refit_growth": 0, "refit_shift": 0}),
    ):
        bank = CodebookMemory(config(**kw), path=tmp_path / name)
        for lo in range(0, len(x), step):
            bank.add(ids[lo : lo + step], x[lo : lo + step])
        out[name] = (_recall(bank, q, x), mse(bank.decode(ids), x), bank.stats().reencoded_total)
    (big_r, big_e, _), (small_r, small_e, small_re), (old_r, old_e, _) = out.values()
    assert small_r >= big_r - 0.08, out
    assert small_e <= 1.2 * big_e, out
    assert small_r >= old_r + 0.08 and old_e > 1.5 * small_e, out
    assert small_re <= 0.5 * len(x)  # reencode_rate 0.5 a vector learned, whatever the calls


def test_refit_state_survives_a_reload_and_old_files_still_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    bank = CodebookMemory(config(refit_shift=0), path=tmp_path / "b")
    x = clustered(1000, DIM, rng)
    for lo in range(0, 700, 100):
        bank.add(np.arange(lo, lo + 100), x[lo : lo + 100])
    bank.save()
    loaded = CodebookMemory.load(tmp_path / "b")
    assert loaded.stats() == bank.stats() and bank.stats().refits == 2  # at 200 and 400
    for b in (bank, loaded):  # 800 >= 2 * 400: both refit on the same add, identically
        b.add(np.arange(700, 800), x[700:800])
    assert loaded.stats().refits == bank.stats().refits == 3
    np.testing.assert_array_equal(loaded.decode(loaded.ids()), bank.decode(bank.ids()))
    # A state file written before refits existed (no "refit" entry, no new config fields).
    meta, arrays = read_state(tmp_path / "b" / STATE_FILE)
    del meta["refit"]
    for key in ("refit_growth", "refit_shift", "refit_iters", "refit_sample", "reencode_rate", "decay_batch"):
        del meta["config"][key]
    write_state(tmp_path / "b" / STATE_FILE, meta, arrays)
    old = CodebookMemory.load(tmp_path / "b")
    assert len(old) == 700 and old.stats().refits == 0
    old.add(np.arange(700, 1000), x[700:1000])  # its one fit counts as made at 700: no refit yet
    assert old.stats().refits == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("refit_growth", 1.0), ("refit_growth", -2.0), ("refit_shift", 0.5), ("reencode_rate", -1.0),
     ("refit_sample", 0), ("decay_batch", 0), ("refit_iters", -1), ("refit_growth", float("nan"))],
)  # fmt: skip
def test_bad_refit_options_are_rejected(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        config(**{field: value})
