"""Compressed codebook memory bank (issue 7): recall, size and upkeep as embeddings stream in.

    python benchmarks/memory_bank.py [--quick | --tiny] [--data DIR] [--out FILE]
        [--runs combined,...] [--bank KEY=VALUE ...] (experiments: CodebookConfig overrides)

Streams, each in time order, one slice at a time: ECT-QA (the four fiscal quarters of 2024),
TimeQA (its Wikipedia pages in file order, cut into contiguous slices: no time order of their
own), the generated world (publication quarters, grouped into slices), and one *combined* stream
that runs ECT-QA, then TimeQA, then the world: two changes of domain, where a codebook trained
once should degrade. The units are sentences (whole, deduplicated within a stream, at least 25
characters and 4 words), embedded by all-MiniLM-L6-v2 (tgrag's ``minilm`` embedder), cached under
``.cache/memory_bank/`` by a hash of model and texts (one file per slice, written atomically), so
a rerun embeds nothing. Quick: 800 sentences per ECT-QA quarter, 600 per TimeQA and world slice
(world scale "medium"), four slices each. Full: every sentence; TimeQA and world (scale "large")
in eight slices.

Methods, all at 16 bytes a vector (float32 is 1,536 bytes):
- ``ours``: ``memory.CodebookMemory`` (online learning, dead-code reset, re-encode policy; exact
  re-rank of the ADC top 100 from the float vectors it keeps memory-mapped), each slice given to
  one ``add`` call, so it sees what the faiss baselines see; ``ours_stream``: the same bank fed
  in ``add`` calls of ``--batch`` (1,024) vectors, as a store ingesting continuously would. Upkeep
  is the growth of ``stats().upkeep_seconds`` (learning + reset + re-encoding; encoding new
  vectors is not upkeep). The configuration is ``CodebookConfig``'s defaults (its split of the
  16 bytes into sub-quantisers and residual stages, its rotation, decay and re-encode budget),
  recorded in the output as ``ours_config``.
- ``pq_frozen`` / ``opq_frozen``: faiss ``PQ16x8`` / ``OPQ16,PQ16x8`` (inner product) trained on
  the first slice only; later slices are only encoded. Upkeep: the one training.
- ``pq_retrained``: a new faiss ``PQ16x8`` every slice, trained on everything so far and every
  vector re-added. faiss trains each sub-quantiser's k-means (25 iterations) on at most 256
  points per centroid, i.e. a random sample of 65,536 vectors once more have arrived. Upkeep:
  training + encoding everything. (``--opq-retrain`` adds ``opq_retrained``: slow on 2 cores.)
The faiss baselines get the same exact re-rank as ours: their top 100 re-scored from the same
float vectors, so with re-rank the figures compare codebooks, not re-ranking. Recall without
re-rank (ADC alone) is reported too.

Queries: after each slice, held-back sentences (never added): those of the latest slice plus as
many drawn from earlier slices (``held`` per slice are held back); and separately the datasets'
question texts (ECT-QA questions, TimeQA questions, the world's questions), reported as
``questions``. Recall@10 is measured against exact inner-product search over every vector added
so far; a returned id counts as a hit when its exact score reaches the 10th best exact score
(minus 1e-5), so exact ties (near-duplicate sentences) do not count against any method.

Headline (the combined stream): ``recall_at_10``, ``recall_at_10_frozen`` (PQ),
``recall_at_10_retrained`` are means over its slices with re-rank of the top 100;
``upkeep_seconds`` (ours) and ``retrain_seconds`` are sums over its slices;
``after_shift`` holds means over the slices after the first change of domain. ``targets`` says
which of the issue's targets hold. ``--tiny`` runs a small synthetic drifting stream (no model,
no data; for the tests). The last line printed is the JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Idle OpenMP threads sleep instead of spinning: on a small shared machine spinning threads of
# faiss and torch starve each other (and any neighbour) and make the timings erratic.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))  # first: benchmarks/kernels.py must not shadow the kernels package

import numpy as np  # noqa: E402
from report import emit, run_info  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
DIM, M, NBITS, K, RERANK = 384, 16, 8, 10, 100
MIN_CHARS, MIN_WORDS = 25, 4


# -- text streams -------------------------------------------------------------------------
@dataclass
class TextStream:
    name: str
    slices: list[tuple[str, list[str]]]  # (label, sentences), in time order
    questions: list[str] = field(default_factory=list)


def _sentences(docs: list[Any], seen: set[str]) -> list[str]:
    from tgrag.text import split_sentences

    out = []
    for doc in docs:
        for span in split_sentences(doc.text):
            text = " ".join(span.text.split())
            if len(text) >= MIN_CHARS and len(text.split()) >= MIN_WORDS and text not in seen:
                seen.add(text)
                out.append(text)
    return out


def _cap(texts: list[str], cap: int | None, rng: np.random.Generator) -> list[str]:
    """At most ``cap`` of ``texts``, drawn at random, kept in their order."""
    if cap is None or len(texts) <= cap:
        return texts
    return [texts[i] for i in np.sort(rng.choice(len(texts), cap, replace=False))]


def _groups(items: list[Any], parts: int) -> list[list[Any]]:
    bounds = np.linspace(0, len(items), parts + 1).round().astype(int)
    return [items[a:b] for a, b in itertools.pairwise(bounds.tolist()) if b > a]


def ectqa_stream(folder: Path, per_slice: int | None, n_questions: int, seed: int) -> TextStream:
    from eval.datasets import ectqa

    rng = np.random.default_rng(seed)
    docs = ectqa.load_corpus(folder)
    quarters = sorted({d.period.label for d in docs if d.period is not None})
    seen: set[str] = set()
    slices = [
        (q, _cap(_sentences([d for d in docs if d.period and d.period.label == q], seen), per_slice, rng))
        for q in quarters
    ]
    questions = []
    if (folder / "questions.jsonl").exists():
        questions = [item.question for item in ectqa.load_questions(folder / "questions.jsonl")]
    return TextStream("ectqa", slices, _cap(questions, n_questions, rng))


def timeqa_stream(path: Path, parts: int, per_slice: int | None, n_questions: int, seed: int) -> TextStream:
    from eval.datasets import timeqa

    rng = np.random.default_rng(seed + 1)
    pages, items = timeqa.load(path)
    seen: set[str] = set()
    slices = []
    for i, group in enumerate(_groups(pages, parts)):
        slices.append((f"pages {i + 1}/{parts}", _cap(_sentences(group, seen), per_slice, rng)))
    return TextStream("timeqa", slices, _cap([it.question for it in items], n_questions, rng))


def world_stream(scale: str, parts: int, per_slice: int | None, n_questions: int, seed: int) -> TextStream:
    from eval.datasets import world

    rng = np.random.default_rng(seed + 2)
    w = world.generate(scale)
    seen: set[str] = set()
    slices = []
    for group in _groups(list(range(len(w.slices))), parts):
        docs = [w.documents[i] for q in group for i in w.slices[q]]
        label = f"quarters {group[0] + 1}-{group[-1] + 1} of {len(w.slices)}"
        slices.append((label, _cap(_sentences(docs, seen), per_slice, rng)))
    return TextStream(f"world-{scale}", slices, _cap([q.question for q in w.questions], n_questions, rng))


# -- embeddings, cached ---------------------------------------------------------------------
class CachedEmbedder:
    """MiniLM vectors of lists of texts, kept under ``folder`` by a hash of model and texts."""

    def __init__(self, folder: Path) -> None:
        from tgrag.embed import create_embedder

        self.folder = folder
        self.embedder = create_embedder("minilm")
        self.seconds = 0.0  # spent embedding (cache misses)
        self.embedded = 0
        self.cached = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        from tgrag.fsutil import atomic_write

        digest = hashlib.sha256(self.embedder.name.encode())
        for text in texts:
            digest.update(b"\0" + text.encode())
        path = self.folder / f"{digest.hexdigest()[:32]}.npy"
        if path.exists():
            vectors = np.load(path)
            if vectors.shape == (len(texts), self.embedder.dim):
                self.cached += len(texts)
                return vectors
        started = time.perf_counter()
        vectors = self.embedder.embed(texts) if texts else np.zeros((0, self.embedder.dim), np.float32)
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        self.embedded += len(texts)
        print(f"    embedded {len(texts):,} texts in {elapsed:.1f} s", flush=True)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, vectors)

        atomic_write(path, write)
        return vectors


# -- vector streams -----------------------------------------------------------------------------
@dataclass
class VecSlice:
    label: str
    domain: str
    base: np.ndarray  # added to the indexes
    held: np.ndarray  # held back: queries


@dataclass
class VecStream:
    name: str
    slices: list[VecSlice]
    questions: np.ndarray

    @property
    def size(self) -> int:
        return sum(len(s.base) for s in self.slices)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def vectorise(
    stream: TextStream, embed: Callable[[list[str]], np.ndarray], held: int, seed: int
) -> VecStream:
    rng = np.random.default_rng(seed)
    slices = []
    for label, texts in stream.slices:
        vectors = _unit(embed(texts))
        mask = np.zeros(len(vectors), dtype=bool)
        mask[rng.choice(len(vectors), min(held, len(vectors) // 10), replace=False)] = True
        slices.append(VecSlice(label, stream.name, vectors[~mask], vectors[mask]))
    questions = _unit(embed(stream.questions)) if stream.questions else np.zeros((0, DIM), np.float32)
    return VecStream(stream.name, slices, questions)


def combine(streams: list[VecStream]) -> VecStream:
    slices = [VecSlice(f"{s.name} {sl.label}", s.name, sl.base, sl.held) for s in streams for sl in s.slices]
    return VecStream("combined", slices, np.concatenate([s.questions for s in streams]))


def synthetic_stream(dim: int, slices: int, per_slice: int, held: int, seed: int) -> VecStream:
    """Clusters whose centres move to a new region every slice: a drifting stream, no model."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(slices):
        centres = _unit(rng.normal(size=(32, dim)))
        noise = rng.normal(size=(per_slice, dim)) * (1.5 / np.sqrt(dim))
        x = _unit(centres[rng.integers(0, 32, per_slice)] + noise)
        out.append(VecSlice(f"slice {i + 1}", f"regime {i + 1}", x[held:], x[:held]))
    return VecStream("synthetic", out, np.zeros((0, dim), np.float32))


# -- methods --------------------------------------------------------------------------------------
def exact_rerank(queries: np.ndarray, cand: np.ndarray, store: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best of each query's candidate ids by exact inner product (-1: none)."""
    safe = np.where(cand >= 0, cand, 0)
    scores = np.einsum("qd,qrd->qr", queries, store[safe])
    scores[cand < 0] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(cand, order, axis=1)


BANK_OPTIONS: dict[str, Any] = {}  # --bank KEY=VALUE overrides (experiments; the default is none)


def ours_config(dim: int, seed: int, threads: int = 1) -> Any:
    """The bank's own defaults (its layout of the 16 code bytes included), inner product, re-rank
    100, on ``threads`` threads (faiss gets as many)."""
    from memory import CodebookConfig

    options = {"metric": "ip", "rerank": RERANK, "seed": seed, "threads": threads, **BANK_OPTIONS}
    config = CodebookConfig(dim=dim, **options)
    if config.code_bytes_per_vector > M * NBITS / 8 and not BANK_OPTIONS:
        raise ValueError(
            f"the bank's default code is {config.code_bytes_per_vector} bytes, over the 16 compared"
        )
    return config


def bank_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--bank takes KEY=VALUE, not {text!r}")
    for parse in (int, float):
        try:
            return key, parse(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False}.get(value.lower(), value)


class Ours:
    """The bank; ``batch``: vectors per ``add`` call (0: the whole slice in one call)."""

    def __init__(self, name: str, dim: int, folder: Path, batch: int, seed: int, threads: int = 1) -> None:
        from memory import CodebookMemory

        self.config = ours_config(dim, seed, threads)
        self.bank = CodebookMemory(self.config, path=folder)
        self.batch = batch
        self.name = name

    def add_slice(self, lo: int, store: np.ndarray) -> dict[str, float]:
        x = store[lo:]
        before = self.bank.stats().upkeep_seconds
        started = time.perf_counter()
        step = self.batch or len(x)
        for a in range(0, len(x), step):
            b = min(a + step, len(x))
            self.bank.add(np.arange(lo + a, lo + b, dtype=np.int64), x[a:b])
        wall = time.perf_counter() - started
        upkeep = self.bank.stats().upkeep_seconds - before
        return {"upkeep_seconds": upkeep, "add_seconds": wall, "encode_seconds": wall - upkeep}

    def search(self, queries: np.ndarray, store: np.ndarray, rerank: int) -> np.ndarray:
        return self.bank.search(queries, K, rerank=rerank)[1]

    def bytes_per_vector_ratio(self) -> float:
        return float(self.bank.stats().bytes_per_vector_ratio)

    def extra(self) -> dict[str, Any]:
        s = self.bank.stats()
        return {
            "dead_codes": s.dead_codes,
            "reset_codes_total": s.reset_codes_total,
            "reencoded_total": s.reencoded_total,
        }


@contextlib.contextmanager
def quiet_stderr() -> Any:
    """Silence the process's stderr (file descriptor 2, where faiss's C++ warnings go)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class Faiss:
    """A faiss index from ``factory``; ``retrain``: a new one on everything so far every slice."""

    def __init__(self, name: str, factory: str, dim: int, retrain: bool) -> None:
        self.name, self.factory, self.dim, self.retrain = name, factory, dim, retrain
        self.index: Any = None

    def _new(self) -> Any:
        import faiss

        index = faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)
        # The factory turns on polysemous training (code reordering for Hamming filtering, which
        # these searches never use): minutes of simulated annealing per training, so it is off.
        pq = faiss.downcast_index(index.index if isinstance(index, faiss.IndexPreTransform) else index)
        pq.do_polysemous_training = False
        return index

    def add_slice(self, lo: int, store: np.ndarray) -> dict[str, float]:
        train_s = 0.0
        if self.retrain or self.index is None:
            self.index = self._new()
            data = store if self.retrain else store[lo:]
            started = time.perf_counter()
            with quiet_stderr():  # faiss warns (C++, to stderr) for every small k-means
                self.index.train(data)
            train_s = time.perf_counter() - started
        new = store if self.retrain else store[lo:]
        started = time.perf_counter()
        self.index.add(new)
        add_s = time.perf_counter() - started
        upkeep = train_s + (add_s if self.retrain else 0.0)
        return {"upkeep_seconds": upkeep, "train_seconds": train_s, "add_seconds": add_s}

    def search(self, queries: np.ndarray, store: np.ndarray, rerank: int) -> np.ndarray:
        _, ids = self.index.search(queries, max(K, rerank))
        return exact_rerank(queries, ids, store, K) if rerank else ids[:, :K]

    def bytes_per_vector_ratio(self) -> float:
        return float(self.index.sa_code_size()) / (4.0 * self.dim)

    def extra(self) -> dict[str, Any]:
        return {}


# -- measurement ------------------------------------------------------------------------------
def exact_kth(queries: np.ndarray, store: np.ndarray, k: int) -> np.ndarray:
    """The k-th best exact inner product of each query over ``store``."""
    best = np.full((len(queries), k), -np.inf, dtype=np.float32)
    for lo in range(0, len(store), 65536):
        s = queries @ store[lo : lo + 65536].T
        both = np.concatenate([best, s], axis=1)
        best = -np.partition(-both, k - 1, axis=1)[:, :k]
    return best.min(axis=1)


def recall(queries: np.ndarray, ids: np.ndarray, store: np.ndarray, kth: np.ndarray) -> float:
    safe = np.where(ids >= 0, ids, 0)
    scores = np.einsum("qd,qkd->qk", queries, store[safe])
    hits = (scores >= kth[:, None] - 1e-5) & (ids >= 0)
    return float(hits.sum(axis=1).mean() / K)


def query_set(stream: VecStream, t: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Held-back vectors of slice ``t`` (at most cap/2) plus as many drawn from slices before it."""
    latest = stream.slices[t].held
    latest = latest[rng.choice(len(latest), min(len(latest), cap // 2), replace=False)]
    if t == 0:
        return latest
    earlier = np.concatenate([s.held for s in stream.slices[:t]])
    pick = rng.choice(len(earlier), min(len(earlier), len(latest)), replace=False)
    return np.concatenate([latest, earlier[pick]])


def run_stream(
    stream: VecStream, make_methods: Callable[[Path, bool], list[Any]], cap: int, seed: int, opq: bool
) -> dict[str, Any]:
    n_total = stream.size
    dim = stream.slices[0].base.shape[1]
    store = np.empty((n_total, dim), dtype=np.float32)
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    print(f"  stream {stream.name}: {len(stream.slices)} slices, {n_total:,} vectors", flush=True)
    with tempfile.TemporaryDirectory(prefix="memory-bank-") as tmp:
        methods = make_methods(Path(tmp), opq)
        n = 0
        for t, sl in enumerate(stream.slices):
            lo, n = n, n + len(sl.base)
            store[lo:n] = sl.base
            so_far = store[:n]
            row: dict[str, Any] = {"slice": sl.label, "domain": sl.domain, "n": n, "added": len(sl.base)}
            for key in ("recall_at_10", "recall_at_10_no_rerank", "recall_at_10_questions"):
                row[key] = {}
            row["upkeep_seconds"], row["add_seconds"], row["search_ms_per_query"] = {}, {}, {}
            queries = query_set(stream, t, cap, rng)
            sets = [("recall_at_10", queries), ("recall_at_10_questions", stream.questions)]
            kth = {name: exact_kth(q, so_far, K) for name, q in sets if len(q)}
            row["queries"] = len(queries)
            for method in methods:
                timing = method.add_slice(lo, so_far)
                row["upkeep_seconds"][method.name] = round(timing["upkeep_seconds"], 4)
                row["add_seconds"][method.name] = round(timing["add_seconds"], 4)
                started = time.perf_counter()
                ids = method.search(queries, so_far, RERANK)
                row["search_ms_per_query"][method.name] = round(
                    1000 * (time.perf_counter() - started) / max(len(queries), 1), 3
                )
                row["recall_at_10"][method.name] = round(recall(queries, ids, so_far, kth["recall_at_10"]), 4)
                ids = method.search(queries, so_far, 0)
                row["recall_at_10_no_rerank"][method.name] = round(
                    recall(queries, ids, so_far, kth["recall_at_10"]), 4
                )
                if "recall_at_10_questions" in kth:
                    q = stream.questions
                    ids = method.search(q, so_far, RERANK)
                    row["recall_at_10_questions"][method.name] = round(
                        recall(q, ids, so_far, kth["recall_at_10_questions"]), 4
                    )
                for key, value in method.extra().items():
                    row.setdefault(method.name, {})[key] = value
            rows.append(row)
            print(
                f"    {sl.label:28s} n={n:7,d}  R@10 "
                + " ".join(f"{m}={v:.3f}" for m, v in row["recall_at_10"].items())
                + "  upkeep "
                + " ".join(f"{m}={v:.2f}s" for m, v in row["upkeep_seconds"].items()),
                flush=True,
            )
        ratios = {m.name: round(m.bytes_per_vector_ratio(), 5) for m in methods}
    return {"slices": rows, "bytes_per_vector_ratio": ratios, "summary": summarise(rows)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    methods = list(rows[0]["recall_at_10"])
    shift = next((i for i, r in enumerate(rows) if r["domain"] != rows[0]["domain"]), None)

    def mean(key: str, m: str, part: list[dict[str, Any]]) -> float | None:
        values = [r[key][m] for r in part if m in r[key]]
        return round(float(np.mean(values)), 4) if values else None

    out: dict[str, Any] = {}
    for m in methods:
        out[m] = {
            "recall_at_10_mean": mean("recall_at_10", m, rows),
            "recall_at_10_min": min(r["recall_at_10"][m] for r in rows),
            "recall_at_10_last": rows[-1]["recall_at_10"][m],
            "recall_at_10_no_rerank_mean": mean("recall_at_10_no_rerank", m, rows),
            "recall_at_10_questions_mean": mean("recall_at_10_questions", m, rows),
            "upkeep_seconds": round(sum(r["upkeep_seconds"][m] for r in rows), 3),
            "upkeep_seconds_after_first_slice": round(sum(r["upkeep_seconds"][m] for r in rows[1:]), 3),
            "add_seconds": round(sum(r["add_seconds"][m] for r in rows), 3),
        }
        if shift is not None:
            out[m]["after_shift_recall_at_10_mean"] = mean("recall_at_10", m, rows[shift:])
            out[m]["after_shift_recall_at_10_no_rerank_mean"] = mean(
                "recall_at_10_no_rerank", m, rows[shift:]
            )
    out["first_slice_after_shift"] = shift
    return out


# -- main ------------------------------------------------------------------------------------------
def build_streams(args: argparse.Namespace) -> tuple[list[VecStream], dict[str, Any]]:
    if args.tiny:
        return [synthetic_stream(DIM, 3, 1200, 40, args.seed)], {"source": f"synthetic, dim {DIM}"}
    quick = args.quick
    per = {"ectqa": 800, "other": 600} if quick else {"ectqa": None, "other": None}
    parts = 4 if quick else 8
    n_questions = 100 if quick else 300
    held = 40 if quick else 100
    started = time.perf_counter()
    texts: list[TextStream] = []
    ect, tqa = args.data / "ect-qa-2024", args.data / "timeqa" / "human_annotated_train.json.gz"
    if (ect / "corpus.jsonl.gz").exists():
        texts.append(ectqa_stream(ect, per["ectqa"], n_questions, args.seed))
    else:
        print(f"  skipping ECT-QA: {ect / 'corpus.jsonl.gz'} not found (pass --data)", flush=True)
    if tqa.exists():
        texts.append(timeqa_stream(tqa, parts, per["other"], n_questions, args.seed))
    else:
        print(f"  skipping TimeQA: {tqa} not found (pass --data)", flush=True)
    texts.append(world_stream("medium" if quick else "large", parts, per["other"], n_questions, args.seed))
    for s in texts:
        sizes = ", ".join(f"{len(t):,}" for _, t in s.slices)
        print(f"  {s.name}: sentences per slice {sizes}; {len(s.questions)} questions", flush=True)
    embed = CachedEmbedder(args.cache)
    streams = [vectorise(s, embed, held, args.seed) for s in texts]
    info = {
        "source": "sentences of ECT-QA, TimeQA and the generated world",
        "model": embed.embedder.name,
        "vectors": sum(s.size for s in streams),
        "held_back_per_slice": held,
        "texts_embedded": embed.embedded,
        "texts_from_cache": embed.cached,
        "embedding_seconds": round(embed.seconds, 1),
        "prepare_seconds": round(time.perf_counter() - started, 1),
    }
    return streams, info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few thousand sentences a stream; within 3 minutes")
    p.add_argument("--tiny", action="store_true", help="synthetic drifting vectors only (seconds; for tests)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with ect-qa-2024/ and timeqa/")
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "memory_bank", help="embedding cache")
    p.add_argument("--batch", type=int, default=1024, help="ours_stream: vectors per add call (0: leave out)")
    p.add_argument("--queries", type=int, help="held-back queries per measurement (default 200; full 500)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch and faiss threads")
    p.add_argument("--opq-retrain", action="store_true", help="also OPQ retrained every slice (slow)")
    p.add_argument("--no-opq", action="store_true", help="leave out the frozen OPQ baseline")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", help="comma-separated runs to measure (default: every stream and combined)")
    p.add_argument(
        "--bank",
        type=bank_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="CodebookConfig field",
    )
    p.add_argument("--out", type=Path, help="also write the JSON result here")
    args = p.parse_args(argv)
    BANK_OPTIONS.clear()
    BANK_OPTIONS.update(dict(args.bank))
    started = time.perf_counter()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    if not args.tiny:
        import torch

        torch.set_num_threads(args.threads)
    result: dict[str, Any] = {**run_info(args.quick or args.tiny)}
    if args.tiny:
        result["mode"] = "tiny"
    print("preparing streams ...", flush=True)
    streams, info = build_streams(args)
    cap = args.queries or (500 if not (args.quick or args.tiny) else 200)
    dim = streams[0].slices[0].base.shape[1]
    # OPQ training (50 rotations, each with PQ k-means) takes seconds even on a small first
    # slice: the quick mode runs it on the combined stream only.
    use_opq = not args.no_opq and not args.tiny

    def make_methods(folder: Path, opq: bool) -> list[Any]:
        methods: list[Any] = [Ours("ours", dim, folder / "bank", 0, args.seed, args.threads)]
        if args.batch:
            methods.append(
                Ours("ours_stream", dim, folder / "bank-stream", args.batch, args.seed, args.threads)
            )
        methods.append(Faiss("pq_frozen", f"PQ{M}x{NBITS}", dim, retrain=False))
        if opq:
            methods.append(Faiss("opq_frozen", f"OPQ{M},PQ{M}x{NBITS}", dim, retrain=False))
        methods.append(Faiss("pq_retrained", f"PQ{M}x{NBITS}", dim, retrain=True))
        if opq and args.opq_retrain:
            methods.append(Faiss("opq_retrained", f"OPQ{M},PQ{M}x{NBITS}", dim, retrain=True))
        return methods

    runs = streams if len(streams) == 1 else [*streams, combine(streams)]
    if args.runs:
        runs = [r for r in runs if r.name in args.runs.split(",")] or runs
    result.update(
        {
            "data": info,
            "threads": args.threads,
            "code": f"faiss m={M} x {NBITS} bits ({M * NBITS // 8} bytes) of float32 {4 * dim} bytes",
            "rerank": RERANK,
            "k": K,
            "ours_config": ours_config(dim, args.seed, args.threads).to_dict(),
            "batch": args.batch,
            "queries_per_measurement": cap,
            "queries": "held-back sentences: the latest slice's plus as many from earlier slices; "
            "questions: the datasets' question texts",
            "streams": {},
        }
    )
    print("measuring ...", flush=True)
    for stream in runs:
        opq = use_opq and (stream is runs[-1] or not args.quick)
        result["streams"][stream.name] = run_stream(stream, make_methods, cap, args.seed, opq)
    main_run = result["streams"][runs[-1].name]
    s = main_run["summary"]
    all_min = min(r["recall_at_10"]["ours"] for run in result["streams"].values() for r in run["slices"])
    result.update(
        {
            "headline_stream": runs[-1].name,
            "bytes_per_vector_ratio": main_run["bytes_per_vector_ratio"]["ours"],
            "recall_at_10": s["ours"]["recall_at_10_mean"],
            "recall_at_10_frozen": s["pq_frozen"]["recall_at_10_mean"],
            "recall_at_10_retrained": s["pq_retrained"]["recall_at_10_mean"],
            "recall_at_10_min_any_stream": all_min,
            "recall_at_10_no_rerank": s["ours"]["recall_at_10_no_rerank_mean"],
            "recall_at_10_no_rerank_frozen": s["pq_frozen"]["recall_at_10_no_rerank_mean"],
            "recall_at_10_no_rerank_retrained": s["pq_retrained"]["recall_at_10_no_rerank_mean"],
            "upkeep_seconds": s["ours"]["upkeep_seconds"],
            "retrain_seconds": s["pq_retrained"]["upkeep_seconds"],
            # without the first slice (initial training: one-off, and the noisiest figure)
            "upkeep_seconds_after_first_slice": s["ours"]["upkeep_seconds_after_first_slice"],
            "retrain_seconds_after_first_slice": s["pq_retrained"]["upkeep_seconds_after_first_slice"],
        }
    )
    if "ours_stream" in s:
        result["recall_at_10_ours_stream"] = s["ours_stream"]["recall_at_10_mean"]
        result["upkeep_seconds_ours_stream"] = s["ours_stream"]["upkeep_seconds"]
    if use_opq:
        result["recall_at_10_frozen_opq"] = s["opq_frozen"]["recall_at_10_mean"]
    if s["first_slice_after_shift"] is not None:
        result["after_shift"] = {
            m: {
                "recall_at_10": s[m]["after_shift_recall_at_10_mean"],
                "recall_at_10_no_rerank": s[m]["after_shift_recall_at_10_no_rerank_mean"],
            }
            for m in s
            if m != "first_slice_after_shift"
        }
    result["targets"] = targets(result)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["seconds"] = round(time.perf_counter() - started, 1)
    emit(result, args.out)
    return 0


def targets(r: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with the figures it compares."""
    upkeep_share = r["upkeep_seconds"] / r["retrain_seconds"] if r["retrain_seconds"] > 0 else None
    out: dict[str, Any] = {
        "bytes_at_most_1.1pct": r["bytes_per_vector_ratio"] <= 0.011,
        "recall_at_least_0.95": r["recall_at_10"] >= 0.95,
        "recall_at_least_0.95_every_slice": r["recall_at_10_min_any_stream"] >= 0.95,
        "within_2_points_of_retrained": r["recall_at_10"] >= r["recall_at_10_retrained"] - 0.02,
        "upkeep_share_of_retrain": round(upkeep_share, 4) if upkeep_share is not None else None,
        "upkeep_at_most_20pct_of_retrain": upkeep_share is not None and upkeep_share <= 0.2,
        "upkeep_share_of_retrain_after_first_slice": round(
            r["upkeep_seconds_after_first_slice"] / max(r["retrain_seconds_after_first_slice"], 1e-9), 4
        ),
    }
    shift = r.get("after_shift")
    if shift:
        margin = shift["ours"]["recall_at_10"] - shift["pq_frozen"]["recall_at_10"]
        margin_adc = shift["ours"]["recall_at_10_no_rerank"] - shift["pq_frozen"]["recall_at_10_no_rerank"]
        out["after_shift_margin_over_frozen"] = round(margin, 4)
        out["after_shift_margin_over_frozen_no_rerank"] = round(margin_adc, 4)
        out["above_frozen_after_shift_by_2_points"] = margin >= 0.02
    return out


if __name__ == "__main__":
    sys.exit(main())
