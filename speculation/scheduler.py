"""How many speculative steps to take before a verification: the stride.

``OS3Scheduler`` chooses it from measured costs and the recent acceptance rate (RaLMSpec's
optimal speculation stride scheduler), and answers 0, "do not speculate, retrieve for real", when
a plain retrieval per step is expected to be no slower than speculating (a cheap retriever, or
guesses that are mostly wrong): speculation then never makes a request slower than the baseline
by more than what it takes to learn the costs. ``FixedStride`` always answers the same, for
ablations and tests. Both satisfy ``Scheduler``, which is all the serving loops rely on.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Scheduler(Protocol):
    """Chooses the stride and learns from what the loop measured."""

    def stride(self, asynchronous: bool = False) -> int:
        """Speculative steps to take before the next verification; 0: retrieve for real, now."""
        ...

    def record_step(self, seconds: float, speculation: float | None = None) -> None:
        """A step's generation took ``seconds``; guessing its document took ``speculation``.

        ``speculation`` is None for a step whose document came from a real retrieval.
        """
        ...

    def record_retrieval(self, seconds: float) -> None:
        """A step retrieved for real instead of speculating; it took ``seconds`` (encoding included)."""
        ...

    def record_verification(self, seconds: float, queries: int = 1) -> None:
        """One batched verification of ``queries`` queries took ``seconds``."""
        ...

    def record_outcome(self, accepted: int, checked: int) -> None:
        """A verification found ``accepted`` correct speculations among ``checked`` judged ones."""
        ...


@dataclass
class FixedStride:
    """Always the same stride; ignores measurements."""

    value: int = 4

    def __post_init__(self) -> None:
        if self.value < 1:
            raise ValueError("the stride must be at least 1")

    def stride(self, asynchronous: bool = False) -> int:
        return self.value

    def record_step(self, seconds: float, speculation: float | None = None) -> None:
        pass

    def record_retrieval(self, seconds: float) -> None:
        pass

    def record_verification(self, seconds: float, queries: int = 1) -> None:
        pass

    def record_outcome(self, accepted: int, checked: int) -> None:
        pass


@dataclass(frozen=True)
class Estimates:
    """What the scheduler believes: acceptance rate and the costs of the parts of a step (seconds).

    A speculative step costs ``generation + speculation``; a plain step ``generation +
    retrieval``. ``verifications`` holds the mean seconds of a verification per batch size
    measured, smallest size first; ``verify_cost`` reads other sizes off them.
    """

    acceptance: float
    generation_seconds: float | None = None
    speculation_seconds: float | None = None
    retrieval_seconds: float | None = None
    verifications: tuple[tuple[int, float], ...] = ()

    @property
    def step_seconds(self) -> float | None:
        """Expected seconds of a speculative step."""
        if self.generation_seconds is None or self.speculation_seconds is None:
            return None
        return self.generation_seconds + self.speculation_seconds

    @property
    def plain_step_seconds(self) -> float | None:
        """Expected seconds of a step that retrieves for real instead of speculating."""
        r = self.retrieval_seconds if self.retrieval_seconds is not None else self.verify_cost(1)
        if self.generation_seconds is None or r is None:
            return None
        return self.generation_seconds + r

    def verify_cost(self, s: int) -> float | None:
        """Seconds to verify ``s`` queries at once: the measured mean for that batch size,
        linear between measured sizes, and the nearest measured size's beyond them.

        Batched search costs are far from a line (a 1-query search may take another code path
        than a batch), hence no fitted line. Reading past the largest measured size as flat is
        optimistic on purpose: the scheduler then tries a longer stride, measures it, and the
        measurement corrects the estimate.
        """
        if not self.verifications:
            return None
        return float(_read_off(self.verifications, np.array([s]))[0])


def expected_steps(s: int, gamma: float) -> float:
    """Expected steps a round of ``s`` speculations commits: ``sum_{i<s} gamma^i``.

    Speculations are taken as independent, each right with probability ``gamma``. A round
    commits its correct prefix and, at the first mismatch, one redone step with the true
    document, so it commits at least ``i + 1`` steps exactly when its first ``i`` speculations
    are right (probability ``gamma^i``), for i = 0 .. s-1. Hence ``(1 - gamma^s) / (1 - gamma)``,
    and ``s`` when ``gamma`` is 1.
    """
    if gamma >= 1.0:
        return float(s)
    return (1.0 - gamma**s) / (1.0 - gamma)


def sync_cost(s: int, a: float, b: float, gamma: float) -> float:
    """Expected seconds of a synchronous round: ``s*a + b + (1 - gamma^s)*a``.

    ``s`` steps of ``a`` each, then a verification ``b`` that nothing overlaps, then, when some
    speculation was wrong (probability ``1 - gamma^s``), one more step to redo it.
    """
    return s * a + b + (1.0 - gamma**s) * a


def async_cost(s: int, a: float, b: float, gamma: float) -> float:
    """Expected seconds of an asynchronous round (a pipeline approximation).

    The verification of a round runs while the next round's steps are generated. When all ``s``
    speculations are right (probability ``gamma^s``) those steps stand, so a round costs
    ``max(s*a, b)``: whichever of generation and verification is slower. When one is wrong, what
    was generated during the verification is thrown away and the redo follows, so the round
    costs ``s*a + b + a`` as if nothing overlapped.
    """
    hit = gamma**s
    return hit * max(s * a, b) + (1.0 - hit) * (s * a + b + a)


class OS3Scheduler:
    """Picks the stride ``s`` in ``[1, max_stride]`` minimising expected seconds per committed step,
    or 0 (no speculation) when a plain step is expected to cost no more.

    The objective is ``cost(s) / expected_steps(s, gamma)`` with ``sync_cost`` or ``async_cost``
    (see their docstrings for the derivations), where ``a`` is the mean of recent speculative
    step times (generation plus speculation), ``b = b(s)`` the verification time of ``s``
    queries (``Estimates.verify_cost``: per batch size measured) and ``gamma`` the acceptance
    rate over the last ``window`` verifications (correct speculations over judged ones; those
    after a round's first mismatch are not judged, since they were made on a wrong prefix).

    High acceptance pushes the stride up (a verification is paid once for many steps); low
    acceptance pulls it down to 1 (every wrong guess wastes the rest of its round).

    The best stride's cost per committed step is then compared with a plain step's (generation
    plus a real retrieval, as measured): unless speculating is expected to save at least
    ``min_gain`` of it, the answer is 0 and the loop retrieves for real. While it does, guesses
    are not made, so acceptance and speculation cost keep their last estimates while generation
    and retrieval costs stay current: a retriever that turns slow brings speculation back. Until
    the costs have been measured it answers ``initial_stride``. Ties go to the smaller stride.
    Safe to feed from a verification thread.
    """

    def __init__(
        self,
        max_stride: int = 16,
        window: int = 8,
        initial_stride: int = 2,
        prior_acceptance: float = 0.5,
        timing_window: int = 16,
        min_gain: float = 0.05,
    ) -> None:
        if max_stride < 1 or window < 1 or timing_window < 1:
            raise ValueError("max_stride, window and timing_window must be at least 1")
        if not 0.0 <= min_gain < 1.0:
            raise ValueError("min_gain must be in [0, 1)")
        self.max_stride = max_stride
        self.min_gain = min_gain
        self.initial_stride = min(max(1, initial_stride), max_stride)
        self.prior_acceptance = min(max(prior_acceptance, 0.0), 1.0)
        self._outcomes: deque[tuple[int, int]] = deque(maxlen=window)
        self._generation: deque[float] = deque(maxlen=timing_window)
        self._speculation: deque[float] = deque(maxlen=timing_window)
        self._retrieval: deque[float] = deque(maxlen=timing_window)
        # Several batch sizes are in play at once: keep more samples than one size needs.
        self._verifications: deque[tuple[int, float]] = deque(maxlen=4 * timing_window)
        self._lock = threading.Lock()

    def record_step(self, seconds: float, speculation: float | None = None) -> None:
        with self._lock:
            self._generation.append(max(0.0, seconds))
            if speculation is not None:
                self._speculation.append(max(0.0, speculation))

    def record_retrieval(self, seconds: float) -> None:
        with self._lock:
            self._retrieval.append(max(0.0, seconds))

    def record_verification(self, seconds: float, queries: int = 1) -> None:
        with self._lock:
            self._verifications.append((max(1, queries), max(0.0, seconds)))

    def record_outcome(self, accepted: int, checked: int) -> None:
        if checked > 0:
            with self._lock:
                self._outcomes.append((min(max(accepted, 0), checked), checked))

    def estimates(self) -> Estimates:
        with self._lock:
            checked = sum(c for _, c in self._outcomes)
            accepted = sum(a for a, _ in self._outcomes)
            gamma = accepted / checked if checked else self.prior_acceptance
            g, c, r = (_mean(d) for d in (self._generation, self._speculation, self._retrieval))
            by_size: dict[int, list[float]] = {}
            for n, t in self._verifications:
                by_size.setdefault(n, []).append(t)
        verifications = tuple((n, sum(ts) / len(ts)) for n, ts in sorted(by_size.items()))
        return Estimates(gamma, g, c, r, verifications)

    def stride(self, asynchronous: bool = False) -> int:
        est = self.estimates()
        a = est.step_seconds
        if a is None or not est.verifications:
            return self.initial_stride
        cost = async_cost if asynchronous else sync_cost
        gamma = est.acceptance
        strides = np.arange(1, self.max_stride + 1)
        per_step = [
            cost(int(s), a, float(b), gamma) / expected_steps(int(s), gamma)
            for s, b in zip(strides, _read_off(est.verifications, strides), strict=True)
        ]
        best = min(per_step)
        plain = est.plain_step_seconds
        if plain is not None and best >= (1.0 - self.min_gain) * plain:
            return 0  # speculation would not pay for itself: retrieve for real
        # A relative tolerance, so that float noise between equal costs cannot pick a longer stride.
        return next(s for s, c in enumerate(per_step, start=1) if c <= best * (1 + 1e-9))


def _read_off(verifications: tuple[tuple[int, float], ...], sizes: np.ndarray) -> np.ndarray:
    """Verification seconds at ``sizes``: linear between measured sizes, flat beyond them."""
    return np.interp(sizes, [n for n, _ in verifications], [t for _, t in verifications])


def _mean(values: deque[float]) -> float | None:
    return sum(values) / len(values) if values else None
