"""Configuration and result types of the codebook memory bank."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

Metric = Literal["ip", "l2"]
Learning = Literal["minibatch", "ema"]
Reencode = Literal["none", "all", "budget"]


@dataclass(frozen=True)
class CodebookConfig:
    """How a :class:`~memory.CodebookMemory` quantises, learns and searches.

    ``dim`` is split into ``m`` sub-spaces of ``dim // m`` dimensions; each sub-space has
    ``2**nbits`` codewords per stage. With ``stages > 1`` every further stage quantises the
    residual the earlier stages left (residual PQ), so a vector costs ``stages * m`` codes.
    """

    dim: int
    # Four residual stages of 4 one-byte codes (16 bytes): on the benchmark's combined stream
    # recall@10 after re-ranking 100 was 0.935 against 0.931 for 2 stages of 8, and 0.945
    # against 0.935 with score-aware codes (docs/memory.md).
    m: int = 4
    nbits: int = 8
    stages: int = 4
    metric: Metric = "ip"
    learning: Learning = "minibatch"
    # Per-update forgetting: minibatch multiplies its per-code counts by it (so codes keep a
    # learning rate under drift); ema is the VQ-VAE decay; usage EMAs decay by it too.
    # 0.7 tracked a domain shift best on MiniLM embeddings (0.99 and 0.9 lagged behind).
    decay: float = 0.7
    # An update from n < decay_batch vectors forgets decay ** (n / decay_batch) instead.
    decay_batch: int = 4096
    # A code is dead when both its recent usage and its share of stored vectors fall below
    # this fraction of the average code's (1.0 = average); it is then reseeded.
    dead_threshold: float = 0.03
    reencode: Reencode = "budget"
    # Stale codes re-encoded per update: ``reencode_rate`` per vector learned from, at most
    # ``reencode_budget``; so many small batches re-encode as much as one big one.
    reencode_budget: int = 4096
    reencode_rate: float = 0.5
    rerank: int = 100
    # An optimised-PQ rotation: an orthogonal map, so scores are unchanged, and it balances the
    # variance of sentence embeddings across sub-spaces (recall@10 0.73 -> 0.98 on MiniLM
    # passages). Learned on the first batch, then again at every refit.
    rotation: bool = True
    rotation_iters: int = 12
    # Refit: learn the rotation and the codebooks afresh on a sample of the kept exact vectors,
    # then re-encode every stored vector from them (needs a folder). It happens when the bank
    # has grown ``refit_growth`` times since the last fit (geometric, so O(1) amortised work a
    # vector; 0: never), and when a batch's relative reconstruction error exceeds
    # ``refit_shift`` times the level of the batches since the last fit (a shift; 0: never).
    refit_growth: float = 2.0
    refit_shift: float = 0.0
    # A growth refit continues from the current rotation and codebooks: this many OPQ steps
    # and Lloyd passes (a shift refit starts cold, like the first fit).
    refit_iters: int = 4
    # Vectors sampled (uniformly over the bank and the new batch) for a refit's k-means; the
    # rotation uses at most 8,192 of them.
    refit_sample: int = 16384
    # Score-aware (anisotropic) coding for "ip": codes minimise ||r_perp||^2 + parallel_weight
    # * ||r_par||^2 of the residual r (r_par: its component along the vector), by
    # ``score_sweeps`` coordinate-descent sweeps from the greedy codes. 1: plain squared error.
    # On the benchmark (with score_books): 3 took recall from 0.935 to 0.954, 2 to 0.950.
    parallel_weight: float = 3.0
    score_sweeps: int = 1
    # With parallel_weight > 1: rounds of score-aware codes then score-aware codebooks (each
    # codeword its loss's minimiser, codes fixed) ending each fit (the first and every refit),
    # on the fit's sample. Online updates between fits stay plain mini-batch k-means.
    score_books: int = 1
    # Threads for the quantiser's heavy passes (k-means assignment and sums per sub-space,
    # score-aware coding per block of rows), BLAS one thread each; the codes do not depend on
    # it. Two threads on 2 cores: score-aware coding 1.6x, assignment 1.5x, a refit's fit
    # 1.18x (its score-aware codebook pass runs slot by slot, on one thread); over a whole
    # benchmark stream no measurable gain (docs/benchmarks.md).
    # 1 keeps everything on the calling thread.
    threads: int = 1
    seed: int = 0
    init_iters: int = 10
    # Lloyd passes over each batch in an online update (each pass re-assigns, then updates).
    passes: int = 1
    # Recent inputs kept to reseed dead codes from.
    reservoir: int = 4096

    def __post_init__(self) -> None:
        def positive_int(name: str, value: object, low: int = 1) -> None:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"CodebookConfig.{name} must be an integer >= {low}, got {value!r}")

        positive_int("dim", self.dim)
        positive_int("m", self.m)
        positive_int("stages", self.stages)
        positive_int("init_iters", self.init_iters, 0)
        positive_int("passes", self.passes)
        positive_int("reservoir", self.reservoir)
        positive_int("rotation_iters", self.rotation_iters, 0)
        positive_int("reencode_budget", self.reencode_budget, 0)
        positive_int("refit_sample", self.refit_sample)
        positive_int("decay_batch", self.decay_batch)
        positive_int("refit_iters", self.refit_iters, 0)
        positive_int("score_sweeps", self.score_sweeps, 0)
        positive_int("score_books", self.score_books, 0)
        positive_int("threads", self.threads)
        for name in ("reencode_rate", "refit_growth", "refit_shift", "parallel_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ValueError(f"CodebookConfig.{name} must be a finite number, got {value!r}")
        if self.parallel_weight < 1:
            raise ValueError(f"CodebookConfig.parallel_weight must be >= 1, got {self.parallel_weight!r}")
        if self.reencode_rate < 0:
            raise ValueError(f"CodebookConfig.reencode_rate must be >= 0, got {self.reencode_rate!r}")
        for name in ("refit_growth", "refit_shift"):
            value = getattr(self, name)
            if value != 0 and value <= 1:
                raise ValueError(f"CodebookConfig.{name} must be 0 (off) or above 1, got {value!r}")
        positive_int("rerank", self.rerank, 0)
        if (
            isinstance(self.nbits, bool)
            or not isinstance(self.nbits, (int, np.integer))
            or not (1 <= self.nbits <= 16)
        ):
            raise ValueError(f"CodebookConfig.nbits must be an integer in 1..16, got {self.nbits!r}")
        if self.dim % self.m != 0:
            raise ValueError(
                f"CodebookConfig.dim ({self.dim}) must be divisible by m ({self.m}): "
                "each sub-quantiser owns dim // m dimensions"
            )
        if self.metric not in ("ip", "l2"):
            raise ValueError(f"CodebookConfig.metric must be 'ip' or 'l2', got {self.metric!r}")
        if self.learning not in ("minibatch", "ema"):
            raise ValueError(f"CodebookConfig.learning must be 'minibatch' or 'ema', got {self.learning!r}")
        if self.reencode not in ("none", "all", "budget"):
            raise ValueError(
                f"CodebookConfig.reencode must be 'none', 'all' or 'budget', got {self.reencode!r}"
            )
        if not (isinstance(self.decay, (int, float)) and 0.0 < float(self.decay) < 1.0):
            raise ValueError(f"CodebookConfig.decay must be in (0, 1), got {self.decay!r}")
        if not (isinstance(self.dead_threshold, (int, float)) and 0.0 <= float(self.dead_threshold) < 1.0):
            raise ValueError(f"CodebookConfig.dead_threshold must be in [0, 1), got {self.dead_threshold!r}")
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool):
            raise ValueError(f"CodebookConfig.seed must be an integer, got {self.seed!r}")

    @property
    def dsub(self) -> int:
        """Dimensions per sub-space."""
        return self.dim // self.m

    @property
    def ksub(self) -> int:
        """Codewords per sub-quantiser."""
        return 1 << self.nbits

    @property
    def ncodes(self) -> int:
        """Codes per vector (``stages * m``)."""
        return self.stages * self.m

    @property
    def code_dtype(self) -> np.dtype[Any]:
        return np.dtype(np.uint8) if self.nbits <= 8 else np.dtype(np.uint16)

    @property
    def code_bytes_per_vector(self) -> float:
        """Bytes of codes one vector costs at ``nbits`` bits a code (packed size)."""
        return self.ncodes * self.nbits / 8.0

    def to_dict(self) -> dict[str, Any]:
        return {key: (int(v) if isinstance(v, np.integer) else v) for key, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CodebookConfig:
        return cls(**data)


@dataclass(frozen=True)
class BankStats:
    """Size and upkeep figures of a bank."""

    count: int
    code_bytes_per_vector: float
    bytes_per_vector_ratio: float  # code bytes / float32 bytes (4 * dim)
    dead_codes: int
    reset_codes_total: int
    reencoded_total: int  # stale codes re-encoded after updates (refits re-encode every code)
    upkeep_seconds: float  # learn + dead-code reset + re-encoding + refits; not encoding new vectors
    refits: int = 0  # fits after the first (rotation and codebooks learned afresh)
