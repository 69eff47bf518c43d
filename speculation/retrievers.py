"""Concrete retrievers: dense inner product on faiss (flat or HNSW) and BM25 on scipy sparse.

Both keep ``search`` and ``rank_within`` on one scoring function, so that a speculation ranked
over a request's cache agrees with the real retrieval whenever the true top-1 is in the cache.
Both are also batch-invariant: a query's hits do not depend on the other queries of its batch,
which is what lets one batched verification stand in for many single-query baseline calls.

``make_retriever(kind, texts, ...)`` builds one by name from a registry ("flat", "hnsw", "bm25").
"""

from __future__ import annotations

import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import sparse

from .base import Hit, Retriever, exact_top_hits, exact_top_hits_grouped, top_hits

Encoder = Callable[[list[str]], np.ndarray]


def _flat_index(d: int, hnsw_m: int, ef_search: int) -> Any:
    import faiss

    return faiss.IndexFlatIP(d)


def _hnsw_index(d: int, hnsw_m: int, ef_search: int) -> Any:
    import faiss

    index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = ef_search
    return index


_INDEXES: dict[str, Callable[[int, int, int], Any]] = {"flat": _flat_index, "hnsw": _hnsw_index}


class DenseRetriever:
    """Inner-product search over ``vectors`` (one normalised float32 row per document).

    faiss (or, for batches, a matrix product) proposes candidates; their scores are then
    recomputed exactly (float64, one fixed summation order per row), and ``rank_within`` uses the
    same exact scores. float32 scores differ in the last bits between single-query and batched
    code paths, which could otherwise flip a near-tie between the baseline and a verification.

    For HNSW the ground truth is what HNSW itself returns: the best exactly rescored candidate of
    its beam, which is ``max(k, ef_search)`` wide. faiss's beam search visits the same nodes for
    every ``k <= ef_search``, so up to there the top-1 does not depend on ``k``
    (``top1_stable_k``; ``SpeculativeRetriever`` refuses a larger ``prefetch``). A cached
    document that HNSW misses can outrank HNSW's answer inside ``rank_within``; that costs a
    rollback, never a wrong output.

    Queries are encoded one at a time unless ``encode_batched``: a neural encoder's embedding of
    a padded batch can differ in the last bits from its single-query embedding. Encoded queries
    are kept in a small cache (``query_cache`` entries), so a verified query is not re-encoded.
    ``threads`` sets faiss's OpenMP threads for searching, after the index is built and in every
    thread that calls ``search`` (OpenMP keeps the setting per thread, and a fresh worker thread would use all
    cores).

    A flat batch of at least ``blas_batch`` queries is scored with one matrix product (numpy's
    BLAS, in blocks of ``block_rows`` documents) instead of faiss: faiss's flat scan costs the
    same per query for the few queries of a verification, while the matrix product makes a
    batch of 8 cost about as much as 2 single queries. Candidates are the top
    ``k + rescore_pad`` by (score, then smaller id) and are rescored exactly, so the hits equal
    the single-query path's. numpy's BLAS has its own thread pool (``OPENBLAS_NUM_THREADS``).
    ``blas_batch=None`` always uses faiss. ``index`` is a faiss index of the ``kind`` asked for
    already holding ``vectors`` in order (one read back with ``faiss.read_index``), which saves
    rebuilding an HNSW graph (minutes at 1M vectors).

    ``screen="bf16"`` (flat only) screens in bfloat16 instead, still exactly: a matrix product
    over a bf16 copy of the vectors (AMX or AVX-512 BF16 where the CPU has them; a batch of 16
    costs what one query does, and half the memory traffic of float32), then an exact rescoring
    of every document the error bound cannot rule out. Rounding both factors to bf16 (unit
    roundoff ``u = 2^-8``), summing in float32 and rounding the result to bf16 moves a score by at
    most ``eps = (3u + 2u^2 + d 2^-23) |q| max|v|`` (Cauchy-Schwarz bounds the sum of ``|q_i v_i|``
    by ``|q| |v|``). If ``A`` is the k-th best screened score, every true top-k document scores
    at least ``A - eps`` exactly, hence at least ``A - 2 eps`` screened: keeping the documents
    screened at ``A - 2 eps`` or more keeps the true top k, ties included. Construction checks
    the bound against float64 on a sample and refuses the screen on a machine where it fails.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        encode: Encoder,
        kind: str = "flat",
        hnsw_m: int = 32,
        ef_search: int = 64,
        *,
        texts: Sequence[str],
        threads: int | None = None,
        rescore_pad: int = 16,
        encode_batched: bool = False,
        query_cache: int = 1024,
        blas_batch: int | None = 2,
        block_rows: int = 65536,
        screen: str | None = None,
        index: Any = None,
    ) -> None:
        if kind not in _INDEXES:
            raise ValueError(f"dense kind must be one of {sorted(_INDEXES)}, got {kind!r}")
        if screen not in (None, "bf16") or (screen is not None and kind != "flat"):
            raise ValueError(f"screen must be None or 'bf16' (flat only), got {screen!r} for {kind!r}")
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        if vecs.ndim != 2:
            raise ValueError(f"vectors must be 2-D (n, d), got shape {vecs.shape}")
        if len(texts) != len(vecs):
            raise ValueError(f"{len(texts)} texts for {len(vecs)} vectors")
        import faiss

        self._faiss = faiss
        self._threads = threads
        self.name = f"dense-{kind}"
        self.kind = kind
        self._vectors = vecs
        self._texts = list(texts)
        self._encode_fn = encode
        self._encode_batched = encode_batched
        # Flat: a margin of candidates for the exact rescoring. HNSW: the whole beam, always.
        self._pad = 0 if kind == "hnsw" else max(0, rescore_pad)
        self._floor = ef_search if kind == "hnsw" else 0
        self.top1_stable_k: int | None = ef_search if kind == "hnsw" else None
        self._blas_batch = blas_batch if kind == "flat" else None
        self._block_rows = max(1, block_rows)
        self._screen = _Bf16Screen(vecs) if screen == "bf16" and len(vecs) else None
        if self._screen is not None:
            self.name = "dense-flat-bf16"
        if index is not None:  # built earlier over these vectors (faiss.read_index)
            if index.ntotal != len(vecs) or index.d != vecs.shape[1]:
                raise ValueError(
                    f"the index holds {index.ntotal} vectors of dimension {index.d}, "
                    f"not {len(vecs)} of {vecs.shape[1]}"
                )
            if kind == "hnsw":
                index.hnsw.efSearch = ef_search
            self._index = index
        else:
            self._index = _INDEXES[kind](vecs.shape[1], hnsw_m, ef_search)
            if len(vecs):
                self._index.add(vecs)  # with every core: an HNSW graph over 1M vectors is minutes of work
        if threads is not None:
            faiss.omp_set_num_threads(threads)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = query_cache
        self._lock = threading.Lock()  # the query cache is shared with a verification thread

    def __len__(self) -> int:
        return len(self._vectors)

    def forget_queries(self) -> None:
        """Empty the cache of encoded queries (a benchmark's runs must each pay their encoding)."""
        with self._lock:
            self._cache.clear()

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        n = len(self._vectors)
        if not queries:
            return []
        if n == 0 or k <= 0:
            return [[] for _ in queries]
        q = self._encode(queries)
        if self._screen is not None:
            rows, owners = self._screen.candidates(q, min(k, n))
            return exact_top_hits_grouped(q, rows, owners, self._vectors, k)
        fetch = min(n, max(k + self._pad, self._floor))
        if self._blas_batch is not None and len(queries) >= self._blas_batch:
            found = self._blas_candidates(q, fetch)
        else:
            if self._threads is not None:
                # OpenMP's thread count is per calling thread: a verification worker starts at all cores.
                self._faiss.omp_set_num_threads(self._threads)
            _, found = self._index.search(q, fetch)
        out = []
        for vec, row in zip(q, found, strict=True):
            cand = row[row >= 0].astype(np.int64)
            out.append(self._top(vec, cand, k))
        return out

    def rank_within(
        self, queries: Sequence[str], ids: Sequence[int], k: int | None = None
    ) -> list[list[Hit]]:
        cand = _checked_ids(ids, len(self._vectors))
        if not queries:
            return []
        q = self._encode(queries)
        return [self._top(vec, cand, k) for vec in q]

    def text(self, doc_id: int) -> str:
        return self._texts[_checked_id(doc_id, len(self._texts))]

    def _blas_candidates(self, q: np.ndarray, fetch: int) -> np.ndarray:
        """Per query, the ``fetch`` best ids by float32 inner product, ties to the smaller id."""
        ids = np.empty((len(q), 0), dtype=np.int64)
        scores = np.empty((len(q), 0), dtype=np.float32)
        for start in range(0, len(self._vectors), self._block_rows):
            block = self._vectors[start : start + self._block_rows]
            ids = np.concatenate(
                [ids, np.broadcast_to(np.arange(start, start + len(block)), (len(q), len(block)))], 1
            )
            scores = np.concatenate([scores, (block @ q.T).T], 1)  # this orientation packs less
            if ids.shape[1] > fetch:
                keep = [_best(row_ids, row, fetch) for row_ids, row in zip(ids, scores, strict=True)]
                ids = np.stack([row_ids[i] for row_ids, i in zip(ids, keep, strict=True)])
                scores = np.stack([row[i] for row, i in zip(scores, keep, strict=True)])
        return ids

    def _top(self, query: np.ndarray, ids: np.ndarray, k: int | None) -> list[Hit]:
        # Exact scores (float64 sums per row): the same bits whatever the batch.
        return exact_top_hits(query, ids, self._vectors[ids], k)

    def _encode(self, queries: Sequence[str]) -> np.ndarray:
        d = self._vectors.shape[1]
        out = np.empty((len(queries), d), dtype=np.float32)
        missing: list[int] = []
        with self._lock:
            for i, query in enumerate(queries):
                vec = self._cache.get(query)
                if vec is None:
                    missing.append(i)
                else:
                    self._cache.move_to_end(query)
                    out[i] = vec
        if not missing:
            return out
        texts = [queries[i] for i in missing]
        parts = [self._encode_fn(texts)] if self._encode_batched else [self._encode_fn([t]) for t in texts]
        fresh = np.concatenate([np.asarray(p, dtype=np.float32).reshape(-1, d) for p in parts])
        if len(fresh) != len(texts):
            raise ValueError(f"the encoder returned {len(fresh)} vectors for {len(texts)} queries")
        with self._lock:
            for i, text, vec in zip(missing, texts, fresh, strict=True):
                out[i] = vec
                self._cache[text] = vec
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return out


_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lowercase alphanumeric runs: the only tokenizer BM25 needs here."""
    return _TOKEN.findall(text.lower())


class BM25Retriever:
    """Okapi BM25 over ``texts`` (idf ``ln(1 + (N - df + .5) / (df + .5))``, always positive).

    Document weights are precomputed into one sparse matrix ``W`` (documents x terms), and a
    batch of queries is a term-count matrix ``Q``, so scores are ``W @ Q``. ``rank_within``
    multiplies the candidates' rows of ``W``; ``search`` multiplies, a query at a time, only
    the columns of its terms (``W`` kept a second time by columns: an inverted index), so it
    costs the postings of its terms rather than a pass over every document's terms (15 ms
    against 75 ms at 1M passages). Either way each score is a sum over the document's terms in
    increasing term id, so the two agree to the bit.
    """

    def __init__(self, texts: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.name = "bm25"
        self._texts = list(texts)
        self._vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        counts: list[float] = []
        for doc, text in enumerate(self._texts):
            for term, count in Counter(tokenize(text)).items():
                rows.append(doc)
                cols.append(self._vocab.setdefault(term, len(self._vocab)))
                counts.append(count)
        n, v = len(self._texts), len(self._vocab)
        tf = sparse.csr_matrix((counts, (rows, cols)), shape=(n, v), dtype=np.float64)
        lengths = np.asarray(tf.sum(axis=1)).ravel()
        avg = float(lengths.mean()) if n and lengths.mean() > 0 else 1.0
        df = np.bincount(np.asarray(cols, dtype=np.int64), minlength=v).astype(np.float64)
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
        norm = k1 * (1.0 - b + b * lengths / avg)
        coo = tf.tocoo()
        weights = idf[coo.col] * coo.data * (k1 + 1.0) / (coo.data + norm[coo.row])
        self._w = sparse.csr_matrix((weights, (coo.row, coo.col)), shape=(n, v))
        self._w.sort_indices()
        self._postings = self._w.tocsc()
        self._postings.sort_indices()

    def __len__(self) -> int:
        return len(self._texts)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        if not queries:
            return []
        n = len(self._texts)
        if n == 0 or k <= 0:
            return [[] for _ in queries]
        out = []
        # One query at a time: a batch's terms together touch almost every document, and its
        # dense (documents x queries) product cost more than the queries one by one.
        for query in queries:
            terms, counts = self._query_terms([query])
            # A CSC product with a dense vector adds column by column: in term order.
            scores = np.asarray(self._postings[:, terms] @ counts[:, 0], dtype=np.float64)
            out.append(self._top(scores, min(k, n)))
        return out

    @staticmethod
    def _top(scores: np.ndarray, k: int) -> list[Hit]:
        """``top_hits`` over all documents, selecting among the matching ones first: weights are
        positive, so a document scores exactly 0 when it holds none of the query's terms, and
        most do (a selection over the whole corpus would cost 30 ms at 1M documents)."""
        matching = np.flatnonzero(scores > 0.0)
        if len(matching) >= k:
            return top_hits(matching, scores[matching], k)
        need = k - len(matching)
        # The smallest ids among the zeros, as ``top_hits`` breaks ties: within the first
        # ``k`` documents at least ``need`` are zeros.
        zeros = np.flatnonzero(scores[:k] == 0.0)[:need]
        return top_hits(matching, scores[matching], len(matching)) + [Hit(int(i), 0.0) for i in zeros]

    def rank_within(
        self, queries: Sequence[str], ids: Sequence[int], k: int | None = None
    ) -> list[list[Hit]]:
        cand = _checked_ids(ids, len(self._texts))
        if not queries:
            return []
        scores = self._scores(self._w[cand], queries)
        want = len(cand) if k is None else k
        return [top_hits(cand, scores[:, j], want) for j in range(len(queries))]

    def text(self, doc_id: int) -> str:
        return self._texts[_checked_id(doc_id, len(self._texts))]

    def _scores(self, w: sparse.csr_matrix, queries: Sequence[str]) -> np.ndarray:
        """Scores (rows of ``w``, queries): each row's terms summed in increasing term id, a
        term no query holds adding an exact 0.0 (the same bits as ``search``)."""
        terms, counts = self._query_terms(queries)
        # A dense (vocabulary, queries) count matrix: a sparse one costs a pass over the whole
        # vocabulary to build (5 ms), more than ranking a request's cache.
        q = np.zeros((len(self._vocab), len(queries)), dtype=np.float64)
        q[terms] = counts
        return np.asarray(w @ q, dtype=np.float64)

    def _query_terms(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The batch's known term ids, increasing, and their counts per query (terms, queries)."""
        per_query = [Counter(tokenize(q)) for q in queries]
        terms = sorted({self._vocab[t] for c in per_query for t in c if t in self._vocab})
        row = {t: i for i, t in enumerate(terms)}
        counts = np.zeros((len(terms), len(queries)), dtype=np.float64)
        for j, c in enumerate(per_query):
            for term, count in c.items():
                col = self._vocab.get(term)
                if col is not None:
                    counts[row[col], j] = count
        return np.asarray(terms, dtype=np.int64), counts


class _Bf16Screen:
    """A bf16 copy of the document vectors and the certified candidate cut (see DenseRetriever)."""

    U = 2.0**-8  # bf16 unit roundoff: 8 significant bits
    SLABS = 32  # rows per slab position in ``candidates``: the bound's cost against its slack

    def __init__(self, vectors: np.ndarray) -> None:
        import torch

        self._torch = torch
        self.vectors = torch.from_numpy(vectors).to(torch.bfloat16)
        d = vectors.shape[1]
        self.slack = (3 * self.U + 2 * self.U**2 + d * 2.0**-23) * float(
            np.linalg.norm(vectors, axis=1).max()
        )
        self._check(vectors)

    def eps(self, query: np.ndarray) -> float:
        return self.slack * float(np.linalg.norm(query))

    def scores(self, q: np.ndarray) -> Any:
        """Screened scores, documents by queries (a bf16 tensor)."""
        return _bf16_product(self.vectors, q)

    def candidates(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows the bound cannot rule out of each query's exact top ``k``, as pairs: the
        rows, and for each the index of its query.

        The cut needs a lower bound on each query's k-th best screened score. A top-k over all
        n rows costs about 10 ms a query at 1M rows (a strided column scan, then a full-size
        comparison); instead the rows are dealt into ``SLABS`` interleaved slabs (row ``r``
        goes to position ``r mod p`` of slab ``r div p``), their element-wise maximum is one
        streaming pass, and the k-th best of those ``p`` maxima is the bound: k distinct
        positions each hold a row screened at least that high. Only the rows of positions
        whose maximum reaches the cut are then compared: about 1 ms a query, in a few calls
        for the whole batch.
        """
        torch = self._torch
        scores = self.scores(q)
        n = scores.shape[0]
        p = n // self.SLABS
        # 1e-6 more: the float32 subtraction may round the cut up by an ulp.
        margin = torch.tensor([2 * self.eps(vec) + 1e-6 for vec in q], dtype=torch.float32)
        if k > p:  # too few rows for the slabs: the plain top-k over everything
            cut = torch.topk(scores, k, dim=0).values[-1].float() - margin  # bf16: exact in float32
            found = torch.nonzero(scores.float() >= cut[None, :])
            return found[:, 0].numpy(), found[:, 1].numpy()
        slabs = scores[: p * self.SLABS].view(self.SLABS, p, -1).amax(dim=0)  # (p, queries)
        cut = torch.topk(slabs, k, dim=0).values[-1].float() - margin
        reached = torch.nonzero(slabs.float() >= cut[None, :])  # (position, query) pairs
        rows = (torch.arange(self.SLABS)[:, None] * p + reached[:, 0][None, :]).flatten()
        owners = reached[:, 1].repeat(self.SLABS)
        tail = torch.arange(p * self.SLABS, n)  # rows beyond the last full slab: every query's
        rows = torch.cat([rows, tail.repeat(len(q))])
        owners = torch.cat([owners, torch.arange(len(q)).repeat_interleave(len(tail))])
        keep = scores[rows, owners].float() >= cut[owners]
        return rows[keep].numpy(), owners[keep].numpy()

    def _check(self, vectors: np.ndarray) -> None:
        """The bound holds on a sample, or this machine's bf16 product is not the one assumed."""
        rng = np.random.default_rng(0)
        rows = vectors[rng.choice(len(vectors), size=min(len(vectors), 4096), replace=False)]
        q = rng.standard_normal((4, vectors.shape[1])).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        got = _bf16_product(self._torch.from_numpy(rows).to(self._torch.bfloat16), q)
        got = got.float().numpy().astype(np.float64)
        exact = rows.astype(np.float64) @ q.astype(np.float64).T
        if np.abs(got - exact).max() > self.slack:
            raise ValueError("bf16 screening misses its error bound on this machine; use screen=None")


def _bf16_product(vectors: Any, q: np.ndarray) -> Any:
    """``vectors @ q.T`` in bf16 (``vectors`` a bf16 tensor; documents by queries)."""
    import torch

    qb = torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32)).to(torch.bfloat16)
    if len(qb) == 1:  # one column would take a slower matrix-vector path
        return (vectors @ torch.cat([qb, qb]).T)[:, :1]
    return vectors @ qb.T


def _best(ids: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best by (score, then smaller id): a deterministic cut through ties."""
    kth = np.partition(scores, len(scores) - k)[len(scores) - k]
    above = np.flatnonzero(scores > kth)
    tied = np.flatnonzero(scores == kth)
    tied = tied[np.argsort(ids[tied], kind="stable")][: k - len(above)]
    return np.concatenate([above, tied])


def _checked_ids(ids: Sequence[int], n: int) -> np.ndarray:
    cand = np.unique(np.asarray(ids, dtype=np.int64))
    if len(cand) and (cand[0] < 0 or cand[-1] >= n):
        raise IndexError(f"document ids must lie in [0, {n}), got {cand[0]}..{cand[-1]}")
    return cand


def _checked_id(doc_id: int, n: int) -> int:
    if not 0 <= doc_id < n:
        raise IndexError(f"document id {doc_id} is not in [0, {n})")
    return int(doc_id)


def _dense(kind: str) -> Callable[..., Retriever]:
    def build(
        texts: Sequence[str], *, encode: Encoder, vectors: np.ndarray | None = None, **options: Any
    ) -> Retriever:
        vecs = encode(list(texts)) if vectors is None else vectors
        return DenseRetriever(vecs, encode, kind, texts=texts, **options)

    return build


def _bm25(texts: Sequence[str], **options: Any) -> Retriever:
    return BM25Retriever(texts, **options)


def _flat_bf16(texts: Sequence[str], **options: Any) -> Retriever:
    return _dense("flat")(texts, screen="bf16", **options)


_REGISTRY: dict[str, Callable[..., Retriever]] = {
    "flat": _dense("flat"),
    "flat-bf16": _flat_bf16,
    "hnsw": _dense("hnsw"),
    "bm25": _bm25,
}


def retriever_kinds() -> tuple[str, ...]:
    """The names ``make_retriever`` accepts."""
    return tuple(_REGISTRY)


def make_retriever(kind: str, texts: Sequence[str], **options: Any) -> Retriever:
    """A retriever over ``texts`` by name.

    "flat", "flat-bf16" (exact, screened in bf16) and "hnsw" need ``encode=`` (a batch of strings to normalised float32 rows) and take
    ``vectors=`` (precomputed document rows) and ``DenseRetriever``'s other options; "bm25"
    takes ``k1`` and ``b``.
    """
    try:
        build = _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown retriever {kind!r}; known: {', '.join(_REGISTRY)}") from None
    return build(texts, **options)
