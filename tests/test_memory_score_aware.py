"""memory/: score-aware (anisotropic) coding for inner-product search lowers the error of the
scores that decide the top results, and never raises the loss it minimises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memory import CodebookConfig, CodebookMemory
from memory.codebook import ResidualQuantizer, score_aware_books, score_aware_codes

DIM = 64


def data(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, DIM))
    x = centres[rng.integers(0, 20, n)] + 0.7 * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def quantiser(weight: float, sweeps: int = 1, metric: str = "ip", books: int = 0) -> ResidualQuantizer:
    """Score-aware codes only (``books`` 0): the codebooks are the plain k-means ones."""
    cfg = CodebookConfig(
        dim=DIM,
        m=8,
        nbits=5,
        stages=2,
        parallel_weight=weight,
        score_sweeps=sweeps,
        score_books=books,
        metric=metric,  # type: ignore[arg-type]
    )
    q = ResidualQuantizer(cfg, np.random.default_rng(0))
    q.learn(data(3000))
    return q


def aware_loss(x: np.ndarray, recon: np.ndarray, weight: float) -> np.ndarray:
    r = x - recon
    par = np.einsum("nd,nd->n", r, x) / np.einsum("nd,nd->n", x, x)
    return np.einsum("nd,nd->n", r, r) + (weight - 1.0) * par**2


def test_score_aware_codes_lower_the_score_error_of_near_queries() -> None:
    """Queries close to stored vectors (the ones that rank them first): the error of the
    exact top-10 scores falls with score-aware codes, though the squared error rises."""
    x = data(4000)
    rng = np.random.default_rng(1)
    queries = x[:200] + 0.05 * rng.normal(size=(200, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = queries @ x.T
    top = np.argsort(-exact, axis=1)[:, :10]
    err, sq = {}, {}
    for weight in (1.0, 4.0):
        q = quantiser(weight)
        recon = q.decode(q.encode(x))
        approx = queries @ recon.T
        err[weight] = float(np.mean((np.take_along_axis(exact - approx, top, axis=1)) ** 2))
        sq[weight] = float(((x - recon) ** 2).sum(axis=1).mean())
    assert err[4.0] < 0.6 * err[1.0], err
    assert sq[4.0] > sq[1.0]  # it trades squared error for score error


@pytest.mark.parametrize("sweeps", [1, 2])
def test_coordinate_descent_never_raises_the_loss(sweeps: int) -> None:
    x = data(2000, seed=2)
    plain = quantiser(1.0)
    greedy = plain.encode(x)
    xr = (
        (x @ plain.rotation).reshape(len(x), 8, DIM // 8)
        if plain.rotation is not None
        else x.reshape(-1, 8, 8)
    )
    refined = score_aware_codes(
        np.ascontiguousarray(xr), greedy.copy(), plain.codebooks, 8.0, sweeps, block=512
    )
    before = aware_loss(x, plain.decode(greedy), 8.0)
    after = aware_loss(x, plain.decode(refined), 8.0)
    assert np.all(after <= before + 1e-5)
    assert after.mean() < 0.8 * before.mean()
    assert (refined != greedy).any()


def test_weight_one_or_l2_keeps_the_plain_codes() -> None:
    x = data(1000, seed=3)
    plain = quantiser(1.0).encode(x)
    assert np.array_equal(quantiser(4.0, sweeps=0).encode(x), plain)
    assert np.array_equal(quantiser(4.0, metric="l2").encode(x), quantiser(1.0, metric="l2").encode(x))
    assert not np.array_equal(quantiser(4.0).encode(x), plain)


def test_config_rejects_bad_score_aware_settings() -> None:
    with pytest.raises(ValueError, match="parallel_weight"):
        CodebookConfig(dim=DIM, parallel_weight=0.5)
    with pytest.raises(ValueError, match="score_sweeps"):
        CodebookConfig(dim=DIM, score_sweeps=-1)


def test_a_score_aware_bank_saves_and_loads(tmp_path: Path) -> None:
    x = data(1500, seed=4)
    cfg = CodebookConfig(dim=DIM, m=8, nbits=5, parallel_weight=3.0)
    bank = CodebookMemory(cfg, path=tmp_path / "b")
    bank.add(np.arange(1500), x)
    bank.save()
    again = CodebookMemory.load(tmp_path / "b")
    assert again.config.parallel_weight == 3.0
    s1, i1 = bank.search(x[:20], 5)
    s2, i2 = again.search(x[:20], 5)
    assert np.array_equal(i1, i2) and np.allclose(s1, s2)


def test_score_aware_books_lower_the_loss_with_codes_fixed() -> None:
    """Each codeword set to its exact minimiser: the loss of the same codes falls, and plain
    k-means means are what it gives at weight 1 for a single stage."""
    x = data(3000, seed=5)
    q = quantiser(1.0)
    xr = np.ascontiguousarray(q.rotate(x).reshape(len(x), 8, DIM // 8))
    codes = score_aware_codes(xr, q.encode(x), q.codebooks, 6.0, 1)
    before = aware_loss(x, q.decode(codes), 6.0).mean()
    books = score_aware_books(xr, codes, q.codebooks, 6.0)
    after = aware_loss(x, q.decode(codes, books), 6.0).mean()
    assert after < 0.97 * before, (before, after)
    one = codes[:, :8]
    means = score_aware_books(xr, one, q.codebooks[:1], 1.0)
    used = np.zeros((8, q.codebooks.shape[2]), dtype=bool)
    used[np.arange(8)[None, :], one] = True
    for j in range(8):
        for k in np.flatnonzero(used[j])[:5]:
            assert np.allclose(means[0, j, k], xr[one[:, j] == k, j].mean(axis=0), atol=1e-5)


def test_a_bank_with_score_aware_books_fits_and_refits(tmp_path: Path) -> None:
    x = data(4000, seed=6)
    cfg = CodebookConfig(dim=DIM, m=8, nbits=5, parallel_weight=3.0, score_books=1)
    bank = CodebookMemory(cfg, path=tmp_path / "b")
    for lo in range(0, 4000, 1000):
        bank.add(np.arange(lo, lo + 1000), x[lo : lo + 1000])
    assert bank.stats().refits >= 1
    _, ids = bank.search(x[:50], 1)
    assert (ids[:, 0] == np.arange(50)).mean() > 0.9


def test_a_bank_saved_before_score_aware_coding_keeps_plain_coding(tmp_path: Path) -> None:
    from memory.bank import STATE_FILE
    from memory.persist import read_state, write_state

    x = data(1200, seed=7)
    cfg = CodebookConfig(dim=DIM, m=8, nbits=5, stages=2, parallel_weight=1.0, score_books=0)
    bank = CodebookMemory(cfg, path=tmp_path / "b")
    bank.add(np.arange(1000), x[:1000])
    bank.save()
    meta, arrays = read_state(tmp_path / "b" / STATE_FILE)
    for key in ("parallel_weight", "score_sweeps", "score_books"):
        del meta["config"][key]
    write_state(tmp_path / "b" / STATE_FILE, meta, arrays)
    old = CodebookMemory.load(tmp_path / "b")
    assert old.config.parallel_weight == 1.0 and old.config.score_books == 0
    old.add(np.arange(1000, 1200), x[1000:])
    bank.add(np.arange(1000, 1200), x[1000:])
    np.testing.assert_array_equal(old.decode(old.ids()), bank.decode(bank.ids()))
