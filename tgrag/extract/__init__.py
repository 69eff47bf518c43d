"""Fact extraction behind the ``Extractor`` protocol; ``rules`` is the offline default."""

from .base import EXTRACTORS, Extractor, create_extractor

__all__ = ["EXTRACTORS", "Extractor", "create_extractor"]
