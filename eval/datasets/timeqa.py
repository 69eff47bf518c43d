"""TimeQA (human-annotated): Wikipedia pages with time-scoped questions and span answers."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from tgrag.model import Document
from tgrag.readers import timeqa_document
from tgrag.text import split_sentences

from .base import QAItem


def load_pages(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        pages = json.load(fh)
    if not isinstance(pages, list):
        raise ValueError(f"{path} is not a TimeQA file (expected a JSON list of pages)")
    return pages


def load(path: Path, every: int = 1) -> tuple[list[Document], list[QAItem]]:
    """Documents and questions; ``every=k`` keeps every k-th page (a deterministic subset)."""
    pages = load_pages(path)[::every]
    documents: list[Document] = []
    seen: set[str] = set()
    items: list[QAItem] = []
    for p, page in enumerate(pages):
        doc = timeqa_document(page)
        if doc.id not in seen:  # the same page can appear once per Wikidata property
            seen.add(doc.id)
            documents.append(doc)
        for k, (question, answers) in enumerate(page["questions"]):
            golds = tuple(dict.fromkeys(a["answer"] for a in answers if a.get("answer")))
            evidence = tuple(
                dict.fromkeys(
                    _sentence_at(page["paras"][a["para"]], a["from"]) for a in answers if a.get("answer")
                )
            )
            link = page.get("link") or page.get("index")
            metadata = {"page": link, "evidence_docs": [link], "type": "span" if golds else "unanswerable"}
            items.append(QAItem(f"timeqa-{p}-{k}", question, golds, evidence, metadata))
    return documents, items


def _sentence_at(paragraph: str, offset: int) -> str:
    for s in split_sentences(paragraph):
        if s.start <= offset < s.end:
            return s.text
    return paragraph
