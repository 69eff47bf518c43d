"""How many speculative steps to take before a verification: the stride.

``OS3Scheduler`` chooses it from measured costs and the recent acceptance rate (RaLMSpec's
optimal speculation stride scheduler); ``FixedStride`` always answers the same, for ablations and
tests. Both satisfy ``Scheduler``, which is all the serving loops rely on.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Protocol


class Scheduler(Protocol):
    """Chooses the stride and learns from what the loop measured."""

    def stride(self, asynchronous: bool = False) -> int:
        """Speculative steps to take before the next verification (at least 1)."""
        ...

    def record_step(self, seconds: float) -> None:
        """One speculative step took ``seconds`` (speculation plus generation)."""
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

    def record_step(self, seconds: float) -> None:
        pass

    def record_verification(self, seconds: float, queries: int = 1) -> None:
        pass

    def record_outcome(self, accepted: int, checked: int) -> None:
        pass


@dataclass(frozen=True)
class Estimates:
    """What the scheduler believes: acceptance rate, step cost, verification cost (seconds).

    A verification of ``s`` queries is modelled as ``verify_seconds + verify_per_query * s``.
    """

    acceptance: float
    step_seconds: float | None
    verify_seconds: float | None
    verify_per_query: float = 0.0

    def verify_cost(self, s: int) -> float | None:
        if self.verify_seconds is None:
            return None
        return self.verify_seconds + self.verify_per_query * s


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
    """Picks the stride ``s`` in ``[1, max_stride]`` minimising expected seconds per committed step.

    The objective is ``cost(s) / expected_steps(s, gamma)`` with ``sync_cost`` or ``async_cost``
    (see their docstrings for the derivations), where ``a`` is the mean of recent speculative
    step times, ``b = b(s)`` the verification time of ``s`` queries (a least-squares line
    ``b0 + b1 * s`` through recent verifications, clipped to be non-negative; their mean while
    only one batch size has been seen) and ``gamma`` the acceptance rate
    over the last ``window`` verifications (correct speculations over judged ones; those after
    a round's first mismatch are not judged, since they were made on a wrong prefix).

    High acceptance pushes the stride up (a verification is paid once for many steps); low
    acceptance pulls it down to 1 (every wrong guess wastes the rest of its round). Until both
    costs have been measured it answers ``initial_stride``. Ties go to the smaller stride. Safe
    to feed from a verification thread.
    """

    def __init__(
        self,
        max_stride: int = 8,
        window: int = 8,
        initial_stride: int = 2,
        prior_acceptance: float = 0.5,
        timing_window: int = 16,
    ) -> None:
        if max_stride < 1 or window < 1 or timing_window < 1:
            raise ValueError("max_stride, window and timing_window must be at least 1")
        self.max_stride = max_stride
        self.initial_stride = min(max(1, initial_stride), max_stride)
        self.prior_acceptance = min(max(prior_acceptance, 0.0), 1.0)
        self._outcomes: deque[tuple[int, int]] = deque(maxlen=window)
        self._steps: deque[float] = deque(maxlen=timing_window)
        self._verifications: deque[tuple[int, float]] = deque(maxlen=timing_window)
        self._lock = threading.Lock()

    def record_step(self, seconds: float) -> None:
        with self._lock:
            self._steps.append(max(0.0, seconds))

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
            a = sum(self._steps) / len(self._steps) if self._steps else None
            samples = list(self._verifications)
        b0, b1 = _line(samples) if samples else (None, 0.0)
        return Estimates(gamma, a, b0, b1)

    def stride(self, asynchronous: bool = False) -> int:
        est = self.estimates()
        if est.step_seconds is None or est.verify_seconds is None:
            return self.initial_stride
        cost = async_cost if asynchronous else sync_cost
        a, gamma = est.step_seconds, est.acceptance
        b0, b1 = est.verify_seconds, est.verify_per_query
        per_step = [
            cost(s, a, b0 + b1 * s, gamma) / expected_steps(s, gamma) for s in range(1, self.max_stride + 1)
        ]
        best = min(per_step)
        # A relative tolerance, so that float noise between equal costs cannot pick a longer stride.
        return next(s for s, c in enumerate(per_step, start=1) if c <= best * (1 + 1e-9))


def _line(samples: list[tuple[int, float]]) -> tuple[float, float]:
    """Intercept and slope of seconds against batch size, both at least 0 (a flat mean if one size)."""
    n = len(samples)
    mean_s = sum(s for s, _ in samples) / n
    mean_t = sum(t for _, t in samples) / n
    spread = sum((s - mean_s) ** 2 for s, _ in samples)
    if spread == 0:
        return mean_t, 0.0
    slope = max(0.0, sum((s - mean_s) * (t - mean_t) for s, t in samples) / spread)
    return max(0.0, mean_t - slope * mean_s), slope
