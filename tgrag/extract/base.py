"""The ``Extractor`` protocol: chunks of one document in, entities and temporal facts out.

Extractors see a whole document's chunks at once so that an LLM extractor can batch its calls.
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


EXTRACTORS: Registry[Extractor] = Registry("extractor")


def create_extractor(spec: str | Extractor, **kwargs: object) -> Extractor:
    if not isinstance(spec, str):
        return spec
    from . import rules  # noqa: F401  (registers the built-in extractor)

    return EXTRACTORS.create(spec, **kwargs)
