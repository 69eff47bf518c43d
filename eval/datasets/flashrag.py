"""FlashRAG's formats: questions as jsonl ``{id, question, golden_answers, metadata}`` and a corpus as
jsonl ``{id, contents}`` (``contents`` = "title\\ntext"). Import and export, so our datasets run in
FlashRAG and theirs run here."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tgrag.fsutil import atomic_write_bytes
from tgrag.model import Document

from .base import QAItem


def load_questions(path: Path) -> list[QAItem]:
    items = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                golds = r.get("golden_answers", [])
                if isinstance(golds, str):
                    golds = [golds]
                metadata = dict(r.get("metadata") or {})
                items.append(
                    QAItem(
                        id=str(r.get("id", f"q{n}")),
                        question=str(r["question"]),
                        golden_answers=tuple(
                            str(g) for g in golds if str(g).strip() and str(g).lower() != "unanswerable"
                        ),
                        evidence=tuple(str(e) for e in metadata.pop("evidence", []) or []),
                        metadata=metadata,
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{n}: not a FlashRAG question record ({exc})") from None
    return items


def save_questions(items: Iterable[QAItem], path: Path) -> None:
    lines = [
        json.dumps(
            {
                "id": i.id,
                "question": i.question,
                "golden_answers": list(i.golden_answers),
                "metadata": {**i.metadata, "evidence": list(i.evidence)},
            },
            ensure_ascii=False,
        )
        for i in items
    ]
    atomic_write_bytes(Path(path), ("\n".join(lines) + "\n").encode())


def load_corpus(path: Path) -> list[Document]:
    """FlashRAG corpus records: the first line of ``contents`` is the title (the document's subject)."""
    docs = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                contents = str(r["contents"])
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{path}:{n}: not a FlashRAG corpus record ({exc})") from None
            title, _, text = contents.partition("\n")
            body = text if text.strip() else title
            docs.append(
                Document(
                    text=body,
                    subject=title.strip() or None,
                    key=str(r.get("id", n)),
                    source=str(r.get("id", n)),
                )
            )
    return docs


def save_corpus(documents: Iterable[Document], path: Path) -> None:
    lines = [
        json.dumps({"id": d.key or d.id, "contents": f"{d.subject or ''}\n{d.text}"}, ensure_ascii=False)
        for d in documents
    ]
    atomic_write_bytes(Path(path), ("\n".join(lines) + "\n").encode())
