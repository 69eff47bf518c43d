"""The question format shared by every dataset: FlashRAG's jsonl fields, plus gold evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    golden_answers: tuple[str, ...]  # empty: the question has no answer in the corpus
    evidence: tuple[str, ...] = ()  # gold evidence sentences
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def answerable(self) -> bool:
        return bool(self.golden_answers)
