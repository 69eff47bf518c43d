"""The ``Extractor`` protocol: chunks of one document in, entities and temporal facts out.

Extractors see a whole document's chunks at once so that an LLM extractor can batch its calls.
One that can also take several documents at once (``BatchExtractor.extract_many``) gets a whole
ingest batch through ``extract_batch``, so that a model server sees all of its chunks together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..model import Chunk, Document, Extraction
from ..registry import Registry


@runtime_checkable
class Extractor(Protocol):
    name: str

    def extract(self, document: Document, chunks: Sequence[Chunk]) -> list[Extraction]:
        """One ``Extraction`` per chunk, in order."""
        ...


@runtime_checkable
class BatchExtractor(Protocol):
    """An optional capability: ``extract`` for several documents in one go."""

    def extract_many(self, items: Sequence[tuple[Document, Sequence[Chunk]]]) -> list[list[Extraction]]:
        """One list of ``Extraction``s per document, in order, each one per chunk."""
        ...


def extract_batch(
    extractor: Extractor, items: Sequence[tuple[Document, Sequence[Chunk]]]
) -> list[list[Extraction]]:
    """Every document's extractions: one ``extract_many`` call when the extractor batches, else
    ``extract`` per document. Callers need not know which kind of extractor they hold."""
    if isinstance(extractor, BatchExtractor):
        results = extractor.extract_many(items)
    else:
        results = [extractor.extract(doc, chunks) for doc, chunks in items]
    if len(results) != len(items):  # a wrong count would pair extractions with the wrong documents
        raise ValueError(f"extractor returned {len(results)} results for {len(items)} documents")
    return results


EXTRACTORS: Registry[Extractor] = Registry("extractor")


def create_extractor(spec: str | Extractor, **kwargs: object) -> Extractor:
    if not isinstance(spec, str):
        return spec
    from . import llm, rules  # noqa: F401  (registers the built-in extractors; llm imports no model)

    return EXTRACTORS.create(spec, **kwargs)
