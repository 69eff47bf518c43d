"""The temporal store's facts as a plain ranked corpus, for speculative retrieval.

``StoreRetriever(rag, as_of=..., now=...)`` satisfies ``speculation.Retriever``: ``search`` ranks
the facts a query may see, ``rank_within`` scores given fact ids the same way, ``text`` shows a
fact. Wrapped in ``speculation.SpeculativeRetriever`` it serves iterative retrieval-augmented
generation (``speculation.ralm``) from the store, with the output of always searching it.

What a query may see is what tgrag's own retrieval filters on: facts stored by ``as_of``
(bi-temporal) whose valid time overlaps the time the query names ("in Q2 2024", "last year"
relative to ``now``; no time named: all). Within that, a fact's score is the inner product of the
query's embedding with the fact's stored vector, recomputed in float64 per row (the same bits in
any batch, so a near tie cannot flip between a single search and a batched verification); ties
go to the smaller fact id. faiss proposes candidates among the visible facts and a margin of
``rescore_pad`` more guards the cut against float32 rounding.

The graph ranking of ``TemporalRAG.retrieve`` (personalised PageRank over a query's neighbourhood)
is not a per-document score, so it cannot re-rank a cache of candidates; the agent loop speculates
on whole retrieval results instead (``tgrag.agent.ResultCache``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING

import numpy as np

from speculation.base import Hit, exact_top_hits

from .errors import InputError
from .retrieve import as_timestamp
from .text import with_subject
from .timex import parse_query_scope

if TYPE_CHECKING:
    from .sdk import TemporalRAG


class StoreRetriever:
    """Time-scoped dense search over a ``TemporalRAG``'s facts, by fact id."""

    name = "tgrag-store"

    def __init__(
        self,
        rag: TemporalRAG,
        as_of: datetime | date | None = None,
        now: date | None = None,
        rescore_pad: int = 16,
        query_cache: int = 1024,
    ) -> None:
        if rescore_pad < 0 or query_cache < 1:
            raise InputError("rescore_pad must be at least 0 and query_cache at least 1")
        self._ws = rag.workspace
        self.as_of = as_of
        self.now = now
        self._pad = rescore_pad
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_size = query_cache
        self._generation = -1
        self._lock = threading.Lock()  # the query cache is shared with a verification thread

    def forget_queries(self) -> None:
        """Empty the cache of encoded queries and their scopes."""
        with self._lock:
            self._cache.clear()

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        out: list[list[Hit]] = []
        catalog = self._ws.indexes.catalog
        for query in queries:
            vec, visible = self._prepare(query)
            allowed = catalog.ids[visible]
            if k <= 0 or len(allowed) == 0:
                out.append([])
                continue
            _, found = self._ws.indexes.vectors["fact"].search(vec, min(len(allowed), k + self._pad), allowed)
            cand = found[0][found[0] >= 0].astype(np.int64)
            out.append(self._top(vec, cand, k))
        return out

    def rank_within(
        self, queries: Sequence[str], ids: Sequence[int], k: int | None = None
    ) -> list[list[Hit]]:
        catalog = self._ws.indexes.catalog
        rows = {int(i): catalog.row(int(i)) for i in ids}
        out = []
        for query in queries:
            vec, visible = self._prepare(query)
            # Facts deleted since they were cached, or outside this query's time, are never hits.
            cand = np.array(
                sorted(i for i, r in rows.items() if r is not None and visible[r]), dtype=np.int64
            )
            out.append(self._top(vec, cand, k))
        return out

    def text(self, doc_id: int) -> str:
        idx = self._ws.indexes
        row = idx.catalog.row(int(doc_id))
        if row is None:
            raise KeyError(f"no fact {doc_id} in the store")
        subject = idx.entity_names.get(int(idx.catalog.subject[row]))
        return f"{with_subject(subject, idx.catalog.texts[row])} ({idx.catalog.labels[row]})"

    # ---- helpers ------------------------------------------------------------------------------
    def _prepare(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """The query's embedding and the catalog rows it may see (cached per query)."""
        if not isinstance(query, str) or not query.strip():
            raise InputError("a query must be a non-empty string")
        self._ws.refresh_if_stale()
        with self._lock:
            if self._generation != self._ws.indexes.generation:  # the store changed: scopes too
                self._cache.clear()
                self._generation = self._ws.indexes.generation
            hit = self._cache.get(query)
            if hit is not None:
                self._cache.move_to_end(query)
                return hit
        catalog = self._ws.indexes.catalog
        scope = parse_query_scope(query, self.now)
        visible = catalog.visible(as_timestamp(self.as_of)) & catalog.in_scope(scope.interval)
        vec = np.asarray(self._ws.embedder.embed([query])[0], dtype=np.float32)
        with self._lock:
            self._cache[query] = (vec, visible)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return vec, visible

    def _top(self, query: np.ndarray, ids: np.ndarray, k: int | None) -> list[Hit]:
        if len(ids) == 0:
            return []
        vecs = self._ws.indexes.vectors["fact"].vectors(ids)  # type: ignore[attr-defined]
        # Exact scores (float64 sums per row): the same bits whatever else is in the batch.
        return exact_top_hits(query, ids, vecs, k)
