"""memory/: the quantiser learns online, dead codes return, stale codes get re-encoded, and
ADC scores are exactly the scores of the decoded vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import memory.adc
from memory import CodebookConfig, CodebookMemory
from memory.adc import adc_scores
from memory.codebook import ResidualQuantizer


def clustered(
    n: int, dim: int, rng: np.random.Generator, centers: int = 12, domain: int = 0, unit: bool = True
) -> np.ndarray:
    """Clustered vectors; ``domain`` picks a different set of cluster centres (a shift)."""
    crng = np.random.default_rng(1000 + domain)
    c = crng.normal(size=(centers, dim)) * 2.0 + (4.0 * domain)
    x = c[rng.integers(0, centers, n)] + rng.normal(size=(n, dim)) * 0.6
    if unit:
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a - b) ** 2).sum(axis=1).mean())


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize(("stages", "rotation"), [(1, False), (2, False), (1, True)])
@pytest.mark.parametrize("chunked", [False, True])
def test_adc_scores_equal_brute_force_on_decoded(
    metric: str, stages: int, rotation: bool, chunked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if chunked:  # several score blocks and top-k merges instead of one
        monkeypatch.setattr(memory.adc, "_BLOCK_FLOATS", 64)
        monkeypatch.setattr(memory.adc, "_MIN_CHUNK", 97)
    rng = np.random.default_rng(0)
    cfg = CodebookConfig(dim=32, m=8, nbits=5, stages=stages, metric=metric, rerank=0, rotation=rotation)  # type: ignore[arg-type]
    bank = CodebookMemory(cfg)
    x = clustered(600, 32, rng, unit=metric == "ip")
    bank.add(np.arange(600), x)
    q = clustered(7, 32, rng, unit=False)
    ids = bank.ids()
    dec = bank.decode(ids)
    # The decoded vectors are not the inputs: otherwise this would test nothing about ADC.
    assert mse(dec, x) > 1e-4
    brute = q @ dec.T if metric == "ip" else ((q[:, None, :] - dec[None]) ** 2).sum(-1)
    scores, got = bank.search(q, k=600)
    order = np.argsort(-brute if metric == "ip" else brute, axis=1, kind="stable")
    np.testing.assert_allclose(scores, np.take_along_axis(brute, order, 1), rtol=1e-4, atol=1e-4)
    # Same ranking, up to near-ties: each returned id's brute-force score matches its rank's.
    pos = np.searchsorted(np.sort(ids), got)
    np.testing.assert_allclose(np.take_along_axis(brute, pos, 1), scores, rtol=1e-4, atol=1e-4)


def test_lut_sum_is_inner_product_with_decoding() -> None:
    rng = np.random.default_rng(1)
    cfg = CodebookConfig(dim=24, m=6, nbits=4, stages=3)
    quant = ResidualQuantizer(cfg, rng)
    x = clustered(300, 24, rng)
    quant.learn(x)
    codes = quant.encode(x)
    q = rng.normal(size=(5, 24)).astype(np.float32)
    got = adc_scores(quant.lut(q), codes, None, None)
    np.testing.assert_allclose(got, q @ quant.decode(codes).T, rtol=1e-4, atol=1e-5)
    # Residual stages each cut the error: three stages beat the first stage alone.
    one = quant.decode(np.where(np.arange(codes.shape[1]) < 6, codes, 0).astype(codes.dtype))
    assert mse(quant.decode(codes), x) < mse(one, x)


def test_reconstruction_error_falls_as_codebook_learns() -> None:
    rng = np.random.default_rng(2)
    cfg = CodebookConfig(dim=32, m=8, nbits=6, dead_threshold=0.05)
    quant = ResidualQuantizer(cfg, np.random.default_rng(0))
    held_out = clustered(2000, 32, rng)
    quant.learn(clustered(80, 32, rng))  # fewer points than codes: a poor start
    errors = [mse(quant.decode(quant.encode(held_out)), held_out)]
    for _ in range(12):
        quant.learn(clustered(400, 32, rng))
        errors.append(mse(quant.decode(quant.encode(held_out)), held_out))
    assert errors[-1] < 0.8 * errors[0]
    assert errors[-1] <= min(errors[:4])


@pytest.mark.parametrize("learning", ["minibatch", "ema"])
def test_dead_codes_come_back_to_use(learning: str) -> None:
    """Initialise on one domain, stream another: codes stranded on the first domain go dead,
    get reseeded from recent inputs, and then serve the new domain."""
    rng = np.random.default_rng(3)
    # decay_batch=400: each batch of 400 forgets the full decay.
    cfg = CodebookConfig(
        dim=16, m=4, nbits=5, decay=0.5, decay_batch=400, dead_threshold=0.2, learning=learning
    )  # type: ignore[arg-type]
    frozen_cfg = CodebookConfig(
        dim=16, m=4, nbits=5, decay=0.5, decay_batch=400, dead_threshold=0.0, learning=learning
    )  # type: ignore[arg-type]
    live, frozen = (ResidualQuantizer(c, np.random.default_rng(0)) for c in (cfg, frozen_cfg))
    first = clustered(1000, 16, rng, domain=0, unit=False)
    for q in (live, frozen):
        q.learn(first)
    target = clustered(1500, 16, rng, domain=1, unit=False)
    stranded = ~np.isin(np.arange(32), live.encode(target)[:, 0])  # sub-space 0, unused by B
    assert stranded.sum() > 4
    for _ in range(8):
        batch = clustered(400, 16, rng, domain=1, unit=False)
        live.learn(batch)
        frozen.learn(batch)
    assert live.reset_total > 0 and frozen.reset_total == 0
    used_live = np.unique(live.encode(target)[:, 0])
    used_frozen = np.unique(frozen.encode(target)[:, 0])
    assert np.isin(np.flatnonzero(stranded), used_live).sum() > 4  # stranded codes serve B now
    assert len(used_live) > len(used_frozen)
    assert mse(live.decode(live.encode(target)), target) < mse(frozen.decode(frozen.encode(target)), target)


def test_small_first_batch_fills_codes_later() -> None:
    rng = np.random.default_rng(4)
    bank = CodebookMemory(CodebookConfig(dim=16, m=4, nbits=8, decay=0.8))
    bank.add(np.arange(40), clustered(40, 16, rng))  # 40 points for 256 codes per sub-space
    dead_at_start = bank.stats().dead_codes
    assert dead_at_start >= 4 * (256 - 40)
    for i in range(1, 6):
        bank.add(np.arange(i * 1000, i * 1000 + 500), clustered(500, 16, rng))
    st = bank.stats()
    assert st.reset_codes_total > 0
    assert st.dead_codes < dead_at_start / 2


def _stream_shift(tmp_path: Path, reencode: str) -> tuple[float, CodebookMemory, np.ndarray]:
    rng = np.random.default_rng(5)
    cfg = CodebookConfig(  # refits off: this compares the re-encode policies alone
        dim=32,
        m=8,
        nbits=6,
        reencode=reencode,
        reencode_budget=300,
        decay=0.9,
        refit_growth=0,
        refit_shift=0,  # type: ignore[arg-type]
    )
    bank = CodebookMemory(cfg, path=tmp_path / reencode)
    xs = []
    for i in range(8):
        # Half-way the stream drifts to another domain, so earlier codes go stale.
        x = clustered(400, 32, rng, domain=int(i >= 4))
        bank.add(np.arange(i * 400, (i + 1) * 400), x)
        xs.append(x)
    ids = bank.ids()
    return mse(bank.decode(ids), bank.vectors(ids)), bank, np.concatenate(xs)


def test_reencode_policy_reduces_reconstruction_error(tmp_path: Path) -> None:
    none, bank_none, x = _stream_shift(tmp_path, "none")
    budget, bank_budget, _ = _stream_shift(tmp_path, "budget")
    everything, _, _ = _stream_shift(tmp_path, "all")
    assert bank_none.stats().reencoded_total == 0
    assert 0 < bank_budget.stats().reencoded_total <= 300 * 8
    assert budget < none
    assert everything <= budget * 1.02
    # The exact vectors the re-encoding reads are the ones that were added.
    np.testing.assert_array_equal(bank_budget.vectors(np.arange(len(x))), x)


def test_opq_rotation_is_orthogonal_and_beats_the_fixed_split_on_correlated_data() -> None:
    """Embedding-like data: a few correlated directions carry most of the variance, smeared over
    every coordinate. The fixed split of plain PQ wastes codes on that; the learned rotation
    does not, and being orthogonal it changes no score."""
    from memory.codebook import opq_rotation

    rng = np.random.default_rng(5)
    dim, n = 32, 3000
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    scales = np.r_[np.full(4, 3.0), np.full(dim - 4, 0.2)]
    x = ((rng.normal(size=(n, dim)) * scales) @ basis.T).astype(np.float32)
    rot = opq_rotation(x[:2000], m=4, ksub=16, iters=8, rng=np.random.default_rng(0))
    np.testing.assert_allclose(rot.T @ rot, np.eye(dim), atol=1e-5)
    errors = {}
    for rotation in (False, True):
        bank = CodebookMemory(CodebookConfig(dim=dim, m=4, nbits=4, stages=1, rotation=rotation, rerank=0))
        bank.add(np.arange(n), x)
        errors[rotation] = mse(bank.decode(np.arange(n)), x)
        q = x[:5]
        scores, ids = bank.search(q, 3)
        np.testing.assert_allclose(
            scores,
            np.einsum("qd,qkd->qk", q, bank.decode(ids.ravel()).reshape(5, 3, dim)),
            rtol=1e-4,
            atol=1e-4,
        )
    assert errors[True] < 0.8 * errors[False], errors
