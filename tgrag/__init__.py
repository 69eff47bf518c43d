"""tgrag: retrieval-augmented generation over knowledge that changes with time.

Start with ``TemporalRAG.open(path)`` (see ``tgrag.sdk``); the data types live in ``tgrag.model``.
Heavy modules (torch, faiss) load only when a store is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import Config, IngestConfig, RetrievalConfig
from .errors import InputError, StoreCorruptedError, StoreError, StoreLockedError, TGRAGError
from .model import Answer, Document, Evidence, Fact, QueryScope, RetrievalResult, TimeInterval

if TYPE_CHECKING:
    from .sdk import TemporalRAG

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "Config",
    "Document",
    "Evidence",
    "Fact",
    "IngestConfig",
    "InputError",
    "QueryScope",
    "RetrievalConfig",
    "RetrievalResult",
    "StoreCorruptedError",
    "StoreError",
    "StoreLockedError",
    "TGRAGError",
    "TemporalRAG",
    "TimeInterval",
]


def __getattr__(name: str) -> Any:
    if name == "TemporalRAG":
        from .sdk import TemporalRAG

        return TemporalRAG
    raise AttributeError(name)
