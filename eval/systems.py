"""Systems compared under the same evidence token budget, behind one small protocol.

- ``tgrag``: the temporal store (facts, time scope, graph ranking) with its extractive answerer.
- ``dense``: chunks of the same documents, the same embedder, exact inner-product search (faiss flat).
- ``bm25``: the same chunks ranked by BM25.
The baselines answer with the same extractive answerer, reading the sentences of their chunks,
so differences come from retrieval, not from the reader. They have no notion of time: they ignore
``as_of`` and ``now`` (``supports_as_of`` says so), which the as-of protocol measures as leakage.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from tgrag.answer import ExtractiveAnswerer
from tgrag.chunking import chunk_document
from tgrag.embed import Embedder, create_embedder
from tgrag.index.lexical import BM25Index
from tgrag.ingest import IngestTime
from tgrag.model import Document, Evidence, EvidenceKind, QueryScope, RetrievalResult, TimeInterval
from tgrag.registry import Registry
from tgrag.sdk import TemporalRAG
from tgrag.text import split_sentences, words
from tgrag.tokens import count_tokens_batch


@dataclass(frozen=True)
class SystemOutput:
    answer: str
    abstained: bool
    context: tuple[str, ...]  # the passages packed into the budget, in order
    retrieval_seconds: float
    context_tokens: int = 0
    abstain_reason: str = ""


class System(Protocol):
    name: str
    supports_as_of: bool

    def build(self, documents: Sequence[Document], ingested_at: IngestTime = None) -> float:
        """Index the documents (may be called again with more); returns seconds spent.

        ``ingested_at``: when the system learns them; protocols replay dated corpora by publication day.
        """
        ...

    def run(
        self, question: str, budget: int, as_of: date | datetime | None = None, now: date | None = None
    ) -> SystemOutput: ...

    def close(self) -> None: ...


SYSTEMS: Registry[System] = Registry("system")


class TGRAGSystem:
    name = "tgrag"
    supports_as_of = True

    def __init__(self, path: Path | None = None, embedder: str | Embedder = "minilm") -> None:
        self._tmp = None if path else tempfile.TemporaryDirectory(prefix="tgrag-eval-")
        self.rag = TemporalRAG.open(path or Path(self._tmp.name) / "store", embedder=embedder)  # type: ignore[union-attr]

    def build(self, documents: Sequence[Document], ingested_at: IngestTime = None) -> float:
        return self.rag.ingest(documents, ingested_at=ingested_at).seconds

    def run(
        self, question: str, budget: int, as_of: date | datetime | None = None, now: date | None = None
    ) -> SystemOutput:
        started = time.perf_counter()
        result = self.rag.retrieve(question, budget=budget, as_of=as_of, now=now)
        seconds = time.perf_counter() - started
        answer = ExtractiveAnswerer(self.rag.workspace.embedder).answer(result)
        tokens = sum(e.tokens for e in result.evidence)
        context = tuple(e.text for e in result.evidence)
        return SystemOutput(answer.text, answer.abstained, context, seconds, tokens, result.reason)

    def close(self) -> None:
        self.rag.close()
        if self._tmp is not None:
            self._tmp.cleanup()


class AgentSystem(TGRAGSystem):
    """tgrag through the Auto-RAG loop (``rag.ask``): each retrieval gets the budget, so the
    context (everything the loop read) can exceed it; ``context_tokens`` reports how much."""

    name = "tgrag-agent"

    def __init__(
        self, path: Path | None = None, embedder: str | Embedder = "minilm", llm: str | None = None
    ) -> None:
        super().__init__(path, embedder)
        self.llm = llm

    def run(
        self, question: str, budget: int, as_of: date | datetime | None = None, now: date | None = None
    ) -> SystemOutput:
        started = time.perf_counter()
        result = self.rag.ask(question, budget=budget, as_of=as_of, now=now, llm=self.llm)
        seconds = time.perf_counter() - started
        evidence = result.answer.retrieval.evidence if result.answer.retrieval else ()
        tokens = sum(e.tokens for e in evidence)
        context = tuple(e.text for e in evidence)
        answer = result.answer
        return SystemOutput(answer.text, answer.abstained, context, seconds, tokens, answer.reason)


class ChunkSystem:
    """A plain chunk retriever: dense (faiss flat over MiniLM) or lexical (BM25)."""

    supports_as_of = False

    def __init__(self, kind: str, embedder: str | Embedder = "minilm", chunk_words: int = 100) -> None:
        if kind not in ("dense", "bm25"):
            raise ValueError(f"kind must be dense or bm25, not {kind!r}")
        self.name = kind
        self.kind = kind
        self.chunk_words = chunk_words
        self.embedder = create_embedder(embedder)
        self.texts: list[str] = []
        self.tokens: list[int] = []
        self.index = faiss.IndexFlatIP(self.embedder.dim)
        self.bm25 = BM25Index()

    def build(self, documents: Sequence[Document], ingested_at: IngestTime = None) -> float:
        started = time.perf_counter()
        texts = [c.text for d in documents for c in chunk_document(d, self.chunk_words)]
        if self.kind == "dense":
            self.index.add(self.embedder.embed(texts))
        else:
            self.bm25.add(texts)
        self.texts += texts
        self.tokens += count_tokens_batch(texts)
        return time.perf_counter() - started

    def run(
        self, question: str, budget: int, as_of: date | datetime | None = None, now: date | None = None
    ) -> SystemOutput:
        started = time.perf_counter()
        if self.kind == "dense":
            scores, ids = self.index.search(self.embedder.embed([question]), min(64, len(self.texts)))
            ranked = [(float(s), int(i)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
        else:
            all_scores = self.bm25.scores(question)
            order = np.argsort(-all_scores)[:64]
            ranked = [(float(all_scores[i]), int(i)) for i in order if all_scores[i] > 0]
        packed: list[tuple[float, int]] = []
        used = 0
        for score, i in ranked:
            if used + self.tokens[i] <= budget:
                packed.append((score, i))
                used += self.tokens[i]
        seconds = time.perf_counter() - started
        context = tuple(self.texts[i] for _, i in packed)
        answer = ExtractiveAnswerer(self.embedder).answer(_as_retrieval(question, packed, self.texts))
        return SystemOutput(answer.text, answer.abstained, context, seconds, used)

    def close(self) -> None:
        pass


def _as_retrieval(question: str, packed: list[tuple[float, int]], texts: list[str]) -> RetrievalResult:
    """The packed chunks as sentence evidence: chunk rank first, then overlap with the question."""
    q = set(words(question))
    top = packed[0][0] if packed and packed[0][0] > 0 else 1.0
    scored: list[tuple[float, str]] = []
    for rank, (score, i) in enumerate(packed):
        for s in split_sentences(texts[i]):
            overlap = len(q & set(words(s.text))) / max(len(q), 1)
            scored.append(((score / top) / (1 + 0.35 * rank) + 0.5 * overlap, s.text))
    scored.sort(key=lambda p: -p[0])
    evidence = tuple(Evidence(t, TimeInterval.always(), s, EvidenceKind.CHUNK) for s, t in scored)
    return RetrievalResult(
        question,
        QueryScope(TimeInterval.always()),
        evidence,
        not evidence,
        "" if evidence else "nothing retrieved",
    )


@SYSTEMS.register("tgrag")
def _tgrag(arg: str | None, **kwargs: object) -> System:
    return TGRAGSystem(**kwargs)  # type: ignore[arg-type]


@SYSTEMS.register("tgrag-agent")
def _tgrag_agent(arg: str | None, **kwargs: object) -> System:
    return AgentSystem(llm=arg, **kwargs)  # type: ignore[arg-type]


@SYSTEMS.register("dense")
def _dense(arg: str | None, **kwargs: object) -> System:
    return ChunkSystem("dense", **kwargs)  # type: ignore[arg-type]


@SYSTEMS.register("bm25")
def _bm25(arg: str | None, **kwargs: object) -> System:
    return ChunkSystem("bm25", **kwargs)  # type: ignore[arg-type]
