"""Evaluation protocols.

Dated documents are always learned on their publication day (a replay), so questions that ask
"as of" a day mean the same under every protocol.

- ``static``: index every document, then ask every question.
- ``incremental``: ingest the dataset's time slices in order. After each slice: metrics on the
  questions answerable so far; metrics on the questions about earlier slices (stability, including
  how many answers changed); the cost of the update against rebuilding from scratch.
- ``as-of``: replay documents with their publication dates as ingest times, then ask each question
  as of the day before any of its evidence was published (evidence found then is leakage) and as
  of the day all of it was (normal metrics); questions that carry their own ``as_of`` are asked as
  of that day, unanswerable ones with everything known.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np

from tgrag.model import Document
from tgrag.timex import parse_date

from .datasets import Dataset
from .datasets.base import QAItem
from .judge import Judge, judge_answer
from .metrics import abstain_scores, answer_em, answer_f1, evidence_recall
from .systems import System

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Outcome:
    """One question run by one system."""

    id: str
    type: str
    answerable: bool
    answer: str
    abstained: bool
    latency_ms: float
    context_tokens: int
    answer_em: float | None
    answer_f1: float | None
    evidence_recall: float | None
    llm_judge: float | None = None


def ask(
    system: System,
    items: Sequence[QAItem],
    budget: int,
    judge: Judge | None = None,
    as_of: Callable[[QAItem], date | None] | None = None,
    progress: Progress | None = None,
) -> list[Outcome]:
    outcomes = []
    for item in items:
        when = as_of(item) if as_of is not None else _item_date(item, "as_of")
        out = system.run(item.question, budget, as_of=when, now=_item_date(item, "now"))
        golds = item.golden_answers
        outcomes.append(
            Outcome(
                id=item.id,
                type=str(item.metadata.get("type", "all")),
                answerable=item.answerable,
                answer=out.answer,
                abstained=out.abstained,
                latency_ms=out.retrieval_seconds * 1000.0,
                context_tokens=out.context_tokens,
                answer_em=answer_em(out.answer, golds) if golds else None,
                answer_f1=answer_f1(out.answer, golds) if golds else None,
                evidence_recall=evidence_recall(item.evidence, out.context)
                if golds and item.evidence
                else None,
                llm_judge=judge_answer(judge, item.question, golds, out.answer) if judge and golds else None,
            )
        )
        if progress is not None:
            progress(1)
    return outcomes


def _item_date(item: QAItem, key: str) -> date | None:
    value = item.metadata.get(key)
    return parse_date(str(value)) if value else None


def summarize(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The named metrics over a group of outcomes (None where a metric has nothing to average)."""

    def mean(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return float(np.mean(present)) if present else None

    precision, recall = abstain_scores([o.abstained for o in outcomes], [not o.answerable for o in outcomes])
    latencies = np.array([o.latency_ms for o in outcomes]) if outcomes else np.zeros(1)
    result: dict[str, Any] = {
        "questions": len(outcomes),
        "evidence_recall": mean([o.evidence_recall for o in outcomes]),
        "answer_em": mean([o.answer_em for o in outcomes]),
        "answer_f1": mean([o.answer_f1 for o in outcomes]),
        "abstain_precision": precision if any(o.abstained for o in outcomes) else None,
        "abstain_recall": recall if any(not o.answerable for o in outcomes) else None,
        "latency_ms_p50": float(np.percentile(latencies, 50)),
        "latency_ms_p95": float(np.percentile(latencies, 95)),
        "context_tokens": mean([float(o.context_tokens) for o in outcomes]),
    }
    judged = mean([o.llm_judge for o in outcomes])
    if judged is not None:
        result["llm_judge"] = judged
    return result


def by_type(outcomes: Sequence[Outcome]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[o.type].append(o)
    return {t: summarize(g) for t, g in sorted(groups.items())}


def publication_time(doc: Document) -> datetime:
    """When a document became known: noon UTC on its publication day (now for undated documents)."""
    if doc.date is None:
        return datetime.now(timezone.utc)
    return datetime(doc.date.year, doc.date.month, doc.date.day, 12, tzinfo=timezone.utc)


def static(
    system: System,
    dataset: Dataset,
    budget: int,
    judge: Judge | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    ingest_seconds = system.build(dataset.documents, ingested_at=publication_time)
    outcomes = ask(system, dataset.items, budget, judge, progress=progress)
    return {
        "ingest_seconds": ingest_seconds,
        "overall": summarize(outcomes),
        "by_type": by_type(outcomes),
        "latency_ms": [o.latency_ms for o in outcomes],
        "outcomes": [asdict(o) for o in outcomes],
    }


def incremental(
    make_system: Callable[[], System],
    dataset: Dataset,
    budget: int,
    judge: Judge | None = None,
    rebuild: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    system = make_system()
    slices: list[dict[str, Any]] = []
    previous: dict[str, str] = {}  # question id -> what was said at the last evaluation
    outcomes: list[Outcome] = []
    slice_of = {item.id: dataset.slice_of(item) for item in dataset.items}
    seen: list[Document] = []
    for k, (label, _) in enumerate(dataset.slices):
        documents = dataset.slice_documents(k)
        seen += documents
        update_seconds = system.build(documents, ingested_at=publication_time)
        rebuild_seconds = _rebuild(make_system, seen) if rebuild else None
        so_far = [i for i in dataset.items if slice_of[i.id] <= k]
        outcomes = ask(system, so_far, budget, judge, progress=progress)
        earlier = [o for o in outcomes if slice_of[o.id] < k]
        changed = [o for o in earlier if o.id in previous and previous[o.id] != _said(o)]
        slices.append(
            {
                "slice": k,
                "label": label,
                "documents": len(documents),
                "update_seconds": update_seconds,
                "rebuild_seconds": rebuild_seconds,
                "so_far": summarize(outcomes),
                "earlier": {**summarize(earlier), "answers_changed": len(changed)} if earlier else None,
            }
        )
        previous = {o.id: _said(o) for o in outcomes}
    system.close()
    return {
        "ingest_seconds": slices[0]["update_seconds"] if slices else 0.0,
        "update_seconds": float(sum(s["update_seconds"] for s in slices[1:])),
        "rebuild_seconds": float(sum(s["rebuild_seconds"] for s in slices[1:])) if rebuild else None,
        "overall": summarize(outcomes),
        "by_type": by_type(outcomes),
        "slices": slices,
        "latency_ms": [o.latency_ms for o in outcomes],
        "outcomes": [asdict(o) for o in outcomes],
    }


def _said(outcome: Outcome) -> str:
    """What a system said, for stability: its answer, or that it abstained (whatever the reason's wording)."""
    return "<abstained>" if outcome.abstained else outcome.answer


def _rebuild(make_system: Callable[[], System], documents: list[Document]) -> float:
    fresh = make_system()
    try:
        return fresh.build(documents, ingested_at=publication_time)
    finally:
        fresh.close()


def as_of(
    system: System,
    dataset: Dataset,
    budget: int,
    judge: Judge | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    dated = [d for d in dataset.documents if d.date is not None]
    if len(dated) < len(dataset.documents):
        raise ValueError(
            f"the as-of protocol needs a publication date on every document ({dataset.name} lacks some)"
        )
    ingest_seconds = system.build(
        sorted(dated, key=lambda d: d.date or date.min), ingested_at=publication_time
    )
    published: dict[str, date] = {d.key: d.date for d in dated if d.key and d.date}

    def evidence_days(item: QAItem) -> list[date]:
        """Publication days of ``evidence_docs``, the documents that first stated each piece of the
        question's evidence (empty if any is unknown)."""
        keys = list(item.metadata.get("evidence_docs") or ())
        days = [published[k] for k in keys if k in published]
        return days if days and len(days) == len(keys) else []

    def evidence_day(item: QAItem) -> date | None:
        """The day the question became answerable: all of its evidence had been published."""
        days = evidence_days(item)
        return max(days) if days else None

    def day_before(item: QAItem) -> date | None:
        """The day before any of its evidence was published: nothing of it may be found then."""
        days = evidence_days(item)
        return min(days) - timedelta(days=1) if days else None

    own = [i for i in dataset.items if i.metadata.get("as_of")]
    timed = [i for i in dataset.items if i.answerable and not i.metadata.get("as_of") and evidence_day(i)]
    before = ask(system, timed, budget, None, as_of=day_before, progress=progress)
    after = ask(system, timed, budget, judge, as_of=evidence_day, progress=progress)
    asked_as_of = ask(system, own, budget, judge, progress=progress) if own else []
    # Unanswerable questions are asked with everything known: abstaining is measured here too.
    unanswerable = [i for i in dataset.items if not i.answerable and not i.metadata.get("as_of")]
    declined = ask(system, unanswerable, budget, progress=progress)
    answered = after + asked_as_of + declined
    leak = [o.evidence_recall for o in before if o.evidence_recall is not None]
    return {
        "ingest_seconds": ingest_seconds,
        "overall": summarize(answered),
        "by_type": by_type(answered),
        "before_publication": {
            **summarize(before),
            # evidence found before it was published: a system that cannot look back in time leaks
            "leakage": float(np.mean(leak)) if leak else None,
            "abstained": float(np.mean([o.abstained for o in before])) if before else None,
        },
        "latency_ms": [o.latency_ms for o in after],
        "outcomes": [asdict(o) for o in answered],
    }


PROTOCOLS = ("static", "incremental", "as-of")
