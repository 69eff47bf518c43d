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

    def rank_within(
        self, queries: Sequence[str], ids: Sequence[int], k: int | None = None
    ) -> list[list[Hit]]:
        """The ids of ``ids`` scored as ``search`` scores them, best first, ties by smaller id:
        the best ``k`` of them, or all when ``k`` is None.

        Ids that ``search`` could never return for a query (a time-scoped retriever's documents
        outside the query's scope) are left out. A speculation needs only the best one, and a
        retriever may save work when told so (``exact_top_hits``).
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
        if len(keep) > k:
            # Ties at the cut: only the smallest of their ids can make it. Sorting them all
            # would cost a sort of the corpus when most scores tie (BM25's zeros for a query
            # whose terms few documents hold).
            above = keep[scores[keep] > kth]
            tied = keep[scores[keep] == kth]
            need = k - len(above)
            if len(tied) > need:
                tied = tied[np.argpartition(ids[tied], need - 1)[:need]]
            keep = np.concatenate([above, tied])
        ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))[:k]
    return [Hit(int(ids[i]), float(scores[i])) for i in order]


# Unit roundoff of float32: a float32 dot product of length d is off by at most
# gamma_d * sum|q_i v_i| <= gamma_d |q| |v| with gamma_d = d u / (1 - d u), in any summation order.
_U32 = 2.0**-24


def exact_top_hits(
    query: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int | None = None
) -> list[Hit]:
    """The best ``k`` (all when None) of ``ids`` by exact inner product with ``query``.

    ``vectors`` holds the float32 rows of ``ids``. Exact means float64 products of the float32
    inputs (exact) summed per row in one fixed order, so a score has the same bits whatever else
    is scored with it. Only rows that a float32 screen cannot rule out are scored exactly: with
    ``A`` the k-th best screened score and ``eps`` the screen's error bound, every true top-k row
    screens at ``A - 2 eps`` or more, ties included. Scoring a request's whole cache exactly to
    take its best one cost 1 ms for 320 rows; screened, a few dozen microseconds.
    """
    n = len(ids)
    want = n if k is None else min(k, n)
    if want <= 0:
        return []
    vecs = np.asarray(vectors, dtype=np.float32)
    q32 = np.asarray(query, dtype=np.float32)
    if want < n:
        screened = vecs @ q32
        d = vecs.shape[1]
        gamma = d * _U32 / (1.0 - d * _U32)
        # Row norms computed in float32 are themselves rounded: a 1% margin covers that.
        norms = np.sqrt(np.einsum("ij,ij->i", vecs, vecs))
        eps = 1.01 * gamma * float(np.linalg.norm(q32)) * float(norms.max())
        kth = np.partition(screened, n - want)[n - want]
        keep = np.flatnonzero(screened >= kth - 2.0 * eps)
        ids, vecs = ids[keep], vecs[keep]
    return top_hits(ids, _exact_scores(vecs, q32), want)


def exact_top_hits_grouped(
    queries: np.ndarray, rows: np.ndarray, owners: np.ndarray, vectors: np.ndarray, k: int
) -> list[list[Hit]]:
    """Per query ``j``, ``exact_top_hits(queries[j], R, vectors[R], k)`` where ``R`` are the
    ``rows`` whose ``owners`` entry is ``j`` (repeats count once): a whole batch in a handful
    of numpy calls.

    For the few candidates a screened search leaves (tens per query) scoring every one in
    float64 costs less than screening them again, and one call per batch instead of a dozen per
    query matters on a verification thread: each numpy or torch call releases the GIL and has to
    win it back from the thread that is generating.
    """
    qs = np.asarray(queries, dtype=np.float32)
    rows = np.asarray(rows, dtype=np.int64)
    owners = np.asarray(owners, dtype=np.int64)
    exact = _exact_scores(np.asarray(vectors[rows], dtype=np.float32), qs[owners])
    order = np.lexsort((rows, -exact, owners))  # by query, then best first, then smaller id
    repeated = (owners[order][1:] == owners[order][:-1]) & (rows[order][1:] == rows[order][:-1])
    order = order[np.concatenate([[True], ~repeated])] if len(order) else order  # a row counts once
    starts = np.searchsorted(owners[order], np.arange(len(qs) + 1))
    out = []
    for j in range(len(qs)):
        best = order[starts[j] : min(starts[j] + max(k, 0), starts[j + 1])]
        out.append([Hit(int(i), float(v)) for i, v in zip(rows[best], exact[best], strict=True)])
    return out


def _exact_scores(vecs: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """float64 inner products of float32 rows (exact products, one summation order per row).

    ``queries`` is one query for every row, or one row per row; either way a row's score has
    the same bits.
    """
    return (vecs.astype(np.float64) * queries.astype(np.float64)).sum(axis=1)
