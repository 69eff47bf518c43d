"""Core benchmark: ingest cost, incremental update cost, retrieval latency, and quality against
plain chunk baselines, all in one run on the same machine.

    python benchmarks/core.py [--data ../shared/data/ect-qa-2024] [--timeqa FILE] [--quick] [--budget 512]

Measured:
- ingest of all of ECT-QA 2024 with the offline extractor: seconds, facts, entities, time nodes;
- incremental: Q1-Q3 ingested, then Q4; Q4's cost against ingesting Q4 into an empty store, and the
  number of summaries recomputed against the number of dirty time nodes;
- retrieval latency (p50/p95) over the ECT-QA questions on the full store;
- quality at the same evidence token budget: evidence recall on ECT-QA and answer F1 on TimeQA for
  tgrag, dense chunks (same embedder, faiss flat) and BM25 chunks, read by the same extractive reader.
``--quick`` uses every 5th TimeQA page; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import emit, run_info  # noqa: E402

from eval import protocols  # noqa: E402
from eval.datasets import Dataset, by_period, ectqa, in_parts, timeqa  # noqa: E402
from eval.systems import SYSTEMS, TGRAGSystem  # noqa: E402
from tgrag.embed import create_embedder  # noqa: E402
from tgrag.sdk import TemporalRAG  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ect-qa-2024"
DEFAULT_TIMEQA = ROOT.parent / "shared" / "data" / "timeqa" / "human_annotated_train.json.gz"


def ingest_full(documents: list, folder: Path) -> dict[str, Any]:
    with TemporalRAG.open(folder) as rag:
        report = rag.ingest(documents)
        stats = rag.stats()
    return {
        "ingest_seconds": round(report.seconds, 2),
        "facts": stats["facts"],
        "entities": stats["entities"],
        "time_nodes": stats["time_nodes"],
        "documents": stats["documents"],
    }


def incremental(documents: list, folder: Path) -> dict[str, Any]:
    """Q1-Q3 then Q4, against Q4 alone into an empty store."""
    early = [d for d in documents if d.period.start.month < 10]
    q4 = [d for d in documents if d.period.start.month >= 10]
    with TemporalRAG.open(folder / "incremental") as rag:
        rag.ingest(early)
        update = rag.ingest(q4)
    with TemporalRAG.open(folder / "q4-only") as rag:
        alone = rag.ingest(q4)
    return {
        "q4_documents": len(q4),
        "update_seconds": round(update.seconds, 2),
        "q4_into_empty_seconds": round(alone.seconds, 2),
        "incremental_cost_ratio": round(update.seconds / alone.seconds, 3),
        "summaries_recomputed": update.summaries_recomputed,
        "dirty_nodes": update.dirty_nodes,
    }


def latency(folder: Path, questions: list[str], repeats: int) -> dict[str, float]:
    import numpy as np

    with TemporalRAG.open(folder) as rag:
        for q in questions[:5]:
            rag.retrieve(q)  # warm caches
        seconds = []
        for _ in range(repeats):
            for q in questions:
                started = time.perf_counter()
                rag.retrieve(q)
                seconds.append(time.perf_counter() - started)
    ms = np.asarray(seconds) * 1000
    return {
        "latency_ms_p50": round(float(np.percentile(ms, 50)), 2),
        "latency_ms_p95": round(float(np.percentile(ms, 95)), 2),
    }


def quality(dataset: Dataset, budget: int, store: Path | None) -> dict[str, dict[str, Any]]:
    out = {}
    name = dataset.name
    for system_name in ("tgrag", "dense", "bm25"):
        system = TGRAGSystem(store) if system_name == "tgrag" and store else SYSTEMS.create(system_name)
        try:
            result = protocols.static(system, dataset, budget)
        finally:
            system.close()
        scores = {**result["overall"], "ingest_seconds": result["ingest_seconds"]}
        out[system_name] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores.items()}
        print(
            f"  {name:7s} {system_name:6s} "
            + " ".join(f"{k}={v}" for k, v in out[system_name].items() if k != "system"),
            flush=True,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ECT-QA folder")
    parser.add_argument("--timeqa", type=Path, default=DEFAULT_TIMEQA, help="TimeQA pages file")
    parser.add_argument("--quick", action="store_true", help="a TimeQA subset; finishes within 5 minutes")
    parser.add_argument("--budget", type=int, default=512, help="evidence token budget for every system")
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if not (args.data / "corpus.jsonl.gz").exists():
        print(f"ECT-QA not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    started = time.perf_counter()
    create_embedder("minilm").embed(["warm up the model"])  # model loading is not ingest time
    documents = ectqa.load_corpus(args.data)
    items = ectqa.load_questions(args.data / "questions.jsonl")
    result: dict[str, Any] = {
        **run_info(args.quick),
        "budget_tokens": args.budget,
    }
    with tempfile.TemporaryDirectory(prefix="tgrag-bench-") as tmp:
        folder = Path(tmp)
        print(f"ingesting {len(documents)} ECT-QA transcripts ...", flush=True)
        result.update(ingest_full(documents, folder / "full"))
        print(f"  {result}", flush=True)
        print("incremental update: Q1-Q3, then Q4; and Q4 alone ...", flush=True)
        result.update(incremental(documents, folder))
        print("retrieval latency ...", flush=True)
        result.update(latency(folder / "full", [i.question for i in items], repeats=1 if args.quick else 3))
        print("quality at the same budget ...", flush=True)
        ect = quality(Dataset("ectqa", documents, items, by_period(documents)), args.budget, folder / "full")
        result["ectqa"] = ect
        if args.timeqa.exists():
            pages, questions = timeqa.load(args.timeqa, every=5 if args.quick else 1)
            result["timeqa"] = quality(
                Dataset("timeqa", pages, questions, in_parts(len(pages), 1)), args.budget, None
            )
            result["timeqa_pages"] = len(pages)
    for key in ("evidence_recall", "abstain_recall"):
        result[f"ectqa_{key}_tgrag"] = ect["tgrag"][key]
        result[f"ectqa_{key}_dense"] = ect["dense"][key]
    if "timeqa" in result:
        result["timeqa_answer_f1_tgrag"] = result["timeqa"]["tgrag"]["answer_f1"]
        result["timeqa_answer_f1_dense"] = result["timeqa"]["dense"]["answer_f1"]
    result["seconds"] = round(time.perf_counter() - started, 1)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
