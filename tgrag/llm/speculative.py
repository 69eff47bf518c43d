"""Speculative decoding for tgrag's vLLM backends: the settings, and the counters vLLM reports.

``SuffixSpeculation`` is vLLM's ``"suffix"`` method (SuffixDecoding, arXiv 2411.04975; the
implementation is Arctic Inference's): drafts come from suffix trees over the request's prompt
and over past responses, with no draft model, so repetitive work (extraction into JSON, agent
loops) gets long accepted drafts for almost nothing. At temperature 0 the output is the same as
without speculation; only the speed changes.

``SpecDecodeCounts`` reads vLLM's counters from a metrics dict, the same names whether they come
from a server's ``/metrics`` (``VLLMServer.metrics``) or the in-process engine
(``VLLMEngineLLM.metrics``).

Standard library only: this module is imported on machines without vLLM.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SuffixSpeculation:
    """vLLM's suffix decoding. Defaults are vLLM 0.32's own.

    - ``num_speculative_tokens``: most tokens drafted a step (None: ``max_tree_depth``, as vLLM);
    - ``max_tree_depth``: depth of the prompt and global suffix trees; bounds the matched
      pattern plus the draft;
    - ``max_spec_factor``: a draft is at most ``max_spec_factor`` times the matched length, so
      short, unreliable matches draft little;
    - ``min_token_prob``: draft only tokens whose estimated probability (from the trees'
      counts) is at least this;
    - ``max_cached_requests``: past responses kept in the global tree (FIFO eviction); 0 keeps
      none (prompt trees only).

    vLLM 0.32 has no additive budget offset (the ``alpha * p + offset`` of
    ``speculation.suffix_decoding``): its budget is the factor alone.
    """

    num_speculative_tokens: int | None = None
    max_tree_depth: int = 24
    max_spec_factor: float = 1.0
    min_token_prob: float = 0.1
    max_cached_requests: int = 10_000

    def __post_init__(self) -> None:
        # Checked here rather than left to vLLM: its error surfaces minutes later, from a child
        # process, inside a long traceback.
        if self.num_speculative_tokens is not None:
            _check_int("num_speculative_tokens", self.num_speculative_tokens, minimum=1)
        _check_int("max_tree_depth", self.max_tree_depth, minimum=1)
        _check_int("max_cached_requests", self.max_cached_requests, minimum=0)
        _check_float("max_spec_factor", self.max_spec_factor)
        if self.max_spec_factor < 0:
            raise ValueError(f"max_spec_factor must be >= 0, got {self.max_spec_factor}")
        _check_float("min_token_prob", self.min_token_prob)
        if not 0.0 <= self.min_token_prob <= 1.0:
            raise ValueError(f"min_token_prob must be in [0, 1], got {self.min_token_prob}")

    def to_vllm(self) -> dict[str, Any]:
        """vLLM's ``speculative_config`` (``vllm.LLM(speculative_config=...)``, or as JSON for
        the server's ``--speculative-config``)."""
        return {
            "method": "suffix",
            # Explicit, so that vLLM does not log a warning about defaulting it.
            "num_speculative_tokens": self.num_speculative_tokens or self.max_tree_depth,
            "suffix_decoding_max_tree_depth": self.max_tree_depth,
            "suffix_decoding_max_spec_factor": float(self.max_spec_factor),
            "suffix_decoding_min_token_prob": float(self.min_token_prob),
            "suffix_decoding_max_cached_requests": self.max_cached_requests,
        }


@dataclass(frozen=True)
class SpecDecodeCounts:
    """vLLM's speculative decoding counters; subtract two readings for what happened between.

    ``drafts``: drafts verified (one per request and decoding step that had one);
    ``draft_tokens``: tokens proposed in them; ``accepted_tokens``: of those, the tokens the
    target model confirmed (at temperature 0: the ones equal to its own greedy choice).
    """

    drafts: float = 0.0
    draft_tokens: float = 0.0
    accepted_tokens: float = 0.0

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, float]) -> SpecDecodeCounts:
        return cls(
            drafts=metrics.get("vllm:spec_decode_num_drafts_total", 0.0),
            draft_tokens=metrics.get("vllm:spec_decode_num_draft_tokens_total", 0.0),
            accepted_tokens=metrics.get("vllm:spec_decode_num_accepted_tokens_total", 0.0),
        )

    def __add__(self, other: SpecDecodeCounts) -> SpecDecodeCounts:
        return SpecDecodeCounts(
            self.drafts + other.drafts,
            self.draft_tokens + other.draft_tokens,
            self.accepted_tokens + other.accepted_tokens,
        )

    def __sub__(self, other: SpecDecodeCounts) -> SpecDecodeCounts:
        return SpecDecodeCounts(
            self.drafts - other.drafts,
            self.draft_tokens - other.draft_tokens,
            self.accepted_tokens - other.accepted_tokens,
        )

    @property
    def acceptance_rate(self) -> float:
        """Accepted draft tokens / draft tokens (0 when nothing was drafted)."""
        return self.accepted_tokens / self.draft_tokens if self.draft_tokens else 0.0

    @property
    def mean_acceptance_length(self) -> float:
        """Tokens a drafted step yields: the accepted ones plus the one the model adds (vLLM's
        own definition: 1 + accepted / drafts)."""
        return 1.0 + self.accepted_tokens / self.drafts if self.drafts else 0.0


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_float(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
