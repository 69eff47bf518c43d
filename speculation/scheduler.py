"""How many speculative steps to take before a verification: the stride.

``OS3Scheduler`` chooses it from measured costs and the recent acceptance rate (RaLMSpec's
optimal speculation stride scheduler), and answers 0, "do not speculate, retrieve for real", when
a plain retrieval per step is expected to be no slower than speculating (a cheap retriever, or
guesses that are mostly wrong): speculation then never makes a request slower than the baseline
by more than what it takes to learn the costs. ``FixedStride`` always answers the same, for
ablations and tests. Both satisfy ``Scheduler``, which is all the serving loops rely on.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Scheduler(Protocol):
    """Chooses the stride and learns from what the loop measured."""

    def stride(self, asynchronous: bool = False, remaining: int | None = None) -> int:
        """Speculative steps to take before the next verification; 0: retrieve for real, now.

        ``remaining``: steps left in the request from the first unverified one, when known.
        """
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

    def start_request(self) -> None:
        """A new request begins (its cache is empty); statistics carry over."""
        ...

    def record_request(self, seconds: float, steps: int, speculated: int) -> None:
        """A whole request took ``seconds`` (wall clock) for ``steps`` committed steps, of which
        ``speculated`` were generated on guesses (rolled back ones included)."""
        ...


@dataclass
class FixedStride:
    """Always the same stride; ignores measurements."""

    value: int = 4

    def __post_init__(self) -> None:
        if self.value < 1:
            raise ValueError("the stride must be at least 1")

    def stride(self, asynchronous: bool = False, remaining: int | None = None) -> int:
        return self.value

    def record_step(self, seconds: float, speculation: float | None = None) -> None:
        pass

    def record_retrieval(self, seconds: float) -> None:
        pass

    def record_verification(self, seconds: float, queries: int = 1) -> None:
        pass

    def record_outcome(self, accepted: int, checked: int) -> None:
        pass

    def start_request(self) -> None:
        pass

    def record_request(self, seconds: float, steps: int, speculated: int) -> None:
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
    return _sync_round(s, a, b, gamma**s)


def async_cost(s: int, a: float, b: float, gamma: float) -> float:
    """Expected seconds of an asynchronous round (a pipeline approximation).

    The verification of a round runs while the next round's steps are generated. When all ``s``
    speculations are right (probability ``gamma^s``) those steps stand, so a round costs
    ``max(s*a, b)``: whichever of generation and verification is slower. When one is wrong, what
    was generated during the verification is thrown away and the redo follows, so the round
    costs ``s*a + b + a`` as if nothing overlapped.
    """
    return _async_round(s, a, b, gamma**s)


def _sync_round(s: int, a: float, b: float, hit: float) -> float:
    return s * a + b + (1.0 - hit) * a


def _async_round(s: int, a: float, b: float, hit: float) -> float:
    return hit * max(s * a, b) + (1.0 - hit) * (s * a + b + a)


class RunLengths:
    """How likely a guess is wrong given how many guesses in a row were right before it.

    Guesses are not independent: a request's first guesses, made from the first retrieval's
    hits alone, miss more often than guesses deep in a run of hits, when the cache already holds
    the neighbourhood the text is moving through. Taking every guess as right with one
    probability ``gamma`` then makes long strides look worse than they are (at 1M passages a
    fixed stride of 16 ran 2.0x where the independent model's choice, 3 to 4, ran 1.5x).

    So the scheduler counts, for each run position ``r`` (right guesses since the last wrong one
    or the start of the request), how many guesses were judged there and how many were wrong:
    a Kaplan-Meier estimate of the hazard ``h(r)``. Counts decay by ``decay`` a verification,
    so the estimate follows a drifting workload, and each position is shrunk by ``prior``
    pseudo-guesses towards the rate of longer runs, so a sparsely seen position cannot claim
    certainty (``survival`` says how). Positions from ``cap - 1`` on share one bin.
    """

    def __init__(
        self, cap: int = 64, decay: float = 0.99, prior: float = 2.0, tail_mass: float = 8.0
    ) -> None:
        if cap < 1 or not 0.0 < decay <= 1.0 or prior <= 0.0 or tail_mass <= 0.0:
            raise ValueError("cap must be at least 1, decay in (0, 1], prior and tail_mass positive")
        self.cap = cap
        self.decay = decay
        self.prior = prior
        self.tail_mass = tail_mass
        self.judged = np.zeros(cap)
        self.wrong = np.zeros(cap)
        self.run = 0  # right guesses since the last wrong one (or the request's start)

    def record(self, accepted: int, checked: int) -> None:
        """``checked`` guesses judged in order, the first ``accepted`` right and, when fewer
        than ``checked``, the next one wrong."""
        self.judged *= self.decay
        self.wrong *= self.decay
        positions = np.minimum(np.arange(self.run, self.run + checked), self.cap - 1)
        np.add.at(self.judged, positions, 1.0)
        if accepted < checked:
            self.wrong[positions[accepted]] += 1.0
            self.run = 0
        else:
            self.run += accepted

    def survival(self, steps: int, gamma: float) -> np.ndarray:
        """``out[i]``: probability that the next ``i`` guesses are all right, i = 0 .. steps.

        A position is shrunk towards the rate over it and every longer run (the tail), itself
        shrunk towards ``1 - gamma``; positions past the longest runs seen with some weight
        (``tail_mass`` guesses) take the tail rate of those runs. Unexplored long runs are then
        expected to behave like the longest ones seen, not like the average guess, which would
        keep the scheduler from ever trying a long stride.
        """
        judged_tail = np.cumsum(self.judged[::-1])[::-1]
        wrong_tail = np.cumsum(self.wrong[::-1])[::-1]
        seen = np.flatnonzero(judged_tail >= self.tail_mass)
        last = int(seen[-1]) if len(seen) else 0
        positions = np.minimum(np.arange(self.run, self.run + steps), self.cap - 1)
        tails = np.minimum(positions, last)
        pooled = 1.0 - gamma
        target = (wrong_tail[tails] + self.prior * pooled) / (judged_tail[tails] + self.prior)
        hazard = (self.wrong[positions] + self.prior * target) / (self.judged[positions] + self.prior)
        # The shape over run lengths comes from the long memory; the level from the recent
        # window (``gamma``), so that a turn for the worse is acted on as soon as it shows.
        overall = (wrong_tail[0] + self.prior * pooled) / (judged_tail[0] + self.prior)
        if overall > 0.0:
            hazard = np.clip(hazard * (pooled / overall), 0.0, 1.0)
        return np.concatenate([[1.0], np.cumprod(1.0 - hazard)])


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
    acceptance pulls it down to 1 (every wrong guess wastes the rest of its round). Guesses are
    not taken as independent: the chance that the next ``s`` are all right, and the steps a
    round commits, come from ``RunLengths`` (the hazard of a wrong guess by the length of the
    run of right ones before it, from the current run on), which equals ``gamma^s`` and
    ``expected_steps`` when the hazard does not depend on the run.

    The best stride's cost per committed step is then compared with a plain step's (generation
    plus a real retrieval, as measured): unless speculating is expected to save at least
    ``min_gain`` of it, the answer is 0 and the loop retrieves for real. While it does, guesses
    are not made, so acceptance and speculation cost would keep their last estimates, and a few
    slow first rounds (cold caches, a first call's setup) could switch speculation off for good.
    Hence a probe: after ``probe_every`` real retrievals in a row, the speculation and
    verification timings are forgotten and the answer is ``initial_stride`` until a round has
    measured them again (generation and retrieval costs stay current all along, so a retriever
    that turns slow also brings speculation back). Until the costs have been measured it
    answers ``initial_stride``. Timings are medians over the last ``timing_window`` samples, so
    that one stall does not move them.

    The model can be wrong where it cannot see: a verification thread that slows generation
    down (memory bandwidth, the GIL), a retriever whose batches cost what their queries do one
    by one. So what speculation really costs is checked too: whole requests that mostly
    speculated (``record_request``; the last ``request_window``) against a plain step as plain
    steps measure it (the generation of steps on a real retrieval, plus the retrieval). When
    their seconds per committed step do not beat it by ``min_gain``, the answer is 0, with
    the same probe later (which forgets those requests).

    Ties go to the smaller stride. Safe to feed from a verification thread.
    """

    def __init__(
        self,
        max_stride: int = 16,
        window: int = 8,
        initial_stride: int = 2,
        prior_acceptance: float = 0.5,
        timing_window: int = 16,
        min_gain: float = 0.05,
        probe_every: int = 256,
        request_window: int = 4,
    ) -> None:
        if min(max_stride, window, timing_window, probe_every, request_window) < 1:
            raise ValueError(
                "max_stride, window, timing_window, probe_every and request_window must be at least 1"
            )
        if not 0.0 <= min_gain < 1.0:
            raise ValueError("min_gain must be in [0, 1)")
        self.max_stride = max_stride
        self.min_gain = min_gain
        self.initial_stride = min(max(1, initial_stride), max_stride)
        self.prior_acceptance = min(max(prior_acceptance, 0.0), 1.0)
        self.probe_every = probe_every
        self._plain_run = 0  # real retrievals since speculation last ran or was probed
        self._outcomes: deque[tuple[int, int]] = deque(maxlen=window)
        self._runs = RunLengths()
        self._generation: deque[float] = deque(maxlen=timing_window)
        self._plain_generation: deque[float] = deque(maxlen=timing_window)  # steps on real retrievals
        self._requests: deque[tuple[float, int]] = deque(maxlen=request_window)  # (seconds, steps)
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
            else:
                self._plain_generation.append(max(0.0, seconds))

    def record_request(self, seconds: float, steps: int, speculated: int) -> None:
        if steps > 0 and 2 * speculated >= steps:  # mostly speculative: it measures speculation
            with self._lock:
                self._requests.append((max(0.0, seconds), steps))

    def record_retrieval(self, seconds: float) -> None:
        with self._lock:
            self._retrieval.append(max(0.0, seconds))
            self._plain_run += 1

    def record_verification(self, seconds: float, queries: int = 1) -> None:
        with self._lock:
            self._verifications.append((max(1, queries), max(0.0, seconds)))
            self._plain_run = 0

    def record_outcome(self, accepted: int, checked: int) -> None:
        if checked > 0:
            accepted = min(max(accepted, 0), checked)
            with self._lock:
                self._outcomes.append((accepted, checked))
                self._runs.record(accepted, checked)

    def start_request(self) -> None:
        with self._lock:
            self._runs.run = 0

    def estimates(self) -> Estimates:
        with self._lock:
            checked = sum(c for _, c in self._outcomes)
            accepted = sum(a for a, _ in self._outcomes)
            gamma = accepted / checked if checked else self.prior_acceptance
            g, c, r = (_median(d) for d in (self._generation, self._speculation, self._retrieval))
            by_size: dict[int, list[float]] = {}
            for n, t in self._verifications:
                by_size.setdefault(n, []).append(t)
        # A size measured once is not trusted while others were measured twice: one stall at a
        # long stride would otherwise price every long stride out, and they would never be
        # tried again to correct it. Unmeasured sizes are read off the trusted ones.
        trusted = {n: ts for n, ts in by_size.items() if len(ts) >= 2} or by_size
        verifications = tuple((n, statistics.median(ts)) for n, ts in sorted(trusted.items()))
        return Estimates(gamma, g, c, r, verifications)

    def realized_loses(self) -> bool:
        """Whether the recent mostly-speculative requests took, per committed step, more than
        ``1 - min_gain`` of a plain step (as plain steps measured it)."""
        with self._lock:
            if not self._requests or not self._plain_generation or not self._retrieval:
                return False
            seconds = sum(t for t, _ in self._requests)
            steps = sum(n for _, n in self._requests)
            plain = statistics.median(self._plain_generation) + statistics.median(self._retrieval)
        return seconds / steps >= (1.0 - self.min_gain) * plain

    def stride(self, asynchronous: bool = False, remaining: int | None = None) -> int:
        if self.realized_loses():
            return self._probe()
        est = self.estimates()
        a = est.step_seconds
        if a is None or not est.verifications:
            return self.initial_stride
        cost = _async_round if asynchronous else _sync_round
        with self._lock:
            survival = self._runs.survival(self.max_stride, est.acceptance)
        strides = np.arange(1, self.max_stride + 1)
        b = _read_off(est.verifications, strides)
        rounds = np.array(
            [cost(int(n), a, float(bn), float(survival[n])) for n, bn in zip(strides, b, strict=True)]
        )
        plain = est.plain_step_seconds
        # Planning to the end adds round costs one after another: the synchronous loop. In the
        # pipeline a round's verification overlaps the next round's steps, except for the last
        # round, which that sum cannot see (planning it lost on BM25: 0.79x against 1.26x).
        if remaining is not None and remaining >= 1 and not asynchronous:
            best_stride, seconds = _finish(min(remaining, 4 * self.max_stride), rounds, survival)
            if plain is not None and seconds >= (1.0 - self.min_gain) * plain * min(
                remaining, 4 * self.max_stride
            ):
                return self._probe()
            return best_stride
        committed = np.cumsum(survival[:-1])  # steps a round of s commits: sum_{i<s} P(i right)
        per_step = rounds / committed
        best = float(per_step.min())
        if plain is not None and best >= (1.0 - self.min_gain) * plain:
            return self._probe()  # speculation would not pay for itself: retrieve for real
        # A relative tolerance, so that float noise between equal costs cannot pick a longer stride.
        return int(np.flatnonzero(per_step <= best * (1 + 1e-9))[0]) + 1

    def _probe(self) -> int:
        """0, or after ``probe_every`` real retrievals in a row, a round to re-measure."""
        with self._lock:
            if self._plain_run < self.probe_every:
                return 0
            self._plain_run = 0
            self._speculation.clear()
            self._verifications.clear()
            self._requests.clear()
        return self.initial_stride


def _finish(horizon: int, rounds: np.ndarray, survival: np.ndarray) -> tuple[int, float]:
    """The first stride of the quickest way through ``horizon`` steps, and its expected seconds.

    ``T(r)``, the expected seconds to finish ``r`` steps, is the best over strides ``s <= r`` of
    a round's cost (``rounds[s-1]``) plus what is left after it: ``T(r - s)`` when all ``s``
    guesses were right, ``T(r - i - 1)`` when the first wrong one was guess ``i`` (it is redone
    with the true document). A request's end caps what a wrong guess can waste, which the cost
    per committed step of an endless stream does not see: near the end, speculating to the end
    and verifying once is often best.
    """
    cap = len(rounds)
    miss = survival[:-1] - survival[1:]  # P(first wrong guess is guess i), i < cap
    t = np.zeros(horizon + 1)
    first = 1
    for r in range(1, horizon + 1):
        m = min(cap, r)
        before = t[r - 1 :: -1][:m] if r - 1 >= 0 else t[:0]  # T(r-1), T(r-2), ..., T(r-m)
        after_miss = np.cumsum(miss[:m] * before)  # s = 1..m: sum_{i<s} P(miss at i) T(r-i-1)
        total = rounds[:m] + after_miss + survival[1 : m + 1] * before
        best = float(total.min())
        t[r] = best
        first = int(np.flatnonzero(total <= best * (1 + 1e-9))[0]) + 1
    return first, float(t[horizon])


def _read_off(verifications: tuple[tuple[int, float], ...], sizes: np.ndarray) -> np.ndarray:
    """Verification seconds at ``sizes``: linear between measured sizes, flat beyond them."""
    return np.interp(sizes, [n for n, _ in verifications], [t for _, t in verifications])


def _median(values: deque[float]) -> float | None:
    # statistics, not numpy: this runs at every step, and on 16 floats numpy costs 10x more.
    return statistics.median(values) if values else None
