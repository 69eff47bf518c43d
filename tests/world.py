"""A small generated corpus for tests: companies reporting quarterly, CEOs changing hands.

Deterministic by seed. Every question carries its gold answer and the gold sentence that states it,
so tests can check retrieval (is the gold sentence in the evidence?) and answers (is the gold answer
the answer?) without hand-written expectations.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from tgrag.model import Document, TimeInterval

COMPANIES = [
    ("Asteria Labs", "ASTL"),
    ("Borealis Shipping", "BRLS"),
    ("Cobalt Ridge Mining", "CBRM"),
    ("Dunmore Textiles", "DNMT"),
]
FIRST = ["Helena", "Marcus", "Ingrid", "Tobias", "Selma", "Rafael", "Noor", "Viktor", "Amara", "Joaquin"]
LAST = ["Castellano", "Whitford", "Okonkwo", "Lindqvist", "Moreau", "Takahashi", "Brennan", "Farouk"]
ORDINAL = {1: "first", 2: "second", 3: "third", 4: "fourth"}

REVENUE = [
    "{c} reported revenue of ${v} million in the {o} quarter of {y}.",
    "Revenue for the {o} quarter of {y} was ${v} million at {c}.",
    "In Q{q} {y}, {c} posted revenue of ${v} million.",
]
MARGIN = [
    "Operating margin was {m}% in the {o} quarter.",
    "The operating margin reached {m}% this quarter.",
]
CEO = ["{p}, chief executive officer of {c}, presented the results."]
FILLER = [
    "We thank our employees for their hard work.",
    "Our teams stayed focused on customers and execution.",
    "We continue to invest in the long-term health of the business.",
]


@dataclass(frozen=True)
class Question:
    text: str
    answer: str  # "" for unanswerable
    evidence: str  # the gold sentence; "" for unanswerable
    kind: str


@dataclass
class World:
    documents: list[Document] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    revenue: dict[tuple[str, int, int], int] = field(default_factory=dict)
    ceo: dict[tuple[str, int], str] = field(default_factory=dict)

    def slices(self) -> list[list[Document]]:
        """Documents grouped by reported quarter, in time order (the incremental protocol)."""
        by_period: dict[str, list[Document]] = {}
        for d in self.documents:
            assert d.period is not None
            by_period.setdefault(d.period.label, []).append(d)
        return [by_period[k] for k in sorted(by_period)]


def generate(seed: int = 7, years: tuple[int, ...] = (2023, 2024), companies: int = 3) -> World:
    rng = random.Random(seed)
    world = World()
    names = [f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(20)]
    names = list(dict.fromkeys(names))
    for ci, (company, ticker) in enumerate(COMPANIES[:companies]):
        ceos = {y: names[(ci * 3 + k) % len(names)] for k, y in enumerate(years)}
        for y in years:
            world.ceo[(company, y)] = ceos[y]
            for q in range(1, 5):
                v = rng.randint(120, 900)
                m = round(rng.uniform(4.0, 30.0), 1)
                world.revenue[(company, y, q)] = v
                rev = rng.choice(REVENUE).format(c=company, v=v, o=ORDINAL[q], y=y, q=q)
                mar = rng.choice(MARGIN).format(m=m, o=ORDINAL[q])
                ceo = CEO[0].format(p=ceos[y], c=company)
                lines = [rng.choice(FILLER), rev, mar, ceo, rng.choice(FILLER)]
                published = TimeInterval.quarter(y, q).end + timedelta(days=30 + ci)  # type: ignore[operator]
                world.documents.append(
                    Document(
                        text="\n".join(lines),
                        date=published,
                        period=TimeInterval.quarter(y, q),
                        subject=company,
                        aliases=(ticker,),
                        source=f"{ticker}-{y}-Q{q}.txt",
                        key=f"{ticker}-{y}-Q{q}",
                    )
                )
                world.questions.append(
                    Question(f"What was {company}'s revenue in Q{q} {y}?", f"${v} million", rev, "point")
                )
            world.questions.append(
                Question(
                    f"Who was the chief executive officer of {company} in {y}?",
                    ceos[y],
                    CEO[0].format(p=ceos[y], c=company),
                    "role",
                )
            )
    last = max(years)
    world.questions += [
        Question(f"What was {COMPANIES[0][0]}'s revenue in Q2 {last + 2}?", "", "", "out_of_time"),
        Question("What was Zephyr Dynamics' revenue in Q1 2024?", "", "", "unknown_entity"),
    ]
    return world


def publication_day(doc: Document) -> date:
    assert doc.date is not None
    return doc.date
