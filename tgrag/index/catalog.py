"""The fact catalog: the columns retrieval filters on (valid time, ingest time, entities), as numpy.

Rows are appended in the order facts are indexed and shared with the BM25 index; removed facts
are masked. Filtering a whole store by time scope and ``as_of`` is a few vectorised comparisons.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp

from ..model import MAX_ORDINAL, MIN_ORDINAL, Granularity, TimeInterval
from ..store.base import FactRow


class FactCatalog:
    def __init__(self) -> None:
        self.ids = np.zeros(0, dtype=np.int64)
        self.start = np.zeros(0, dtype=np.int64)
        self.end = np.zeros(0, dtype=np.int64)
        self.ingested = np.zeros(0, dtype=np.float64)
        self.subject = np.zeros(0, dtype=np.int64)
        self.chunk = np.zeros(0, dtype=np.int64)
        self.confidence = np.zeros(0, dtype=np.float64)
        self.projected = np.zeros(0, dtype=bool)
        self.doc_index = np.zeros(0, dtype=np.int64)  # doc_ids as small ints, for vectorised filters
        self._doc_numbers: dict[str, int] = {}
        self.alive = np.zeros(0, dtype=bool)
        self.texts: list[str] = []
        self.labels: list[str] = []
        self.granularity: list[str] = []
        self.doc_ids: list[str] = []
        self.entities: list[tuple[int, ...]] = []
        self._row_of: dict[int, int] = {}
        self._incidence: sp.csr_matrix | None = None
        self._by_entity: sp.csr_matrix | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def alive_count(self) -> int:
        return int(self.alive.sum())

    def add(self, rows: Sequence[FactRow]) -> list[int]:
        first = len(self.ids)
        self.ids = np.concatenate([self.ids, np.array([r.id for r in rows], dtype=np.int64)])
        self.start = np.concatenate([self.start, np.array([r.start for r in rows], dtype=np.int64)])
        self.end = np.concatenate([self.end, np.array([r.end for r in rows], dtype=np.int64)])
        self.ingested = np.concatenate(
            [self.ingested, np.array([r.first_ingested_at for r in rows], dtype=np.float64)]
        )
        self.subject = np.concatenate([self.subject, np.array([r.subject_id for r in rows], dtype=np.int64)])
        self.chunk = np.concatenate([self.chunk, np.array([r.chunk_num for r in rows], dtype=np.int64)])
        self.confidence = np.concatenate(
            [self.confidence, np.array([r.confidence for r in rows], dtype=np.float64)]
        )
        self.projected = np.concatenate([self.projected, np.array([r.projected for r in rows], dtype=bool)])
        numbers = [self._doc_numbers.setdefault(r.doc_id, len(self._doc_numbers)) for r in rows]
        self.doc_index = np.concatenate([self.doc_index, np.array(numbers, dtype=np.int64)])
        self.alive = np.concatenate([self.alive, np.ones(len(rows), dtype=bool)])
        for i, r in enumerate(rows):
            self.texts.append(r.text)
            self.labels.append(r.time_label)
            self.granularity.append(r.granularity)
            self.doc_ids.append(r.doc_id)
            self.entities.append(r.entity_ids)
            self._row_of[r.id] = first + i
        self._incidence = None
        self._by_entity = None
        return list(range(first, first + len(rows)))

    def remove(self, fact_ids: Iterable[int]) -> list[int]:
        rows = [self._row_of.pop(int(f)) for f in fact_ids if int(f) in self._row_of]
        self.alive[rows] = False
        self._incidence = None
        self._by_entity = None
        return rows

    def update_sources(self, rows: Sequence[FactRow]) -> None:
        """A fact gained or lost a source: its first-ingested time and confidence may move."""
        for r in rows:
            row = self._row_of.get(r.id)
            if row is not None:
                self.ingested[row] = r.first_ingested_at
                self.confidence[row] = r.confidence
                self.projected[row] = r.projected
                self.doc_ids[row] = r.doc_id
                self.doc_index[row] = self._doc_numbers.setdefault(r.doc_id, len(self._doc_numbers))
                self.chunk[row] = r.chunk_num

    def row(self, fact_id: int) -> int | None:
        return self._row_of.get(int(fact_id))

    def rows_of(self, fact_ids: np.ndarray) -> np.ndarray:
        return np.array([self._row_of.get(int(f), -1) for f in fact_ids], dtype=np.int64)

    def time_of(self, row: int) -> TimeInterval:
        return TimeInterval.from_ordinals(
            int(self.start[row]), int(self.end[row]), Granularity(self.granularity[row]), self.labels[row]
        )

    # ---- filters ------------------------------------------------------------------------------
    def visible(self, as_of_ts: float | None) -> np.ndarray:
        """Rows that exist and, for an as-of query, had been ingested by then."""
        if as_of_ts is None:
            return self.alive.copy()
        return self.alive & (self.ingested <= as_of_ts)

    def in_scope(self, scope: TimeInterval) -> np.ndarray:
        """Rows whose valid time overlaps the scope (undated facts overlap everything)."""
        return (self.start < scope.end_ordinal) & (scope.start_ordinal < self.end)

    def observed(self, max_days: int = 3660) -> np.ndarray:
        """Facts that show a period is covered: observed (not forecast), tied to a bounded time of at
        most ``max_days``. Open-ended statements ("since 2021", "by 2026") overlap every later (or
        earlier) scope without saying anything about it, and a forecast is not data about its period.
        """
        bounded = (self.start > MIN_ORDINAL) & (self.end < MAX_ORDINAL)
        return bounded & (self.end - self.start <= max_days) & ~self.projected

    def same_documents(self, rows: np.ndarray) -> np.ndarray:
        """Rows from the documents the selected rows come from."""
        return np.isin(self.doc_index, np.unique(self.doc_index[rows]))

    def hull(self, rows: np.ndarray) -> TimeInterval | None:
        """The smallest interval holding the valid times of the selected facts."""
        if not rows.any():
            return None
        return TimeInterval.from_ordinals(
            int(self.start[rows].min()), int(self.end[rows].max()), Granularity.RANGE
        )

    def time_weight(
        self, scope: TimeInterval, undated_weight: float, match_bonus: float = 0.25
    ) -> np.ndarray:
        """How well each fact's valid time fits the scope, in [0, 1].

        Mostly containment: a fact about Q3 inside a 2024 scope weighs 1; a fact about all of 2024
        inside a Q3 scope 0.25 (floored at 0.3); open-ended and undated facts ``undated_weight`` as
        long as they overlap. Within a bounded scope, ``match_bonus`` of the weight goes to how well
        the two intervals coincide (intersection over union): asked about "1975 to 2016", a fact
        about "1974-2016" fits better than one about 1976 alone.
        """
        lo = np.maximum(self.start, scope.start_ordinal)
        hi = np.minimum(self.end, scope.end_ordinal)
        overlap = np.clip(hi - lo, 0, None).astype(np.float64)
        length = (self.end - self.start).astype(np.float64)
        bounded = (self.start > MIN_ORDINAL) & (self.end < MAX_ORDINAL)
        weight = np.where(bounded, overlap / np.maximum(length, 1.0), 0.0)
        # A partial overlap still says something about the scope; do not let it vanish.
        weight = np.where(bounded & (overlap > 0), np.maximum(weight, 0.3), weight)
        weight = np.where(~bounded & (overlap > 0), undated_weight, weight)
        if scope.bounded and match_bonus > 0:
            union = np.maximum(self.end, scope.end_ordinal) - np.minimum(self.start, scope.start_ordinal)
            iou = np.where(bounded, overlap / np.maximum(union, 1.0), 0.0)
            weight = np.where(bounded, weight * (1.0 - match_bonus + match_bonus * iou), weight)
        return weight

    def incidence(self) -> sp.csr_matrix:
        """Rows x entity ids, 1 where a fact mentions an entity (its subject included)."""
        if self._incidence is None:
            indptr = np.zeros(len(self.entities) + 1, dtype=np.int64)
            cols: list[int] = []
            for i, ents in enumerate(self.entities):
                if self.alive[i]:
                    cols.extend(ents)
                indptr[i + 1] = len(cols)
            ncols = (max(cols) + 1) if cols else 1
            data = np.ones(len(cols), dtype=np.float32)
            self._incidence = sp.csr_matrix(
                (data, np.array(cols, dtype=np.int64), indptr), shape=(len(self.entities), ncols)
            )
        return self._incidence

    def incidence_by_entity(self) -> sp.csr_matrix:
        """Entity ids x rows: the facts each entity appears in (the transpose, cached)."""
        if self._by_entity is None:
            self._by_entity = self.incidence().T.tocsr()
        return self._by_entity
