"""``make demo``: ingest a small corpus in time slices, then answer time-sensitive questions.

The corpus is fictional (two companies over five quarters: figures move, a CEO hands over, a
figure is restated). Each slice is ingested with its publication date as the ingest time, so the
as-of question at the end shows what was known before the restatement.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import date, datetime, timezone
from pathlib import Path

from .model import Document, TimeInterval

_NW = ("Northwind Robotics", ("NWRB", "Northwind"))
_LF = ("Lumen Foods", ("LUMN", "Lumen"))


def _call(company: tuple[str, tuple[str, ...]], year: int, quarter: int, day: date, text: str) -> Document:
    return Document(
        text=text,
        date=day,
        period=TimeInterval.quarter(year, quarter),
        subject=company[0],
        aliases=company[1],
        source=f"{company[1][0]}-{year}-Q{quarter}-call.txt",
    )


CORPUS: list[Document] = [
    _call(
        _NW,
        2023,
        4,
        date(2024, 2, 8),
        """Operator
Good afternoon and welcome to the Northwind Robotics fourth quarter call.
Maria Okafor
--
Chief Executive Officer
Northwind Robotics reported fourth quarter revenue of $410 million, up 12% from a year ago.
Warehouse automation orders reached a record of $520 million in the quarter.
Gross margin was 38.5% in the fourth quarter.
For fiscal 2024 we expect revenue between $1.8 billion and $1.9 billion.""",
    ),
    _call(
        _LF,
        2023,
        4,
        date(2024, 2, 14),
        """Priya Natarajan
--
Chief Financial Officer
Lumen Foods net sales were $1.1 billion in the fourth quarter of 2023.
Operating margin was 7.9% in the quarter, helped by lower freight costs.""",
    ),
    _call(
        _NW,
        2024,
        1,
        date(2024, 5, 7),
        """Maria Okafor
--
Chief Executive Officer
Revenue was $432 million in the first quarter of 2024, up 9% from a year ago.
Gross margin improved to 39.2% in the quarter.
We launched the Atlas picking arm in March 2024 and shipped 1,200 units in the quarter.""",
    ),
    _call(
        _LF,
        2024,
        1,
        date(2024, 5, 9),
        """Priya Natarajan
--
Chief Financial Officer
Lumen Foods net sales were $1.2 billion in the first quarter of 2024.
Operating margin was 8.4% in the first quarter.
We opened 14 new stores in the quarter.""",
    ),
    _call(
        _NW,
        2024,
        2,
        date(2024, 8, 6),
        """Maria Okafor
--
Chief Executive Officer
Second quarter revenue was $455 million.
Gross margin was 40.1% in the second quarter.
Northwind Robotics opened a plant in Monterrey in June 2024.
Maria Okafor will step down as chief executive officer at the end of the third quarter; the board named Daniel Reyes as her successor.""",
    ),
    _call(
        _LF,
        2024,
        2,
        date(2024, 8, 8),
        """Priya Natarajan
--
Chief Financial Officer
Lumen Foods net sales were $1.3 billion in the second quarter of 2024.
Operating margin was 9.1% in the second quarter, a record for the company.""",
    ),
    _call(
        _NW,
        2024,
        3,
        date(2024, 11, 5),
        """Daniel Reyes
--
Chief Executive Officer
Daniel Reyes became chief executive officer of Northwind Robotics in September 2024.
Third quarter revenue was $441 million, down from last quarter because a customer project slipped.
Gross margin was 39.0% in the third quarter.""",
    ),
    _call(
        _LF,
        2024,
        3,
        date(2024, 11, 7),
        """Priya Natarajan
--
Chief Financial Officer
Lumen Foods net sales were $1.25 billion in the third quarter of 2024.
Operating margin was 8.8% in the third quarter.""",
    ),
    Document(
        text="Northwind Robotics restated its second quarter 2024 revenue to $449 million from $455 million "
        "after an audit review of a distributor contract.",
        date=date(2024, 11, 20),
        subject="Northwind Robotics",
        aliases=("NWRB",),
        source="news-2024-11-20-northwind-restatement.txt",
    ),
]

QUESTIONS: list[tuple[str, dict[str, object]]] = [
    ("What was Northwind Robotics' revenue in Q2 2024?", {}),
    ("What was Northwind Robotics' revenue in Q2 2024?", {"as_of": date(2024, 9, 1)}),
    ("Who was the chief executive officer of Northwind Robotics in the first quarter of 2024?", {}),
    ("Who became chief executive officer of Northwind Robotics in September 2024?", {}),
    ("In which quarter of 2024 did Lumen Foods have the highest operating margin?", {}),
    ("What was Lumen Foods' operating margin last quarter?", {"now": date(2024, 11, 15)}),
    ("What was Northwind Robotics' gross margin in 2026?", {}),
    ("What was Acme Dynamics' revenue in Q1 2024?", {}),
]


def _slices() -> list[tuple[str, list[Document]]]:
    by_quarter: dict[str, list[Document]] = {}
    for doc in CORPUS:
        assert doc.date is not None
        label = f"{doc.date.year}-Q{(doc.date.month - 1) // 3 + 1}"
        by_quarter.setdefault(label, []).append(doc)
    return sorted(by_quarter.items())


def run_demo(store: Path | None = None) -> int:
    from .sdk import TemporalRAG

    with tempfile.TemporaryDirectory(prefix="tgrag-demo-") as tmp:
        path = Path(store) if store else Path(tmp) / "store"
        print(f"tgrag demo: store at {path}")
        with TemporalRAG.open(path) as rag:
            for label, docs in _slices():
                day = max(d.date for d in docs if d.date is not None)
                at = datetime(day.year, day.month, day.day, 18, tzinfo=timezone.utc)
                report = rag.ingest(docs, ingested_at=at)
                print(
                    f"slice published in {label}: {len(report.added)} documents, {report.facts_created} new facts, "
                    f"{report.summaries_recomputed} time summaries recomputed ({report.seconds:.2f} s)"
                )
            stats = rag.stats()
            print(
                f"\nstore: {stats['documents']} documents, {stats['facts']} facts, {stats['entities']} entities, "
                f"{stats['time_nodes']} time nodes\n"
            )
            for question, options in QUESTIONS:
                extra = ", ".join(f"{k}={v}" for k, v in options.items())
                print(f"Q: {question}" + (f"   [{extra}]" if extra else ""))
                answer = rag.answer(question, **options)  # type: ignore[arg-type]
                print(f"A: {answer.text}")
                for c in answer.citations[:3]:
                    print(f"   - [{c.time}] {c.text}  ({c.source})")
                print()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo())
