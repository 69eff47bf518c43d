"""Stores behind the ``GraphStore`` protocol; ``sqlite`` is the embedded default."""

from . import sqlite as _sqlite  # noqa: F401  (registers the "sqlite" store)
from .base import STORES, DeleteOutcome, DocumentRecord, FactRow, GraphStore, NewFact

__all__ = ["STORES", "DeleteOutcome", "DocumentRecord", "FactRow", "GraphStore", "NewFact"]
