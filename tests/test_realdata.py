"""On the real evaluation data in ../shared/data, when present (skipped otherwise).

Small slices keep these fast; the full comparison is benchmarks/core.py (docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eval import protocols
from eval.datasets import Dataset, ectqa, in_parts, timeqa
from eval.metrics import evidence_recall
from eval.systems import SYSTEMS
from tgrag.sdk import TemporalRAG

from .conftest import data_dir

pytestmark = pytest.mark.realdata

COMPANIES = ("Marathon Petroleum Corporation", "EPAM Systems Inc", "Skechers U.S.A., Inc.")


@pytest.fixture(scope="module")
def ect_slice(tmp_path_factory: pytest.TempPathFactory) -> tuple[TemporalRAG, list, list]:
    folder = data_dir("ect-qa-2024")
    documents = [d for d in ectqa.load_corpus(folder) if d.subject in COMPANIES]
    items = [
        i
        for i in ectqa.load_questions(folder / "questions.jsonl")
        if any(c.split(",")[0].split(" ")[0].lower() in i.question.lower() for c in COMPANIES)
    ]
    rag = TemporalRAG.open(tmp_path_factory.mktemp("ect") / "store")
    report = rag.ingest(documents)
    assert len(report.added) == len(documents) == 12  # 3 companies x 4 quarters
    return rag, documents, items


def test_ectqa_transcripts_become_quarter_anchored_facts(ect_slice: tuple[TemporalRAG, list, list]) -> None:
    rag = ect_slice[0]
    stats = rag.stats()
    assert stats["facts"] > 500 and stats["entities"] > 20
    labels = {n.id for n in rag.workspace.store.time_nodes()}
    assert {"2024", "2024-Q1", "2024-Q2", "2024-Q3", "2024-Q4"} <= labels
    result = rag.retrieve(
        "What were Marathon Petroleum Corporation's refining operating costs in the second quarter of 2024?"
    )
    assert not result.abstained
    assert any("4.97 per barrel" in e.text for e in result.evidence)
    assert all(e.time.overlaps(result.scope.interval) for e in result.evidence)


def test_ectqa_evidence_recall_beats_dense_chunks(ect_slice: tuple[TemporalRAG, list, list]) -> None:
    rag, documents, items = ect_slice
    answerable = [i for i in items if i.answerable and i.evidence]
    assert len(answerable) >= 5
    ours = np.mean(
        [
            evidence_recall(i.evidence, [e.text for e in rag.retrieve(i.question, budget=512).evidence])
            for i in answerable
        ]
    )
    dense = SYSTEMS.create("dense")
    dense.build(documents)
    theirs = np.mean([evidence_recall(i.evidence, dense.run(i.question, 512).context) for i in answerable])
    assert ours > theirs + 0.2, (ours, theirs)


def test_ectqa_out_of_scope_questions_abstain(ect_slice: tuple[TemporalRAG, list, list]) -> None:
    rag, _, items = ect_slice
    out_of_scope = [i for i in items if i.metadata["reasoning_type"] == "unanswerable|out-of-scope"]
    assert out_of_scope
    abstained = [rag.retrieve(i.question).abstained for i in out_of_scope]
    assert np.mean(abstained) >= 0.5


def test_timeqa_answer_f1_beats_dense_chunks() -> None:
    path = data_dir("timeqa") / "human_annotated_train.json.gz"
    documents, items = timeqa.load(path, every=20)
    results = {}
    for name in ("tgrag", "dense"):
        system = SYSTEMS.create(name)
        try:
            dataset = Dataset("timeqa", documents, items, in_parts(len(documents), 1))
            results[name] = protocols.static(system, dataset, 512)["overall"]
        finally:
            system.close()
    assert results["tgrag"]["answer_f1"] > results["dense"]["answer_f1"], results


def test_cli_reads_both_formats(tmp_path: Path) -> None:
    """The real files' formats through the command line (slices copied to a temporary folder)."""
    import gzip
    import json

    from tgrag.cli import main

    ect = data_dir("ect-qa-2024") / "corpus.jsonl.gz"
    with gzip.open(ect, "rt", encoding="utf-8") as fh:
        lines = [next(fh) for _ in range(6)]
    ect_slice = tmp_path / "corpus.jsonl.gz"
    with gzip.open(ect_slice, "wt", encoding="utf-8") as fh:
        fh.writelines(lines)
    assert main(["-q", "ingest", "--store", str(tmp_path / "ect"), "--format", "ectqa", str(ect_slice)]) == 0
    with TemporalRAG.open(tmp_path / "ect") as rag:
        assert rag.stats()["documents"] == 6
        assert all(d.source and d.source.endswith(".json") for d in rag.documents())

    pages = timeqa.load_pages(data_dir("timeqa") / "human_annotated_train.json.gz")[:8]
    tq_slice = tmp_path / "pages.json"
    tq_slice.write_text(json.dumps(pages))
    assert main(["-q", "ingest", "--store", str(tmp_path / "tq"), "--format", "timeqa", str(tq_slice)]) == 0
    with TemporalRAG.open(tmp_path / "tq") as rag:
        assert rag.stats()["documents"] == len({p["link"] for p in pages})
