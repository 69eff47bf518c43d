"""RaLMSpec's speculative retrieval (arXiv 2401.14021): guess from a local cache, verify in batches.

Iterative retrieval-augmented generation retrieves again every few tokens, and consecutive
queries tend to want the same documents. ``SpeculativeRetriever`` keeps, per request, a cache of
the ids that real retrievals returned (the top ``prefetch`` of each, so near misses are at
hand), answers a query from the cache (``speculate``: the retriever's own scoring restricted to
the cached ids) and later checks several speculations with one batched real search (``verify``).
Whoever generates with a speculated document must be ready to roll back to the first step whose
speculation the verification rejects; with that, outputs equal those of always retrieving.

Two ways to use it:

* a loop that owns the rollback (``speculation.ralm.speculative``) calls ``guess`` and ``verify``
  and asks the scheduler for the stride;
* an agent that issues whole queries calls ``retrieve_top1(query)`` for each (a speculation,
  remembered as pending), checks ``should_verify()`` after each step, and calls
  ``verify_pending()``: the ``Verdict`` says the first pending query whose document was wrong and
  the true documents, so the agent redoes that step with ``verdict.truths[i]`` and drops every
  later one. ``reset()`` starts a new request.

The cache is guarded by a lock, so ``verify`` may run on another thread while ``speculate`` runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .base import Hit, Retriever
from .scheduler import OS3Scheduler, Scheduler

__all__ = ["Guess", "OS3Scheduler", "Pending", "SpeculativeRetriever", "Verdict"]


@dataclass(frozen=True)
class Guess:
    """A speculated top-1; ``exact`` when it came from a real retrieval (nothing was cached)."""

    hit: Hit
    exact: bool


@dataclass(frozen=True)
class Pending:
    """A query answered by speculation and not yet verified."""

    query: str
    guess: Guess


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying pending queries, in the order they were issued."""

    queries: tuple[str, ...]
    guesses: tuple[Hit, ...]
    truths: tuple[Hit, ...]
    first_mismatch: int | None  # index of the first wrong guess; None when all were right

    @property
    def accepted(self) -> int:
        """How many leading guesses were right (all of them when there was no mismatch)."""
        return len(self.guesses) if self.first_mismatch is None else self.first_mismatch


class SpeculativeRetriever:
    """Speculative top-1 retrieval over ``retriever`` with a per-request cache of document ids."""

    def __init__(
        self,
        retriever: Retriever,
        prefetch: int = 20,
        scheduler: Scheduler | None = None,
        shadow_every: int = 16,
    ) -> None:
        if prefetch < 1 or shadow_every < 1:
            raise ValueError("prefetch and shadow_every must be at least 1")
        # An approximate index may rank a query's top-1 differently for a larger k (HNSW beyond
        # its beam width); verification asks for ``prefetch`` hits, the baseline for one.
        stable = getattr(retriever, "top1_stable_k", None)
        if stable is not None and prefetch > stable:
            raise ValueError(f"prefetch {prefetch} exceeds {retriever.name}'s top1_stable_k {stable}")
        self.retriever = retriever
        self.prefetch = prefetch
        self.shadow_every = shadow_every
        self._plain = 0  # real retrievals made with a non-empty cache, for the shadow guesses
        self.scheduler: Scheduler = scheduler if scheduler is not None else OS3Scheduler()
        self._cache: set[int] = set()
        self._lock = threading.Lock()
        self._pending: list[Pending] = []
        self._last_step: float | None = None

    def reset(self) -> None:
        """Start a new request: empty the cache and forget pending queries (scheduler stats stay)."""
        with self._lock:
            self._cache.clear()
        self._pending.clear()
        self._last_step = None
        self.scheduler.start_request()

    @property
    def cache_ids(self) -> tuple[int, ...]:
        with self._lock:
            return tuple(sorted(self._cache))

    def guess(self, query: str, real: bool = False) -> Guess:
        """The best cached document for ``query``; a real retrieval when ``real``, or when the
        cache is empty or holds nothing the retriever would return for this query.

        Every ``shadow_every``-th real retrieval made while the cache holds something is also
        guessed from the cache, and the outcome told to the scheduler: with speculation off,
        acceptance would otherwise never be measured again, and one unlucky early estimate
        would switch speculation off for good. Not more often: even screened (``k=1``), ranking
        a request's cache costs tens of microseconds, a step of speculation-off bookkeeping.
        Those real retrievals fetch one hit, as the baseline does (100 cost BM25 and HNSW a few
        percent of a step), except the one before a shadow guess, which fetches ``prefetch``.
        """
        shadow_ids: tuple[int, ...] = ()
        k = self.prefetch
        if not real:
            ids = self.cache_ids
            ranked = self.retriever.rank_within([query], ids, k=1)[0] if ids else []
            if ranked:
                return Guess(ranked[0], exact=False)
        else:
            with self._lock:
                cached = bool(self._cache)
            if cached:
                self._plain += 1
                # The sorted ids only when needed: with speculation off, this runs every step.
                shadow_ids = self.cache_ids if self._plain % self.shadow_every == 0 else ()
                # With speculation off, fetch what the baseline fetches (one hit), except on
                # the step before a shadow guess, which then guesses as a first speculative
                # step would: from a full prefetch.
                if (self._plain + 1) % self.shadow_every:
                    k = 1
        hit = self._search([query], plain=True, k=k)[0]
        if shadow_ids:
            shadow = self.retriever.rank_within([query], shadow_ids, k=1)[0]
            self.scheduler.record_outcome(int(bool(shadow) and shadow[0].id == hit.id), 1)
        return Guess(hit, exact=True)

    def speculate(self, query: str) -> Hit:
        """``guess(query).hit``."""
        return self.guess(query).hit

    def verify(self, queries: Sequence[str]) -> list[Hit]:
        """The true top-1 of each query, from one batched real search (which also fills the cache)."""
        if not queries:
            return []
        return self._search(queries)

    # Agent-style use: whole queries, verified when the scheduler says so.

    def retrieve_top1(self, query: str) -> Hit:
        """A speculated top-1 for ``query``, remembered as pending until ``verify_pending``.

        A real retrieval instead when the scheduler's stride is 0 (speculation does not pay).
        The time since the previous call returned (the caller's work on the last document) is
        recorded as a step's generation time for the scheduler.
        """
        start = time.perf_counter()
        guess = self.guess(query, real=self.scheduler.stride() == 0)
        end = time.perf_counter()
        if self._last_step is not None:
            self.scheduler.record_step(start - self._last_step, None if guess.exact else end - start)
        self._last_step = end
        self._pending.append(Pending(query, guess))
        return guess.hit

    @property
    def pending(self) -> tuple[Pending, ...]:
        return tuple(self._pending)

    def should_verify(self, asynchronous: bool = False) -> bool:
        """Whether as many queries are pending as the scheduler's stride (any, at stride 0)."""
        return len(self._pending) >= max(1, self.scheduler.stride(asynchronous))

    def verify_pending(self) -> Verdict:
        """Verify every pending query in one batch, clear them and report the first mismatch.

        Guesses that came from a real retrieval are taken as they are. The caller must discard
        whatever it derived from the mismatching query and every later one.
        """
        pending, self._pending = self._pending, []
        self._last_step = None
        judged = [i for i, p in enumerate(pending) if not p.guess.exact]
        truths = [p.guess.hit for p in pending]
        for i, hit in zip(judged, self.verify([pending[i].query for i in judged]), strict=True):
            truths[i] = hit
        mismatch = next((i for i, p in enumerate(pending) if p.guess.hit.id != truths[i].id), None)
        right = sum(1 for i in judged if mismatch is None or i < mismatch)
        self.scheduler.record_outcome(right, right + (mismatch is not None))
        return Verdict(
            queries=tuple(p.query for p in pending),
            guesses=tuple(p.guess.hit for p in pending),
            truths=tuple(truths),
            first_mismatch=mismatch,
        )

    def _search(self, queries: Sequence[str], plain: bool = False, k: int | None = None) -> list[Hit]:
        """One batched real search, timed for the scheduler (as a plain retrieval or as a
        verification); its top ``k`` (default ``prefetch``) hits fill the cache."""
        start = time.perf_counter()
        results = self.retriever.search(queries, self.prefetch if k is None else k)
        seconds = time.perf_counter() - start
        if plain:
            self.scheduler.record_retrieval(seconds)
        else:
            self.scheduler.record_verification(seconds, len(queries))
        if any(not hits for hits in results):
            raise LookupError(f"{self.retriever.name} returned no document for a query")
        with self._lock:
            for hits in results:
                self._cache.update(h.id for h in hits)
        return [hits[0] for hits in results]
