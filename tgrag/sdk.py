"""The Python SDK: ``TemporalRAG.open(path)``, then ``ingest``, ``retrieve``, ``answer``, ``delete``.

>>> rag = TemporalRAG.open("stores/calls")
>>> rag.ingest([Document("Revenue was $4.1 billion.", period=TimeInterval.quarter(2024, 2), subject="Acme")])
>>> rag.answer("What was Acme's revenue in Q2 2024?").text
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

from .agent import AgentResult, AutoRAG, ResultCache
from .answer import ExtractiveAnswerer
from .config import Config
from .embed import Embedder, create_embedder
from .errors import StoreCorruptedError, StoreError, StoreLockedError, TGRAGError
from .extract import Extractor, create_extractor
from .ingest import IngestReport, IngestTime, InvalidRecord, ingest
from .llm.base import LLM, create_llm
from .model import Answer, Document, Fact, RetrievalResult
from .retrieve import TemporalRetriever
from .store.base import STORES, DeleteOutcome, DocumentRecord, GraphStore
from .summaries import refresh_summaries
from .workspace import Workspace

log = logging.getLogger(__name__)


class TemporalRAG:
    """A temporal knowledge graph in a folder: SQLite plus derived indexes, no server needed."""

    def __init__(self, ws: Workspace, llm: str | LLM | None = None) -> None:
        self._ws = ws
        self._retriever = TemporalRetriever(ws)
        self._answerer = ExtractiveAnswerer(ws.embedder)
        self._llm_spec: str | LLM = llm if llm is not None else ws.config.llm
        self._llm: LLM | None = None
        self._results = ResultCache()  # retrieval results the speculative loop guesses from

    @classmethod
    def open(
        cls,
        path: str | Path,
        config: Config | None = None,
        *,
        embedder: str | Embedder | None = None,
        extractor: str | Extractor | None = None,
        store: str = "sqlite",
        llm: str | LLM | None = None,
    ) -> TemporalRAG:
        """Open (creating if needed) the store at ``path``. Models are chosen by spec or object.

        ``llm`` is what ``ask`` reasons with (default ``config.llm``, the no-model ``extractive``);
        it is created on first use, so opening a store never starts a model.
        """
        config = config or Config()
        path = Path(path)
        graph_store = STORES.create(store, path=path)
        try:
            emb = create_embedder(embedder or config.embedder)
            ext = create_extractor(
                extractor or config.extractor, fiscal_year_start_month=config.ingest.fiscal_year_start_month
            )
            with store_errors(graph_store):
                ws = Workspace.open(path, config, graph_store, emb, ext)
        except BaseException:
            graph_store.close()
            raise
        return cls(ws, llm)

    # ---- writing ------------------------------------------------------------------------------
    def ingest(
        self,
        documents: Iterable[Document | str | dict[str, Any]],
        ingested_at: IngestTime = None,
        progress: Callable[[int], None] | None = None,
    ) -> IngestReport:
        """Add documents (skipping ones already stored), then refresh the summaries of changed times.

        ``ingested_at`` sets the knowledge time: a datetime, or a function of the document (to replay a
        corpus by publication date for as-of queries); by default, now.
        """
        ws = self._ws
        with store_errors(ws.store), ws.lock:
            ws.refresh_if_stale()
            report = ingest(ws, (_as_document(d) for d in documents), ingested_at, progress)
            report.dirty_nodes = len(ws.store.time_nodes(dirty_only=True))
            report.summaries_recomputed = refresh_summaries(ws)
            ws.save_indexes()
        return report

    def delete(self, doc_id: str) -> DeleteOutcome | None:
        """Remove a document (by id or key): its provenance, and every fact no other source states."""
        ws = self._ws
        with store_errors(ws.store), ws.lock:
            ws.refresh_if_stale()
            resolved = ws.store.document_id_for_key(doc_id) or doc_id
            with ws.store.transaction():
                outcome = ws.store.delete_document(resolved)
                ws.record_choices()
            if outcome is None:
                return None
            idx = ws.indexes
            idx.remove_facts(list(outcome.facts_removed))
            idx.catalog.update_sources(list(ws.store.fact_rows(list(outcome.facts_kept))))
            idx.remove_entities(outcome.entities_removed)
            idx.remove_chunks(list(outcome.chunks_removed))
            idx.documents.pop(resolved, None)
            idx.generation = ws.store.generation()
            refresh_summaries(ws)
            ws.save_indexes()
        return outcome

    # ---- reading ------------------------------------------------------------------------------
    def retrieve(
        self,
        question: str,
        as_of: datetime | date | None = None,
        budget: int | None = None,
        now: date | None = None,
    ) -> RetrievalResult:
        """Evidence for ``question`` inside its time scope, as known at ``as_of``, within ``budget`` tokens."""
        with store_errors(self._ws.store):
            return self._retriever.retrieve(question, as_of=as_of, budget=budget, now=now)

    def answer(
        self,
        question: str,
        as_of: datetime | date | None = None,
        budget: int | None = None,
        now: date | None = None,
    ) -> Answer:
        """An extractive answer with citations (the offline default), or an abstention with its reason."""
        return self._answerer.answer(self.retrieve(question, as_of=as_of, budget=budget, now=now))

    def ask(
        self,
        question: str,
        as_of: datetime | date | None = None,
        budget: int | None = None,
        now: date | None = None,
        *,
        llm: str | LLM | None = None,
        max_iter: int | None = None,
        on_delta: Callable[[str], None] | None = None,
        speculative: bool = False,
    ) -> AgentResult:
        """Answer through the Auto-RAG loop: plan, retrieve, refine, answer (``tgrag.agent``).

        Returns the answer with citations and the loop's trace. ``on_delta`` receives the final
        answer's text piece by piece as it is written (for streaming). ``speculative`` reads each
        retrieval's last known result at once and verifies it while the planner works (rolled
        back when the store disagrees: the trace is the same either way).
        """
        agent = AutoRAG(
            self,
            self._model(llm),
            max_iter=max_iter or self._ws.config.max_iter,
            answerer=self._answerer,
            speculative=self._results if speculative else False,
        )
        try:
            return agent.run(question, as_of=as_of, budget=budget, now=now, on_delta=on_delta)
        finally:
            agent.close()

    def _model(self, llm: str | LLM | None) -> LLM:
        if llm is not None:
            return create_llm(llm)
        if self._llm is None:
            self._llm = create_llm(self._llm_spec)
        return self._llm

    def facts(self, ids: list[int]) -> list[Fact]:
        return self._ws.store.facts(ids)

    def documents(self) -> list[DocumentRecord]:
        return self._ws.store.documents()

    def stats(self) -> dict[str, int]:
        return self._ws.store.stats()

    @property
    def workspace(self) -> Workspace:
        return self._ws

    def close(self) -> None:
        try:
            if self._llm is not None:
                self._llm.close()
            # An extractor may hold a model or a cache file (the llm one); close() is optional for it.
            close_extractor = getattr(self._ws.extractor, "close", None)
            if callable(close_extractor):
                close_extractor()
        finally:
            self._ws.store.close()  # even if a model fails to shut down, the store is left closed

    def __enter__(self) -> TemporalRAG:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def store_errors(store: GraphStore) -> Iterator[None]:
    """SQLite's errors as tgrag's: a damaged file, a lock held too long, anything else.

    Damage SQLite does not notice can reach our code as garbage values; when something unexpected
    fails, an integrity check tells a damaged store (reported as such) from a bug (re-raised).
    """
    try:
        yield
    except TGRAGError:
        raise
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreLockedError(f"store {store.path} is busy ({exc}); try again") from None
        raise StoreError(f"store {store.path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise _damaged(store, str(exc)) from None
    except Exception:
        try:
            verdict = store.integrity_check()
        except sqlite3.DatabaseError as exc:
            verdict = str(exc)
        if verdict != "ok":
            raise _damaged(store, verdict) from None
        raise


def _damaged(store: GraphStore, detail: str) -> StoreCorruptedError:
    return StoreCorruptedError(
        f"{store.path / 'store.sqlite'} is damaged ({detail}). Restore it from a backup, or move it aside "
        "and ingest the documents again."
    )


def _as_document(item: Document | str | dict[str, Any]) -> Document | InvalidRecord:
    if isinstance(item, Document):
        return item
    if isinstance(item, str):
        return Document(item)
    if isinstance(item, dict):
        from .readers import document_from_record

        try:
            return document_from_record(item)
        except ValueError as exc:
            return InvalidRecord(f"bad record: {exc}")
    return item  # ingest reports anything else as a skipped document with its type
