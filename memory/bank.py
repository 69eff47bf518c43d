"""CodebookMemory: a vector memory stored as codebook indices that keeps learning (MBC-style).

add:    validate -> learn (online codebook update -> dead-code reset -> re-encode stale codes;
        or, at a refit point, rotation and codebooks learned afresh on a sample of the kept
        exact vectors -> every code re-encoded) -> encode the new batch -> append codes (and
        exact vectors, when a folder is given)
search: lookup tables -> ADC over the codes -> top-k -> exact re-rank from the kept vectors
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .adc import adc_topk
from .checks import as_ids, as_k, as_vectors
from .codebook import ResidualQuantizer, gather_sum
from .config import BankStats, CodebookConfig
from .idmap import IdIndex
from .persist import BankFileError, read_state, write_state
from .readout import attend_codes, exact_scores
from .vector_store import VectorStore

STATE_FILE = "bank.state"
FORMAT = "tgrag-memory-bank"
VERSION = 1
# Vectors re-encoded per block under reencode="all" (bounds the float copy read from disk).
_REENCODE_BLOCK = 65536


class CodebookMemory:
    """Vectors stored as ``stages * m`` codes each, searched by asymmetric distance.

    With ``path`` the exact float32 vectors are also kept there (append-only, memory-mapped)
    for exact re-ranking and for re-encoding codes a codebook update made stale; ``save()``
    and ``load()`` use the same folder. Without it only codes are kept: no exact re-rank, and
    stale codes are re-encoded from their old reconstructions.
    """

    _path: Path | None
    _store: VectorStore | None

    def __init__(self, config: CodebookConfig, path: str | os.PathLike[str] | None = None) -> None:
        if not isinstance(config, CodebookConfig):
            raise ValueError(f"config must be a CodebookConfig, got {type(config).__name__}")
        self._setup(config)
        if path is not None:
            self._path = Path(path)
            if (self._path / STATE_FILE).exists():
                raise ValueError(f"{self._path} already holds a saved bank: use CodebookMemory.load()")
            self._store = VectorStore.create(self._path, config.dim)

    def _setup(self, config: CodebookConfig) -> None:
        c = config
        self._config = c
        self._rng = np.random.default_rng(c.seed)
        self._quant = ResidualQuantizer(c, self._rng)
        self._path = None
        self._store = None
        self._n = 0
        self._codes = np.empty((0, c.ncodes), dtype=c.code_dtype)
        self._ids = np.empty(0, dtype=np.int64)
        self._rows = np.empty(0, dtype=np.int64)
        self._index = IdIndex()
        self._occupancy = np.zeros(c.ncodes * c.ksub, dtype=np.int64)
        self._xnorms: np.ndarray | None = None  # ||decoded||^2 cache for L2
        self._reencoded_total = 0
        self._upkeep = 0.0
        # Refit schedule: the bank's size at the last fit, and the level of recent batches'
        # relative reconstruction error (for shift refits).
        self._fit_count = 0
        self._refits = 0
        self._level = -1.0  # -1: not measured yet

    # -- properties ---------------------------------------------------------------------
    @property
    def config(self) -> CodebookConfig:
        return self._config

    @property
    def dim(self) -> int:
        return self._config.dim

    @property
    def path(self) -> Path | None:
        return self._path

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        c = self._config
        return f"CodebookMemory(n={self._n}, dim={c.dim}, m={c.m}, nbits={c.nbits}, stages={c.stages})"

    def ids(self) -> np.ndarray:
        """Stored ids in storage order (the row order ``attend``'s ``values`` follow)."""
        return self._ids[: self._n].copy()

    # -- writing ------------------------------------------------------------------------
    def add(self, ids: Any, vectors: Any) -> None:
        """Learn from the batch, then store it: ids (n,) distinct and new; vectors (n, dim)."""
        ids = as_ids(ids)
        x = as_vectors(vectors, self.dim)
        if len(ids) != len(x):
            raise ValueError(f"got {len(ids)} ids for {len(x)} vectors")
        if len(x) == 0:
            return
        present = self._index.lookup(ids) >= 0
        if present.any():
            raise ValueError(f"{int(present.sum())} id(s) already stored, e.g. {int(ids[present][0])}")
        self.learn(x)
        codes = self._quant.encode(x)
        rows = self._store.append(x) if self._store is not None else np.full(len(x), -1, np.int64)
        self._reserve(len(x))
        lo, hi = self._n, self._n + len(x)
        self._codes[lo:hi], self._ids[lo:hi], self._rows[lo:hi] = codes, ids, rows
        self._n = hi
        self._index.insert(ids, np.arange(lo, hi, dtype=np.int64))
        self._count(codes, +1)
        self._xnorms = None

    def _reserve(self, extra: int) -> None:
        need = self._n + extra
        if need <= len(self._ids):
            return
        cap = max(need, 2 * len(self._ids), 1024)
        self._codes = np.concatenate(
            [self._codes[: self._n], np.empty((cap - self._n, self._config.ncodes), self._codes.dtype)]
        )
        self._ids = np.concatenate([self._ids[: self._n], np.empty(cap - self._n, np.int64)])
        self._rows = np.concatenate([self._rows[: self._n], np.empty(cap - self._n, np.int64)])

    def _count(self, codes: np.ndarray, sign: int) -> None:
        k = self._config.ksub
        flat = (codes.astype(np.int64) + np.arange(codes.shape[1], dtype=np.int64) * k).ravel()
        self._occupancy += sign * np.bincount(flat, minlength=len(self._occupancy))

    def _occupancy_share(self) -> np.ndarray:
        c = self._config
        share = self._occupancy.reshape(c.stages, c.m, c.ksub).astype(np.float64)
        return share * c.ksub / self._n if self._n else share

    def remove(self, ids: Any) -> None:
        """Delete stored ids; every id must be present."""
        ids = as_ids(ids)
        pos = self._index.lookup(ids)
        if (pos < 0).any():
            missing = ids[pos < 0]
            raise ValueError(f"{len(missing)} id(s) not stored, e.g. {int(missing[0])}")
        if len(pos) == 0:
            return
        self._count(self._codes[pos], -1)
        keep = np.ones(self._n, dtype=bool)
        keep[pos] = False
        n = int(keep.sum())
        self._codes[:n] = self._codes[: self._n][keep]
        self._ids[:n] = self._ids[: self._n][keep]
        self._rows[:n] = self._rows[: self._n][keep]
        self._n = n
        self._index.rebuild(self._ids[:n])
        self._xnorms = None

    def learn(self, vectors: Any) -> None:
        """One online codebook update from ``vectors`` without storing them: codeword update,
        dead-code reset and the re-encoding policy. The first call initialises by k-means; a
        call that reaches a refit point (growth or shift, see ``CodebookConfig``) refits the
        rotation and codebooks on a sample of the kept vectors plus ``vectors`` instead."""
        x = as_vectors(vectors, self.dim)
        if len(x) == 0:
            return
        t0 = time.perf_counter()
        if not self._quant.trained:
            self._quant.learn(x, self._occupancy_share())
            self._fitted(len(x))
        elif due := self._refit_due(x):
            self._refit(x, warm=due == "growth")
        else:
            old, moved, _ = self._quant.learn(x, self._occupancy_share())
            self._reencode(old, moved, len(x))
        self._xnorms = None
        self._upkeep += time.perf_counter() - t0

    def _fitted(self, extra: int, shifted: bool = False) -> None:
        self._fit_count = self._n + extra
        if shifted:  # the new data sets its own level
            self._level = -1.0

    def _refit_due(self, x: np.ndarray) -> str | None:
        """Why learning from ``x`` should refit, if it should: "growth" once the bank (with
        ``x``) has grown ``refit_growth`` times since the last fit; "shift" when the codebooks
        serve ``x`` ``refit_shift`` times worse than the level of recent batches. A refit
        reads the kept exact vectors, so a bank without a folder never refits."""
        c = self._config
        if self._store is None or (c.refit_growth == 0 and c.refit_shift == 0):
            return None
        size = self._n + len(x)
        shifted = False
        if c.refit_shift:
            # The level: an average of recent batches' relative errors, each weighing its size
            # against half the bank's (so it follows the last few batches, whatever their size).
            rel = self._quant.relative_error(x)
            level = self._level
            if level < 0:
                self._level = rel
            else:
                alpha = len(x) / (len(x) + 0.5 * max(self._n, 1))
                self._level = (1.0 - alpha) * level + alpha * rel
                # Not until the bank has grown by a tenth since the last fit, so the
                # tail of a shift does not refit batch after batch.
                shifted = rel > c.refit_shift * level and size >= 1.1 * self._fit_count
        if shifted:
            return "shift"
        if c.refit_growth and size >= c.refit_growth * self._fit_count:
            return "growth"
        return None

    def _refit(self, x: np.ndarray, warm: bool) -> None:
        """Rotation and codebooks learned afresh on a uniform sample of the stored exact vectors
        and ``x``, then every stored code re-encoded from its exact vector."""
        assert self._store is not None
        c = self._config
        n = self._n
        take = min(c.refit_sample, n + len(x))
        pick = np.sort(self._rng.choice(n + len(x), size=take, replace=False))
        stored, new = pick[pick < n], pick[pick >= n] - n
        sample = np.concatenate([self._store.get(self._rows[stored]), x[new]])
        self._quant.refit(sample, warm)
        codes, rows = self._codes[:n], self._rows[:n]
        for lo in range(0, n, _REENCODE_BLOCK):
            codes[lo : lo + _REENCODE_BLOCK] = self._quant.encode(
                self._store.get(rows[lo : lo + _REENCODE_BLOCK])
            )
        self._occupancy[:] = 0
        self._count(codes, +1)
        self._refits += 1
        self._fitted(len(x), shifted=not warm)

    def _reencode(self, old: np.ndarray, moved: np.ndarray, learned: int) -> None:
        c = self._config
        if c.reencode == "none" or self._n == 0:
            return
        codes = self._codes[: self._n]
        if c.reencode == "all":
            selected = np.arange(self._n)
        else:
            # For PQ the drift is exactly ||x_hat_new - x_hat_old||^2 (sub-spaces are orthogonal),
            # for residual PQ a close proxy; the most-moved reconstructions are fixed first.
            budget = min(c.reencode_budget, int(np.ceil(c.reencode_rate * learned)))
            drift = gather_sum(moved.ravel(), codes, c.ksub)
            selected = np.flatnonzero(drift > 0)
            if budget == 0:
                selected = selected[:0]
            elif len(selected) > budget:
                top = np.argpartition(-drift[selected], budget - 1)[:budget]
                selected = np.sort(selected[top])
        for lo in range(0, len(selected), _REENCODE_BLOCK):
            sel = selected[lo : lo + _REENCODE_BLOCK]
            if self._store is not None:
                src = self._store.get(self._rows[sel])
            else:
                src = self._quant.decode(codes[sel], old)
            new = self._quant.encode(src)
            self._count(codes[sel], -1)
            self._count(new, +1)
            codes[sel] = new
        self._reencoded_total += len(selected)

    # -- reading ------------------------------------------------------------------------
    def _positions(self, ids: Any, name: str = "ids") -> np.ndarray:
        arr = np.asarray(ids)
        if arr.ndim != 1 or (arr.size and (arr.dtype.kind not in "iu" or arr.dtype == np.bool_)):
            raise ValueError(f"{name} must be a 1-D integer array, got shape {arr.shape} dtype {arr.dtype}")
        pos = self._index.lookup(arr.astype(np.int64))
        if (pos < 0).any():
            raise ValueError(f"{int((pos < 0).sum())} id(s) not stored, e.g. {int(arr[pos < 0][0])}")
        return pos

    def decode(self, ids: Any) -> np.ndarray:
        """Reconstructions (n, dim) float32 from the stored codes."""
        pos = self._positions(ids)
        return self._quant.decode(self._codes[pos])

    def vectors(self, ids: Any) -> np.ndarray:
        """Exact vectors from disk when kept, else reconstructions."""
        pos = self._positions(ids)
        if self._store is None:
            return self._quant.decode(self._codes[pos])
        return self._store.get(self._rows[pos])

    def _l2_terms(self, q: np.ndarray, pos: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        if self._config.metric != "l2":
            return None, None
        if self._xnorms is None:
            self._xnorms = self._quant.sqnorms(self._codes[: self._n])
        xn = self._xnorms if pos is None else self._xnorms[pos]
        return xn, np.einsum("qd,qd->q", q, q)

    def search(
        self, queries: Any, k: int, allowed: Any = None, rerank: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` per query: (scores (nq, k) float32, ids (nq, k) int64), best first.

        "ip" scores are inner products (larger is better); "l2" scores are squared distances
        (smaller is better). Missing results have id -1 and score -inf ("ip") / +inf ("l2").
        ``allowed`` restricts results to those ids (unknown ones are ignored). With exact
        vectors kept, the ADC top ``max(k, rerank)`` are re-scored exactly (rerank=0: off).
        """
        q = as_vectors(queries, self.dim, "queries")
        k = as_k(k)
        r = self._config.rerank if rerank is None else rerank
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 0:
            raise ValueError(f"rerank must be a non-negative integer, got {rerank!r}")
        l2 = self._config.metric == "l2"
        scores = np.full((len(q), k), np.inf if l2 else -np.inf, dtype=np.float32)
        out_ids = np.full((len(q), k), -1, dtype=np.int64)
        pos = None if allowed is None else self._allowed_positions(allowed)
        n_eff = self._n if pos is None else len(pos)
        if n_eff == 0 or len(q) == 0:
            return scores, out_ids
        codes = self._codes[: self._n] if pos is None else self._codes[pos]
        xn, qn = self._l2_terms(q, pos)
        store = self._store if r > 0 else None
        s, p = adc_topk(self._quant.lut(q), codes, max(k, r) if store is not None else k, xn, qn)
        if pos is not None:
            p = pos[p]
        if store is not None:
            s, p = exact_scores(q, p, lambda rows: store.get(self._rows[rows]), l2)
        kk = min(k, s.shape[1])
        scores[:, :kk] = -s[:, :kk] if l2 else s[:, :kk]
        out_ids[:, :kk] = self._ids[p[:, :kk]]
        return scores, out_ids

    def _allowed_positions(self, allowed: Any) -> np.ndarray:
        arr = np.asarray(allowed)
        if arr.ndim != 1 or (arr.size and (arr.dtype.kind not in "iu" or arr.dtype == np.bool_)):
            raise ValueError(
                f"allowed must be a 1-D integer array of ids, got shape {arr.shape} dtype {arr.dtype}"
            )
        pos = self._index.lookup(arr.astype(np.int64))
        return np.unique(pos[pos >= 0])

    def attend(
        self, queries: Any, values: Any = None, temperature: float = 1.0, top: int | None = None
    ) -> np.ndarray:
        """Attention read-out: ``softmax(score / temperature) @ values`` per query, scores by
        ADC (inner products, or negated squared distances for "l2"). ``values`` (n,) or (n, dv)
        follow ``ids()`` order; by default the decoded vectors. ``top`` keeps only the best
        ``top`` scores per query (sparse attention)."""
        q = as_vectors(queries, self.dim, "queries")
        if not isinstance(temperature, (int, float, np.floating)) or not (
            np.isfinite(temperature) and temperature > 0
        ):
            raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
        if top is not None:
            top = as_k(top, "top")
        if self._n == 0:
            raise ValueError("attend needs a non-empty bank")
        vals = None
        if values is not None:
            vals = np.asarray(values)
            one_d = vals.ndim == 1
            vals = vals.reshape(len(vals), -1) if one_d else vals
            if vals.ndim != 2 or len(vals) != self._n:
                raise ValueError(
                    f"values must have one row per stored vector ({self._n}), got shape {np.shape(values)}"
                )
            vals = as_vectors(vals, vals.shape[1], "values")
        codes = self._codes[: self._n]
        xn, qn = self._l2_terms(q, None)
        out = attend_codes(
            self._quant.lut(q),
            codes,
            lambda rows: vals[rows] if vals is not None else self._quant.decode(codes[rows]),
            float(temperature),
            top,
            xn,
            qn,
        )
        return out[:, 0] if values is not None and np.ndim(values) == 1 else out

    # -- stats and persistence -----------------------------------------------------------
    def stats(self) -> BankStats:
        c = self._config
        dead = int(self._quant.dead_mask(self._occupancy_share()).sum()) if self._quant.trained else 0
        return BankStats(
            count=self._n,
            code_bytes_per_vector=c.code_bytes_per_vector,
            bytes_per_vector_ratio=c.code_bytes_per_vector / (4.0 * c.dim),
            dead_codes=dead,
            reset_codes_total=self._quant.reset_total,
            reencoded_total=self._reencoded_total,
            upkeep_seconds=self._upkeep,
            refits=self._refits,
        )

    def save(self, path: str | os.PathLike[str] | None = None) -> None:
        """Write the bank to ``path`` (default: its own folder) atomically, with checksums."""
        target = Path(path) if path is not None else self._path
        if target is None:
            raise ValueError("this bank has no folder: pass save(path)")
        target.mkdir(parents=True, exist_ok=True)
        manifest = None
        if self._store is not None:
            manifest = self._store.sync()
            if self._path is None or target.resolve() != self._path.resolve():
                self._store.copy_to(target)
        qarrays, qmeta = self._quant.state()
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "config": self._config.to_dict(),
            "count": self._n,
            "reencoded_total": self._reencoded_total,
            "upkeep_seconds": self._upkeep,
            "refit": {
                "fit_count": self._fit_count,
                "refits": self._refits,
                "level": self._level,
            },
            "rng": self._rng.bit_generator.state,
            "quantizer": qmeta,
            "vectors": manifest,
        }
        n = self._n
        arrays = {f"q.{k}": v for k, v in qarrays.items()}
        arrays.update(codes=self._codes[:n], ids=self._ids[:n], rows=self._rows[:n])
        write_state(target / STATE_FILE, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str], verify: bool = True) -> CodebookMemory:
        """Open a saved bank; ``verify`` re-checks the exact-vector file's checksums."""
        folder = Path(path)
        meta, arrays = read_state(folder / STATE_FILE)
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise BankFileError(
                f"{folder}: unsupported bank format {meta.get('format')!r} v{meta.get('version')!r}"
            )
        saved = meta.get("config")
        if isinstance(saved, dict) and "parallel_weight" not in saved:
            # Saved before score-aware coding: keep coding the way its codes were made.
            saved = {**saved, "parallel_weight": 1.0, "score_books": 0}
        try:
            config = CodebookConfig.from_dict(saved)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise BankFileError(f"{folder}: invalid saved config: {exc}") from exc
        bank = cls.__new__(cls)
        bank._setup(config)
        bank._path = folder
        try:
            bank._rng.bit_generator.state = meta["rng"]
            bank._quant.restore(
                {k[2:]: v for k, v in arrays.items() if k.startswith("q.")}, meta["quantizer"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BankFileError(f"{folder}: invalid saved quantiser state: {exc}") from exc
        n = int(meta["count"])
        codes, ids, rows = arrays.get("codes"), arrays.get("ids"), arrays.get("rows")
        if (
            codes is None or ids is None or rows is None
            or codes.shape != (n, config.ncodes) or codes.dtype != config.code_dtype
            or ids.shape != (n,) or rows.shape != (n,)
            or (n and int(codes.max()) >= config.ksub)
            or len(np.unique(ids)) != n
        ):  # fmt: skip
            raise BankFileError(f"{folder}: saved codes/ids do not match the saved config")
        if meta["vectors"] is not None:
            bank._store = VectorStore.open(folder, config.dim, meta["vectors"], verify=verify)
            if n and (rows.min() < 0 or rows.max() >= bank._store.rows):
                raise BankFileError(f"{folder}: saved rows point outside the exact vector file")
        bank._codes, bank._ids, bank._rows, bank._n = codes, ids.astype(np.int64), rows.astype(np.int64), n
        bank._index.rebuild(bank._ids)
        bank._count(codes, +1)
        bank._reencoded_total = int(meta["reencoded_total"])
        bank._upkeep = float(meta["upkeep_seconds"])
        # Banks saved before refits existed: their one fit counts as made at their size.
        refit = meta.get("refit") or {"fit_count": n, "refits": 0, "level": -1.0}
        try:
            bank._fit_count = int(refit["fit_count"])
            bank._refits = int(refit["refits"])
            bank._level = float(refit["level"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BankFileError(f"{folder}: invalid saved refit state: {exc}") from exc
        return bank
