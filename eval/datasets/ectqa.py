"""ECT-QA: earnings-call transcripts (``corpus.jsonl.gz``) and time-sensitive questions (``questions.jsonl``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from tgrag.model import Document
from tgrag.readers import read_documents

from .base import QAItem


def load_corpus(folder: Path) -> list[Document]:
    return list(read_documents("ectqa", [Path(folder) / "corpus.jsonl.gz"]))


def load_questions(path: Path) -> list[QAItem]:
    """Questions with their gold evidence sentences; "unanswerable" becomes no golden answer."""
    items = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            if not line.strip():
                continue
            r = json.loads(line)
            answer = str(r.get("answer", "")).strip()
            unanswerable = answer.lower() == "unanswerable" or str(r.get("reasoning_type", "")).startswith(
                "unanswerable"
            )
            items.append(
                QAItem(
                    id=f"ectqa-{n}",
                    question=r["question"],
                    golden_answers=() if unanswerable else (answer,),
                    evidence=tuple(e["evidence"] for e in r.get("evidence_list", [])),
                    metadata={
                        **{k: r.get(k) for k in ("reasoning_type", "question_type", "num_hops")},
                        "type": str(r.get("reasoning_type", "")).split("|")[0] or "unknown",
                        # the quarters the evidence comes from: when the question becomes answerable
                        "periods": sorted(
                            {f"{e['year']}-Q{str(e['quarter'])[-1]}" for e in r.get("evidence_list", [])}
                        ),
                        "evidence_docs": sorted(
                            {e["ect_filename"] for e in r.get("evidence_list", []) if e.get("ect_filename")}
                        ),
                    },
                )
            )
    return items


def iter_dataset(folder: Path) -> Iterator[QAItem]:
    yield from load_questions(Path(folder) / "questions.jsonl")
