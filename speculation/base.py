"""The retriever protocol that speculative retrieval works on, and its result type.

A ``Retriever`` scores documents for a batch of queries. ``search`` ranks the whole corpus;
``rank_within`` applies the same scoring to a given set of candidate ids, which is how a
speculation is served from a request's cache of earlier results. Both order hits best first
and break ties by the smaller id, so that a ranking is a pure function of the query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True, order=False)
class Hit:
    """One retrieved document: its id in the corpus and its score (higher is better)."""

    id: int
    score: float


@runtime_checkable
class Retriever(Protocol):
    """A corpus that can be searched in batches and re-ranked over candidate ids."""

    name: str

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """The top ``k`` documents of each query, best first, ties by smaller id."""
        ...

    def rank_within(self, queries: Sequence[str], ids: Sequence[int]) -> list[list[Hit]]:
        """Every id of ``ids`` scored as ``search`` scores it, best first, ties by smaller id.

        Ids that ``search`` could never return for a query (a time-scoped retriever's documents
        outside the query's scope) are left out.
        """
        ...

    def text(self, doc_id: int) -> str:
        """The text of one document."""
        ...


def top_hits(ids: np.ndarray, scores: np.ndarray, k: int) -> list[Hit]:
    """The ``k`` best of ``ids`` by ``scores``, best first, ties broken by the smaller id.

    Selection first keeps every id that reaches the k-th best score, so that ties at the cut
    are resolved by id and not by where ``argpartition`` happened to put them.
    """
    n = len(ids)
    if n == 0 or k <= 0:
        return []
    if k < n:
        kth = np.partition(scores, n - k)[n - k]
        keep = np.flatnonzero(scores >= kth)
        ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))[:k]
    return [Hit(int(ids[i]), float(scores[i])) for i in order]
