"""memory/: CodebookMemory search, ids, persistence, attention read-out and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memory.adc
from memory import BankFileError, CodebookConfig, CodebookMemory
from memory.bank import STATE_FILE
from memory.vector_store import FILE as VECTOR_FILE

from .test_memory_codebook import clustered

DIM = 32


def make_bank(
    path: Path | None = None, n: int = 800, seed: int = 0, **kw: object
) -> tuple[CodebookMemory, np.ndarray]:
    rng = np.random.default_rng(seed)
    cfg = CodebookConfig(dim=DIM, m=8, nbits=6, **kw)  # type: ignore[arg-type]
    bank = CodebookMemory(cfg, path=path)
    x = clustered(n, DIM, rng)
    for lo in range(0, n, 200):
        bank.add(np.arange(lo, min(n, lo + 200)) * 3 + 5, x[lo : lo + 200])  # ids != positions
    return bank, x


def exact_topk(
    q: np.ndarray, x: np.ndarray, ids: np.ndarray, k: int, metric: str = "ip"
) -> tuple[np.ndarray, np.ndarray]:
    s = q @ x.T if metric == "ip" else -((q[:, None, :] - x[None]) ** 2).sum(-1)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(s, order, 1)
    return (top if metric == "ip" else -top), ids[order]


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_rerank_covering_everything_equals_exact_search(tmp_path: Path, metric: str) -> None:
    bank, x = make_bank(tmp_path / "b", metric=metric)
    q = clustered(20, DIM, np.random.default_rng(9))
    ids = np.arange(len(x)) * 3 + 5
    want_s, want_i = exact_topk(q, x, ids, 10, metric)
    got_s, got_i = bank.search(q, 10, rerank=len(x))
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_s, want_s, rtol=1e-5, atol=1e-5)
    # Without re-ranking the compressed ranking differs: the re-rank is doing the work.
    _, adc_i = bank.search(q, 10, rerank=0)
    assert (adc_i != want_i).any()


def test_rerank_recovers_recall(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    x, q = clustered(2000, DIM, rng, centers=100), clustered(50, DIM, rng, centers=100)
    bank = CodebookMemory(CodebookConfig(dim=DIM, m=8, nbits=6), path=tmp_path / "b")
    for lo in range(0, 2000, 250):
        bank.add(np.arange(lo, lo + 250), x[lo : lo + 250])
    _, want = exact_topk(q, x, np.arange(2000), 10)

    def recall(got: np.ndarray) -> float:
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want, strict=True)]))

    plain = recall(bank.search(q, 10, rerank=0)[1])
    reranked = recall(bank.search(q, 10)[1])  # cfg.rerank = 100
    assert reranked >= 0.95
    assert reranked > plain


def test_remove_and_allowed(tmp_path: Path) -> None:
    bank, x = make_bank(tmp_path / "b")
    all_ids = np.arange(len(x)) * 3 + 5
    gone = all_ids[::4]
    bank.remove(gone)
    assert len(bank) == len(x) - len(gone)
    assert set(bank.ids()) == set(all_ids) - set(gone)
    q = x[::4][:30]  # queries sitting exactly on removed vectors
    for rerank in (0, 50):
        _, got = bank.search(q, 20, rerank=rerank)
        assert not np.isin(got, gone).any()
    allowed = all_ids[1::4][:7]
    scores, got = bank.search(q, 10, allowed=np.concatenate([allowed, [-5, 10**9]]))
    assert set(got[:, :7].ravel()) <= set(allowed)
    assert (got[:, 7:] == -1).all() and np.isneginf(scores[:, 7:]).all()
    # Removed ids can be added again; their vectors come back from the new row.
    bank.add(gone[:3], x[:3] * 0 + x[-1])
    np.testing.assert_array_equal(bank.vectors(gone[:3]), np.repeat(x[-1:], 3, axis=0))
    with pytest.raises(ValueError, match="not stored"):
        bank.remove(gone[3:5])


def test_persistence_round_trip(tmp_path: Path) -> None:
    bank, _ = make_bank(tmp_path / "b", reencode_budget=50, rotation=True)
    bank.remove(np.array([5, 8]))
    bank.save()
    loaded = CodebookMemory.load(tmp_path / "b")
    q = clustered(15, DIM, np.random.default_rng(11))
    for rerank in (0, 40):
        s1, i1 = bank.search(q, 10, rerank=rerank)
        s2, i2 = loaded.search(q, 10, rerank=rerank)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(s1, s2)
    assert loaded.stats() == bank.stats()
    assert loaded.config == bank.config
    # Learning goes on identically after a reload (codebooks, counts, reservoir, rng state).
    more = clustered(300, DIM, np.random.default_rng(12), domain=1)
    bank.add(np.arange(300) + 10**6, more)
    loaded.add(np.arange(300) + 10**6, more[:, :] + 0)
    np.testing.assert_array_equal(bank.decode(bank.ids()), loaded.decode(bank.ids()))
    # Save to another folder copies the exact vectors with it.
    loaded.save(tmp_path / "copy")
    copy = CodebookMemory.load(tmp_path / "copy")
    np.testing.assert_array_equal(copy.vectors(copy.ids()), loaded.vectors(copy.ids()))


def test_round_trip_without_exact_vectors(tmp_path: Path) -> None:
    bank, _ = make_bank(None, metric="l2", stages=2)
    with pytest.raises(ValueError, match="no folder"):
        bank.save()
    bank.save(tmp_path / "codes-only")
    loaded = CodebookMemory.load(tmp_path / "codes-only")
    q = clustered(5, DIM, np.random.default_rng(13))
    np.testing.assert_array_equal(loaded.search(q, 5)[1], bank.search(q, 5)[1])
    np.testing.assert_array_equal(loaded.vectors(loaded.ids()), bank.decode(bank.ids()))


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        "truncate-state",
        "flip-state-header",
        "flip-state-payload",
        "truncate-vectors",
        "flip-vectors",
        "bad-magic",
    ],
)
def test_damaged_files_give_clear_errors(tmp_path: Path, damage: str) -> None:
    bank, _ = make_bank(tmp_path / "b")
    bank.save()
    state, vectors = tmp_path / "b" / STATE_FILE, tmp_path / "b" / VECTOR_FILE
    size = state.stat().st_size
    if damage == "truncate-state":
        state.write_bytes(state.read_bytes()[: size - 100])
    elif damage == "flip-state-header":
        _flip(state, 60)
    elif damage == "flip-state-payload":
        _flip(state, size - 10)
    elif damage == "truncate-vectors":
        vectors.write_bytes(vectors.read_bytes()[:-8])
    elif damage == "flip-vectors":
        _flip(vectors, 4 * DIM * 7 + 3)
    else:
        _flip(state, 0)
    with pytest.raises(BankFileError, match=r"truncated|checksum|not a memory bank"):
        CodebookMemory.load(tmp_path / "b")


def test_unsaved_appends_are_dropped_on_load(tmp_path: Path) -> None:
    bank, x = make_bank(tmp_path / "b")
    bank.save()
    bank.add(np.array([10**7]), x[:1])  # appended to the vector file, never saved
    loaded = CodebookMemory.load(tmp_path / "b")
    assert len(loaded) == len(x)
    loaded.add(np.array([10**7 + 1]), x[5:6])
    np.testing.assert_array_equal(loaded.vectors(np.array([10**7 + 1])), x[5:6])


def test_bad_input_is_rejected_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="divisible by m"):
        CodebookConfig(dim=30, m=8)
    with pytest.raises(ValueError, match="metric"):
        CodebookConfig(dim=32, metric="cosine")  # type: ignore[arg-type]
    bank, x = make_bank(tmp_path / "b")
    with pytest.raises(ValueError, match=r"shape \(n, 32\)"):
        bank.add(np.array([1, 2]), np.zeros((2, 31), np.float32))
    nan = x[:3].copy()
    nan[1, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        bank.add(np.array([10**6, 10**6 + 1, 10**6 + 2]), nan)
    inf = x[:1] * np.inf
    with pytest.raises(ValueError, match="infinite"):
        bank.search(inf, 3)
    with pytest.raises(ValueError, match="duplicates"):
        bank.add(np.array([10**6, 10**6]), x[:2])
    with pytest.raises(ValueError, match="already stored"):
        bank.add(np.array([5]), x[:1])
    with pytest.raises(ValueError, match="ids for"):
        bank.add(np.array([10**6]), x[:2])
    with pytest.raises(ValueError, match="integers"):
        bank.add(np.array([1.5]), x[:1])
    with pytest.raises(ValueError, match="not stored"):
        bank.remove(np.array([4]))
    with pytest.raises(ValueError, match="positive integer"):
        bank.search(x[:2], 0)
    with pytest.raises(ValueError, match=r"shape \(n, 32\)"):
        bank.search(x[0], 3)
    with pytest.raises(ValueError, match="temperature"):
        bank.attend(x[:2], temperature=0.0)
    with pytest.raises(ValueError, match="one row per stored"):
        bank.attend(x[:2], values=np.ones((3, 2)))
    with pytest.raises(ValueError, match="already holds a saved bank"):
        bank.save()
        CodebookMemory(bank.config, path=tmp_path / "b")
    # Nothing above changed the bank.
    assert len(bank) == len(x)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_attention_readout_equals_brute_force(metric: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bank, _ = make_bank(None, metric=metric)
    # Small score blocks, so the streamed softmax really combines several chunks.
    monkeypatch.setattr(memory.adc, "_BLOCK_FLOATS", 64)
    monkeypatch.setattr(memory.adc, "_MIN_CHUNK", 97)
    q = clustered(6, DIM, np.random.default_rng(14))
    dec = bank.decode(bank.ids())
    scores = q @ dec.T if metric == "ip" else -((q[:, None, :] - dec[None]) ** 2).sum(-1)
    values = np.random.default_rng(15).normal(size=(len(bank), 5)).astype(np.float32)
    for t in (0.05, 1.0):
        w = np.exp((scores - scores.max(1, keepdims=True)) / t)
        w /= w.sum(1, keepdims=True)
        np.testing.assert_allclose(bank.attend(q, temperature=t), w @ dec, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bank.attend(q, values, temperature=t), w @ values, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bank.attend(q, values[:, 0]), (w @ values)[:, 0], rtol=1e-4, atol=1e-5)
    # top-t attention: the softmax over the t best scores only.
    top = np.argsort(-scores, axis=1)[:, :4]
    st_ = np.take_along_axis(scores, top, 1) / 0.1
    wt = np.exp(st_ - st_.max(1, keepdims=True))
    wt /= wt.sum(1, keepdims=True)
    want = np.einsum("qt,qtd->qd", wt, values[top])
    np.testing.assert_allclose(bank.attend(q, values, temperature=0.1, top=4), want, rtol=1e-4, atol=1e-5)


def test_stats_report_compression() -> None:
    cfg = CodebookConfig(dim=384, m=16, nbits=8, stages=1)
    bank = CodebookMemory(cfg)
    rng = np.random.default_rng(16)
    bank.add(np.arange(300), clustered(300, 384, rng))
    st_ = bank.stats()
    assert st_.count == 300 and st_.code_bytes_per_vector == 16
    assert st_.bytes_per_vector_ratio == pytest.approx(16 / 1536) and st_.bytes_per_vector_ratio <= 0.011
    assert st_.upkeep_seconds > 0
    default = CodebookConfig(dim=384)  # two residual stages of 8 codes: the same 16 bytes
    assert default.code_bytes_per_vector == 16 and default.rotation
    assert bank.search(np.zeros((1, 384), np.float32), 400)[1][0, 300:].tolist() == [-1] * 100


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(st.tuples(st.booleans(), st.integers(1, 40)), min_size=1, max_size=8),
    seed=st.integers(0, 1000),
)
def test_ids_follow_adds_and_removes(ops: list[tuple[bool, int]], seed: int) -> None:
    rng = np.random.default_rng(seed)
    bank = CodebookMemory(CodebookConfig(dim=8, m=2, nbits=3, rerank=0))
    model: set[int] = set()
    removed: set[int] = set()
    next_id = 0
    for is_add, size in ops:
        if is_add or not model:
            ids = np.arange(next_id, next_id + size)
            next_id += size
            bank.add(ids, rng.normal(size=(size, 8)).astype(np.float32))
            model |= set(ids.tolist())
        else:
            drop = rng.choice(sorted(model), size=min(size, len(model)), replace=False)
            bank.remove(drop)
            model -= set(drop.tolist())
            removed |= set(drop.tolist())
    assert set(bank.ids().tolist()) == model and len(bank) == len(model)
    _, got = bank.search(rng.normal(size=(3, 8)).astype(np.float32), next_id + 5)
    returned = set(got.ravel().tolist()) - {-1}
    assert returned == model and not (returned & removed)
