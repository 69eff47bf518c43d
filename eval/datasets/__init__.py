"""Datasets for the evaluation harness, behind one loader registry.

A ``Dataset`` is documents, questions and time slices (documents grouped in the order they would
arrive). Every loader takes paths, so a different questions file can run over the same corpus.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tgrag.model import Document
from tgrag.registry import Registry

from .base import QAItem


@dataclass
class Dataset:
    name: str
    documents: list[Document]
    items: list[QAItem]
    slices: list[tuple[str, list[int]]]  # (label, document indices), in arrival order
    source: dict[str, str] = field(default_factory=dict)  # paths and options, for the report

    def slice_of(self, item: QAItem) -> int:
        """The first slice after which the question can be answered (unanswerable ones: the first).

        From ``metadata["slice"]``, else the slices holding ``metadata["evidence_docs"]`` (document
        keys), else those of ``metadata["periods"]`` (slice labels); the last slice when unknown.
        """
        if not item.answerable:
            return 0
        meta = item.metadata
        if isinstance(meta.get("slice"), int):
            return int(meta["slice"])
        keys = set(meta.get("evidence_docs") or ())
        if keys:
            found = [
                k
                for k, (_, docs) in enumerate(self.slices)
                if any(self.documents[i].key in keys for i in docs)
            ]
            if found:
                return max(found)
        periods = set(meta.get("periods") or ())
        found = [k for k, (label, _) in enumerate(self.slices) if label in periods]
        return max(found) if found else len(self.slices) - 1

    def slice_documents(self, k: int) -> list[Document]:
        return [self.documents[i] for i in self.slices[k][1]]


def by_period(documents: Sequence[Document]) -> list[tuple[str, list[int]]]:
    """Slices by each document's reported period (or publication quarter), in time order."""
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(documents):
        if d.period is not None:
            label = d.period.label
        elif d.date is not None:
            label = f"{d.date.year:04d}-Q{(d.date.month - 1) // 3 + 1}"
        else:
            label = "undated"
        groups.setdefault(label, []).append(i)
    return sorted(groups.items())


def in_parts(count: int, parts: int) -> list[tuple[str, list[int]]]:
    """``count`` documents in ``parts`` consecutive groups, for corpora with no time order."""
    parts = max(1, min(parts, count))
    bounds = [round(k * count / parts) for k in range(parts + 1)]
    return [(f"part {k + 1} of {parts}", list(range(bounds[k], bounds[k + 1]))) for k in range(parts)]


DATASETS: Registry[Dataset] = Registry("dataset")


@DATASETS.register("ectqa")
def _ectqa(arg: str | None, *, data: Path, questions: Path | None = None, **_: object) -> Dataset:
    from . import ectqa

    docs = ectqa.load_corpus(data)
    qfile = questions or Path(data) / "questions.jsonl"
    # A questions file may be ECT-QA's own format or FlashRAG's; the first record tells which.
    items = _questions_from(qfile) if _is_flashrag(qfile) else ectqa.load_questions(qfile)
    return Dataset("ectqa", docs, items, by_period(docs), {"data": str(data), "questions": str(qfile)})


@DATASETS.register("timeqa")
def _timeqa(
    arg: str | None, *, data: Path, questions: Path | None = None, every: int = 1, parts: int = 4, **_: object
) -> Dataset:
    from . import timeqa

    path = Path(data)
    if path.is_dir():
        path = path / "human_annotated_train.json.gz"
    docs, items = timeqa.load(path, every=every)
    if questions is not None:
        items = _questions_from(questions)
    return Dataset(
        "timeqa", docs, items, in_parts(len(docs), parts), {"data": str(path), "every": str(every)}
    )


@DATASETS.register("flashrag")
def _flashrag(arg: str | None, *, data: Path, questions: Path | None = None, **_: object) -> Dataset:
    from . import flashrag

    if questions is None:
        raise ValueError(
            "the flashrag dataset needs --questions FILE (FlashRAG jsonl) beside its corpus --data"
        )
    docs = flashrag.load_corpus(data)
    return Dataset(
        "flashrag",
        docs,
        flashrag.load_questions(questions),
        by_period(docs),
        {"data": str(data), "questions": str(questions)},
    )


@DATASETS.register("world")
def _world(
    arg: str | None,
    *,
    data: Path | None = None,
    questions: Path | None = None,
    scale: str = "small",
    seed: int = 0,
    **_: object,
) -> Dataset:
    from . import world

    if data is not None and Path(data).exists():
        generated = world.load(Path(data))
    else:
        if scale not in world.SCALES:
            raise ValueError(f"unknown world scale {scale!r}; known: {', '.join(world.SCALES)}")
        config = world.SCALES[scale]
        from dataclasses import replace

        generated = world.generate(replace(config, seed=seed))
    items = _questions_from(questions) if questions is not None else generated.questions
    slices = [(_publication_quarter(generated.documents[ix[0]]), list(ix)) for ix in generated.slices if ix]
    source = {"data": str(data) if data else f"generated: scale={scale} seed={seed}"}
    return Dataset("world", generated.documents, items, slices, source)


def _publication_quarter(doc: Document) -> str:
    return (
        "undated" if doc.date is None else f"published {doc.date.year:04d}-Q{(doc.date.month - 1) // 3 + 1}"
    )


def _is_flashrag(path: Path) -> bool:
    import json

    with open(path, encoding="utf-8") as fh:
        first = next((line for line in fh if line.strip()), "{}")
    return "golden_answers" in json.loads(first)


def _questions_from(path: Path) -> list[QAItem]:
    from . import flashrag

    return flashrag.load_questions(path)


def load_dataset(name: str, **options: object) -> Dataset:
    return DATASETS.create(name, **options)


__all__ = ["DATASETS", "Dataset", "QAItem", "by_period", "in_parts", "load_dataset"]
