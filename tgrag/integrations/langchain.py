"""A LangChain ``BaseRetriever`` over a tgrag store (extra: ``tgrag[langchain]``).

Each piece of evidence becomes a LangChain ``Document`` whose metadata carries its valid time,
source and score; an abstention returns no documents (its reason is in the run's metadata).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict


class TemporalRAGRetriever(BaseRetriever):
    """``TemporalRAGRetriever(rag=TemporalRAG.open(path), as_of=None, budget=None)``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    rag: Any
    as_of: date | datetime | None = None
    budget: int | None = None
    now: date | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[LCDocument]:
        result = self.rag.retrieve(query, as_of=self.as_of, budget=self.budget, now=self.now)
        if result.abstained:
            run_manager.on_text(f"tgrag abstained: {result.reason}")
            return []
        return [
            LCDocument(
                page_content=ev.text,
                metadata={
                    "time": ev.time.label,
                    "valid_from": ev.time.start.isoformat() if ev.time.start else None,
                    "valid_until": ev.time.end.isoformat() if ev.time.end else None,
                    "source": ev.source,
                    "doc_id": ev.doc_id,
                    "score": ev.score,
                    "kind": ev.kind.value,
                    "id": ev.item_id,
                    "subject": ev.subject,
                },
            )
            for ev in result.evidence
        ]
