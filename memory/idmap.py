"""Id -> position lookup as two sorted numpy arrays (a dict would cost ~100 bytes an id,
several times the codes themselves)."""

from __future__ import annotations

import numpy as np


class IdIndex:
    def __init__(self) -> None:
        self.sorted_ids = np.empty(0, dtype=np.int64)
        self.sorted_pos = np.empty(0, dtype=np.int64)

    def rebuild(self, ids: np.ndarray) -> None:
        """Index ``ids`` given in position order."""
        order = np.argsort(ids, kind="stable")
        self.sorted_ids = ids[order].astype(np.int64)
        self.sorted_pos = order.astype(np.int64)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Positions of ``ids``; -1 where absent."""
        if len(self.sorted_ids) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        at = np.searchsorted(self.sorted_ids, ids)
        at_c = np.minimum(at, len(self.sorted_ids) - 1)
        found = self.sorted_ids[at_c] == ids
        return np.where(found, self.sorted_pos[at_c], -1)

    def insert(self, ids: np.ndarray, positions: np.ndarray) -> None:
        """Add ids (known absent and distinct) at the given positions."""
        order = np.argsort(ids, kind="stable")
        new_ids, new_pos = ids[order], positions[order]
        at = np.searchsorted(self.sorted_ids, new_ids)
        self.sorted_ids = np.insert(self.sorted_ids, at, new_ids)
        self.sorted_pos = np.insert(self.sorted_pos, at, new_pos)
