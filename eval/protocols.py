"""Evaluation protocols. ``static``: index everything, then ask every question (first version;
the incremental and as-of protocols arrive with the evaluation issue)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tgrag.model import Document

from .datasets.base import QAItem
from .metrics import abstain_scores, answer_em, answer_f1, evidence_recall, latency_percentiles
from .systems import System


def run_static(
    system: System, documents: Sequence[Document], items: Sequence[QAItem], budget: int
) -> dict[str, Any]:
    ingest_seconds = system.build(documents)
    ems, f1s, recalls, latencies, abstained, unanswerable = [], [], [], [], [], []
    for item in items:
        out = system.run(item.question, budget)
        latencies.append(out.retrieval_seconds)
        abstained.append(out.abstained)
        unanswerable.append(not item.answerable)
        if item.answerable:
            ems.append(answer_em(out.answer, item.golden_answers))
            f1s.append(answer_f1(out.answer, item.golden_answers))
            if item.evidence:
                recalls.append(evidence_recall(item.evidence, out.context))
    precision, recall = abstain_scores(abstained, unanswerable)
    return {
        "system": system.name,
        "questions": len(items),
        "evidence_recall": float(np.mean(recalls)) if recalls else None,
        "answer_em": float(np.mean(ems)) if ems else None,
        "answer_f1": float(np.mean(f1s)) if f1s else None,
        "abstain_precision": precision,
        "abstain_recall": recall,
        "ingest_seconds": ingest_seconds,
        **latency_percentiles(latencies),
    }
