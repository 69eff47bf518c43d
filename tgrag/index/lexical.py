"""BM25 over fact texts, incremental: appending rows never rebuilds what is already indexed."""

from __future__ import annotations

import json
import math
from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..fsutil import atomic_write
from ..text import words


class BM25Index:
    """Rows are positions shared with the fact catalog; removed rows are masked, not rewritten."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._postings: dict[str, tuple[array, array]] = {}  # term -> (rows, term frequencies)
        self._lengths = array("f")
        self._alive = array("b")
        self._total_length = 0.0
        self._alive_count = 0

    def __len__(self) -> int:
        return len(self._lengths)

    def add(self, texts: Sequence[str]) -> None:
        """Append one row per text, in catalog order."""
        for text in texts:
            row = len(self._lengths)
            terms = words(text)
            self._lengths.append(len(terms))
            self._alive.append(1)
            self._total_length += len(terms)
            self._alive_count += 1
            for term, tf in Counter(terms).items():
                posting = self._postings.get(term)
                if posting is None:
                    posting = self._postings[term] = (array("q"), array("f"))
                posting[0].append(row)
                posting[1].append(tf)

    def remove(self, rows: Sequence[int]) -> None:
        for row in rows:
            if self._alive[row]:
                self._alive[row] = 0
                self._total_length -= self._lengths[row]
                self._alive_count -= 1

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for ``query`` (zeros where no term matches)."""
        out = np.zeros(len(self._lengths), dtype=np.float32)
        if self._alive_count == 0:
            return out
        lengths = np.frombuffer(self._lengths, dtype=np.float32)
        alive = np.frombuffer(self._alive, dtype=np.int8)
        avg = self._total_length / self._alive_count or 1.0
        for term in set(words(query)):
            posting = self._postings.get(term)
            if posting is None:
                continue
            rows = np.frombuffer(posting[0], dtype=np.int64)
            tf = np.frombuffer(posting[1], dtype=np.float32)
            # Removed rows stay in the postings but must not count as documents holding the term.
            df = int(alive[rows].sum())
            idf = math.log(1.0 + (self._alive_count - df + 0.5) / (df + 0.5))
            norm = tf + self.k1 * (1.0 - self.b + self.b * lengths[rows] / avg)
            out[rows] += idf * tf * (self.k1 + 1.0) / norm
        out *= alive
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        terms = sorted(self._postings)
        offsets = np.zeros(len(terms) + 1, dtype=np.int64)
        for i, t in enumerate(terms):
            offsets[i + 1] = offsets[i] + len(self._postings[t][0])
        empty = not terms
        return {
            "terms": np.frombuffer(json.dumps(terms).encode(), dtype=np.uint8),
            "offsets": offsets,
            "rows": np.zeros(0, np.int64)
            if empty
            else np.concatenate([np.frombuffer(self._postings[t][0], np.int64) for t in terms]),
            "tfs": np.zeros(0, np.float32)
            if empty
            else np.concatenate([np.frombuffer(self._postings[t][1], np.float32) for t in terms]),
            "lengths": np.frombuffer(self._lengths, np.float32),
            "alive": np.frombuffer(self._alive, np.int8),
            "params": np.array([self.k1, self.b]),
        }

    @classmethod
    def from_arrays(cls, data: Mapping[str, np.ndarray]) -> BM25Index:
        k1, b = (float(x) for x in data["params"])
        index = cls(k1, b)
        terms = json.loads(bytes(data["terms"]).decode())
        offsets, rows, tfs = data["offsets"], data["rows"], data["tfs"]
        for i, term in enumerate(terms):
            lo, hi = offsets[i], offsets[i + 1]
            index._postings[term] = (array("q", rows[lo:hi].tobytes()), array("f", tfs[lo:hi].tobytes()))
        index._lengths = array("f", data["lengths"].astype(np.float32).tobytes())
        index._alive = array("b", data["alive"].astype(np.int8).tobytes())
        alive = np.frombuffer(index._alive, dtype=np.int8).astype(bool)
        index._alive_count = int(alive.sum())
        index._total_length = float(np.frombuffer(index._lengths, dtype=np.float32)[alive].sum())
        return index

    def save(self, path: Path) -> None:
        _save_arrays(path, self.to_arrays())

    @classmethod
    def load(cls, path: Path) -> BM25Index:
        with np.load(path) as data:
            return cls.from_arrays(data)


class KeyedBM25:
    """BM25 over items with their own integer ids (chunk numbers), scored by id."""

    def __init__(self) -> None:
        self.index = BM25Index()
        self._row_of: dict[int, int] = {}
        self._keys = array("q")

    def __len__(self) -> int:
        return len(self._row_of)

    def add(self, keys: Sequence[int], texts: Sequence[str]) -> None:
        for key in keys:
            self._row_of[int(key)] = len(self._keys)
            self._keys.append(int(key))
        self.index.add(texts)

    def remove(self, keys: Sequence[int]) -> None:
        self.index.remove([self._row_of.pop(int(k)) for k in keys if int(k) in self._row_of])

    def scores(self, query: str, keys: np.ndarray) -> np.ndarray:
        """Scores of ``keys`` for ``query``, divided by the best score of any item (0 for unknown keys)."""
        scores = self.index.scores(query)
        best = float(scores.max()) if len(scores) else 0.0
        if best <= 0:
            return np.zeros(len(keys))
        rows = np.array([self._row_of.get(int(k), -1) for k in keys], dtype=np.int64)
        return np.where(rows >= 0, scores[np.maximum(rows, 0)] / best, 0.0)

    def save(self, path: Path) -> None:
        _save_arrays(path, {**self.index.to_arrays(), "keys": np.frombuffer(self._keys, np.int64)})

    @classmethod
    def load(cls, path: Path) -> KeyedBM25:
        keyed = cls()
        with np.load(path) as data:
            keyed.index = BM25Index.from_arrays(data)
            keys = data["keys"]
        alive = np.frombuffer(keyed.index._alive, dtype=np.int8)
        if len(keys) != len(alive):
            raise ValueError("keys and rows disagree")
        keyed._keys = array("q", keys.astype(np.int64).tobytes())
        keyed._row_of = {int(k): i for i, k in enumerate(keys) if alive[i]}
        return keyed


def _save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]

    atomic_write(path, write)
