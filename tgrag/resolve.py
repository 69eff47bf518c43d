"""Entity resolution: map surface names to store entities, creating new ones when nothing matches.

In order: an exact match on a normalised name key (case, punctuation, accents, possessives and
corporate suffixes removed: "Crocs, Inc." = "crocs" = "Croc's"); then an existing alias; then
embedding similarity above a threshold, among entities of a compatible type that share a word.
Deterministic: new names are resolved in sorted order, so the same input gives the same ids.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .model import EntityMention, EntityType
from .text import name_key
from .workspace import Workspace

# When mentions of one name disagree on its type, the more specific type wins.
_TYPE_PRIORITY = [
    EntityType.PERSON,
    EntityType.ORGANIZATION,
    EntityType.PLACE,
    EntityType.PRODUCT,
    EntityType.OTHER,
]


class EntityResolver:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.created = 0

    def resolve(
        self, mentions: Iterable[EntityMention], aliases: dict[str, tuple[str, ...]] | None = None
    ) -> dict[str, int]:
        """Surface text -> entity id for every mention (inside the caller's transaction)."""
        aliases = aliases or {}
        types: dict[str, EntityType] = {}
        names: dict[str, str] = {}
        surface: dict[str, str] = {}
        for m in mentions:
            key = name_key(m.text)
            if not key:
                continue
            surface[m.text] = key
            names.setdefault(key, m.text)
            old = types.get(key)
            if old is None or _TYPE_PRIORITY.index(m.type) < _TYPE_PRIORITY.index(old):
                types[key] = m.type
        idx = self.ws.indexes
        ids: dict[str, int] = {k: idx.alias_keys[k] for k in names if k in idx.alias_keys}
        new_keys = sorted(k for k in names if k not in ids)
        if new_keys:
            vectors = self.ws.embedder.embed([names[k] for k in new_keys])
            # Candidates in two batched steps (one search per name was the cost that grew with the
            # store): similar existing entities, and similar names earlier in this batch.
            existing = self._existing_candidates(vectors)
            earlier = _earlier_above(vectors, self.ws.config.ingest.entity_similarity)
            created_rows: dict[int, int] = {}  # row of a name that became a new entity -> its id
            for row, (key, vec) in enumerate(zip(new_keys, vectors, strict=True)):
                if key in idx.alias_keys:  # created a moment ago under another spelling in this batch
                    ids[key] = idx.alias_keys[key]
                    continue
                candidates = existing[row] + [
                    (s, created_rows[j]) for s, j in earlier[row] if j in created_rows
                ]
                match = self._compatible(key, types[key], sorted(candidates, key=lambda c: (-c[0], c[1])))
                if match is not None:
                    ids[key] = match
                    self.ws.store.add_aliases(match, [names[key]])
                    idx.add_aliases(match, [names[key]])
                    continue
                extra = aliases.get(names[key], ())
                eid = self.ws.store.add_entity(names[key], types[key], extra)
                self.ws.store.put_vectors("entity", [eid], vec[None, :], [names[key]])
                idx.add_entity(eid, names[key], types[key], tuple(extra))
                idx.vectors["entity"].add(np.array([eid], dtype=np.int64), vec[None, :])
                ids[key] = eid
                created_rows[row] = eid
                self.created += 1
        for name, extra in aliases.items():  # aliases of names that already existed
            key = name_key(name)
            if key in ids and extra:
                self.ws.store.add_aliases(ids[key], list(extra))
                idx.add_aliases(ids[key], list(extra))
        return {text: ids[key] for text, key in surface.items() if key in ids}

    def _existing_candidates(self, vectors: np.ndarray) -> list[list[tuple[float, int]]]:
        """For each vector, the stored entities at least as similar as the threshold (top 5)."""
        index = self.ws.indexes.vectors["entity"]
        if len(index) == 0:
            return [[] for _ in range(len(vectors))]
        threshold = self.ws.config.ingest.entity_similarity
        scores, found = index.search(vectors, 5)
        return [
            [(float(s), int(e)) for s, e in zip(row_s, row_e, strict=True) if e >= 0 and s >= threshold]
            for row_s, row_e in zip(scores, found, strict=True)
        ]

    def _compatible(self, key: str, type: EntityType, candidates: list[tuple[float, int]]) -> int | None:
        """The most similar candidate of a compatible type that shares a word with the name."""
        idx = self.ws.indexes
        words = set(key.split())
        for _, eid in candidates:
            other = idx.entity_types.get(eid)
            compatible = other is not None and (other == type or EntityType.OTHER in (other, type))
            if compatible and words & set(name_key(idx.entity_names[eid]).split()):
                return eid
        return None


def _earlier_above(vectors: np.ndarray, threshold: float, block: int = 1024) -> list[list[tuple[float, int]]]:
    """For each row, the earlier rows at least ``threshold`` similar (blocked, to bound memory)."""
    out: list[list[tuple[float, int]]] = [[] for _ in range(len(vectors))]
    for lo in range(0, len(vectors), block):
        hi = min(len(vectors), lo + block)
        sims = vectors[lo:hi] @ vectors[:hi].T
        for r in range(hi - lo):
            i = lo + r
            above = np.flatnonzero(sims[r, :i] >= threshold)
            out[i] = [(float(sims[r, j]), int(j)) for j in above]
    return out
