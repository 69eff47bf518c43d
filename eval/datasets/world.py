"""A generated evolving world: companies that report quarterly, change leaders, names and owners.

Deterministic by seed (one ``random.Random`` per world, never the global one). Generation runs in
three passes: the *model* (values per quarter, tenures, events, corrections) is drawn first; the
*questions* are planned from the model, naming the statements they need as evidence; then the
*documents* are written in publication order, and the sentences the questions named are caught as
they are written, so evidence is verbatim by construction and no sentence index is kept at scale.

Timeline: a quarterly report is published 20-50 days after its quarter ends; news (leadership
changes, launches, acquisitions, renamings, restatements) comes 52-88 days into a quarter, so it
always falls after the reports of the previous quarter and before those of its own. A restatement
of quarter q is published in quarter q+1, before any report that could cite q as "last quarter" or
"a year ago", so every cited figure is the ground truth at the time it is printed.
"""

from __future__ import annotations

import bisect
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from tgrag.model import Document
from tgrag.readers import document_from_record

from . import world_text as wt
from .base import QAItem

QUESTION_TYPES = ("point", "before", "after", "between", "relative", "comparison", "enumeration", "as_of", "unanswerable")  # fmt: skip

__all__ = ["QUESTION_TYPES", "SCALES", "GroundFact", "World", "WorldConfig", "generate", "load", "save"]


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0
    companies: int = 4
    start_year: int = 2021
    quarters: int = 8  # reporting quarters, from Q1 of start_year
    questions_per_type: int = 20  # cap per question type
    distractors: int = 2  # filler/distractor sentences per document
    metrics: tuple[str, ...] = tuple(wt.METRICS)
    p_role_change: float = 0.05  # per role, company and quarter
    p_launch: float = 0.08  # per company and quarter
    p_correction: float = 0.04  # per report
    p_rename: float = 0.01  # per company and quarter
    p_acquisition: float = 0.008  # per company and quarter
    p_relative: float = 0.35  # metric sentences citing last quarter's or a year-ago figure
    p_latest_name: float = 0.2  # questions naming a renamed company by its latest name
    keep_facts: bool = True  # False: count ground facts without keeping them (the huge scales)

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in wt.METRICS]
        if unknown or not self.metrics:
            raise ValueError(f"unknown metrics {unknown}: choose from {sorted(wt.METRICS)}")
        if self.companies < 1 or self.quarters < 1:
            raise ValueError("a world needs at least one company and one quarter")


SCALES: dict[str, WorldConfig] = {
    "tiny": WorldConfig(companies=2, quarters=4, start_year=2023, questions_per_type=5, p_launch=0.05),
    "small": WorldConfig(companies=6, quarters=12, start_year=2021),
    "medium": WorldConfig(companies=40, quarters=24, start_year=2019, questions_per_type=50),
    "large": WorldConfig(companies=250, quarters=40, start_year=2015, questions_per_type=100),
    "xl": WorldConfig(companies=2600, quarters=64, start_year=2009, questions_per_type=200, keep_facts=False),
}


@dataclass(frozen=True)
class GroundFact:
    """What the world knows, independent of wording: the latest statement of it wins."""

    subject: str  # the company's name in the stating document
    relation: str  # a metric, a role, or an event ("acquired", "launched", "formerly named")
    value: str  # as printed: "$412 million", "12.5%", "3,200 employees", a person
    period: str  # "2023-Q3"
    doc_key: str  # the document stating it


@dataclass
class World:
    config: WorldConfig
    documents: list[Document]  # in publication order
    slices: list[list[int]]  # document indices by publication quarter, in time order
    questions: list[QAItem]
    facts: list[GroundFact] = field(default_factory=list)  # empty unless config.keep_facts
    fact_total: int = 0

    def fact_count(self) -> int:
        return max(self.fact_total, len(self.facts))


# ---- drawing the model -------------------------------------------------------------------------
def _company(
    rng: random.Random, cfg: WorldConfig, bases: set[str], tickers: set[str], people: set[str]
) -> wt.Company:
    name = wt.company_name(rng, bases)
    values: dict[str, list[int]] = {}
    for key in cfg.metrics:
        m = wt.METRICS[key]
        start = rng.randint(*m.start)
        if key == "net income" and "revenue" in values:  # a profit below the revenue it comes from
            start = max(1, values["revenue"][0] * rng.randint(3, 15) // 100)
        values[key] = m.walk(rng, start, cfg.quarters)
    roles = {r: [(0, wt.person_name(rng, people))] for r in wt.ROLES}
    return wt.Company(
        wt.ticker_for(name, rng, tickers),
        rng.choice(wt.INDUSTRIES),
        [(0, name)],
        values,
        roles,
        cfg.quarters - 1,
    )


class _ModelBuilder:
    """Draws the model; each event kind has one pass, then is forced once if chance gave none."""

    def __init__(self, cfg: WorldConfig, rng: random.Random) -> None:
        self.cfg, self.rng = cfg, rng
        self.bases: set[str] = set()
        self.tickers: set[str] = set()
        self.people: set[str] = set()
        self.products: set[str] = set()
        self.cos = [_company(rng, cfg, self.bases, self.tickers, self.people) for _ in range(cfg.companies)]
        self.events: list[wt.Event] = []
        self.corrections: dict[tuple[int, str, int], wt.Event] = {}
        n = cfg.quarters + 2
        self.qstart = [date(cfg.start_year + i // 4, 3 * (i % 4) + 1, 1).toordinal() for i in range(n)]

    def news_day(self, q: int) -> int:
        return self.qstart[q] + self.rng.randint(52, 88)

    def build(self) -> wt.Model:
        cfg, rng = self.cfg, self.rng
        if cfg.companies >= 3 and cfg.quarters >= 4:
            self._acquisitions(cfg.p_acquisition)
            if not any(e.kind == "acquisition" for e in self.events):
                self._acquire(rng.randrange(cfg.companies), cfg.quarters // 2 + 1)
        if cfg.companies >= 3 and cfg.quarters >= 2:
            before = len(self.events)
            self._per_quarter(1, cfg.p_rename, self._rename)
            if len(self.events) == before:
                self._forced(self._rename)
        for role in wt.ROLES:
            before = len(self.events)
            self._per_quarter(1, cfg.p_role_change, lambda ci, q, role=role: self._role(ci, q, role))
            if len(self.events) == before and cfg.quarters >= 2:
                self._forced(lambda ci, q, role=role: self._role(ci, q, role))
        self._per_quarter(0, cfg.p_launch, self._launch)
        before = len(self.events)
        self._per_quarter(0, cfg.p_correction, self._correct)
        if len(self.events) == before:
            self._forced(self._correct, first=0)
        for co in self.cos:
            co.report_day = [self.qstart[q + 1] + rng.randint(20, 50) for q in range(co.last_q + 1)]
        return wt.Model(cfg, self.cos, self.events, self.corrections, self.qstart)

    def _per_quarter(self, first: int, p: float, make: Any) -> None:
        for ci, co in enumerate(self.cos):
            for q in range(first, co.last_q + 1):
                if self.rng.random() < p:
                    make(ci, q)

    def _forced(self, make: Any, first: int = 1) -> None:
        """One event at a random company and quarter, so every world shows each kind."""
        ci = self.rng.randrange(len(self.cos))
        co = self.cos[ci]
        if co.last_q >= first:
            make(ci, self.rng.randint(first, co.last_q))

    def _acquisitions(self, p: float) -> None:
        for q in range(1, self.cfg.quarters):
            for ci, co in enumerate(self.cos):
                if co.last_q == self.cfg.quarters - 1 and self.rng.random() < p:
                    self._acquire(ci, q)

    def _acquire(self, ci: int, q: int) -> None:
        # the buyer still reports in q; a buyer is not itself bought in the same quarter
        buying = {e.ci for e in self.events if e.kind == "acquisition" and e.q == q}
        buyers = [i for i, c in enumerate(self.cos) if i != ci and c.last_q == self.cfg.quarters - 1]
        active = len(buyers) + 1
        if not buyers or ci in buying or active <= max(2, len(self.cos) // 2) or q < 1:
            return
        buyer = self.rng.choice(buyers)
        self.cos[ci].last_q = q - 1
        price = wt.METRICS["revenue"].fmt(self.rng.randint(200, 9000))
        self.events.append(wt.Event(self.news_day(q), "acquisition", buyer, q, (ci, price)))

    def _rename(self, ci: int, q: int) -> None:
        co = self.cos[ci]
        if q in co.renamed:
            return
        day, old, new = self.news_day(q), co.names[-1][1], wt.company_name(self.rng, self.bases)
        co.names.append((day, new))
        co.renamed[q] = old
        self.events.append(wt.Event(day, "rename", ci, q, (old, new)))

    def _role(self, ci: int, q: int, role: str) -> None:
        co = self.cos[ci]
        old = co.holder(role, q)
        if co.roles[role][-1][0] == q:
            return
        new = wt.person_name(self.rng, self.people)
        co.roles[role].append((q, new))
        self.events.append(wt.Event(self.news_day(q), "role", ci, q, (role, new, old)))

    def _launch(self, ci: int, q: int) -> None:
        prod = wt.product_name(self.rng, self.products)
        self.events.append(
            wt.Event(self.news_day(q), "launch", ci, q, (prod, self.rng.choice(wt.PRODUCT_KINDS)))
        )

    def _correct(self, ci: int, q: int) -> None:
        co = self.cos[ci]
        if q == co.last_q and q < self.cfg.quarters - 1:
            return  # an acquired company publishes no restatement after its last report
        options = [m for m in self.cfg.metrics if wt.METRICS[m].correctable]
        if not options:
            return
        metric = self.rng.choice(options)
        if (ci, metric, q) in self.corrections:
            return
        original = co.values[metric][q]
        restated = wt.METRICS[metric].restate(self.rng, original)
        co.values[metric][q] = restated  # the model holds the truth; the report prints the original
        day = self.qstart[q + 1] + self.rng.randint(55, 80)
        ev = wt.Event(day, "correction", ci, q, (metric, original, restated))
        self.events.append(ev)
        self.corrections[(ci, metric, q)] = ev


# ---- questions --------------------------------------------------------------------------------
Made = list[tuple[str, tuple[str, ...], tuple["wt.Key", ...], dict[str, Any]]]


@dataclass(frozen=True)
class _Plan:
    id: str
    question: str
    answers: tuple[str, ...]
    keys: tuple[wt.Key, ...]  # the statements whose sentences are its evidence
    meta: dict[str, Any]


class _Planner:
    """Draws questions from the model; each maker returns [] when its draw does not fit."""

    def __init__(self, model: wt.Model, rng: random.Random) -> None:
        self.m, self.rng, self.cfg = model, rng, model.config
        self.n = model.config.quarters
        self.corrections = sorted(model.corrections)
        rng.shuffle(self.corrections)  # as_of takes them in this order, each once
        self.acquired = [i for i, c in enumerate(model.companies) if c.last_q < self.n - 1]
        self.turn = 0

    def run(self) -> list[_Plan]:
        plans: list[_Plan] = []
        cap = self.cfg.questions_per_type
        for qtype in QUESTION_TYPES:
            make = getattr(self, f"_{qtype}")
            seen: set[tuple[str, str]] = set()
            count = 0
            for _ in range(cap * 30):
                if count >= cap:
                    break
                made = make()
                if count + len(made) > cap:
                    break  # a pair of twins goes in whole or not at all
                for question, answers, keys, meta in made:
                    sig = (question, str(meta.get("now", meta.get("as_of", ""))))
                    if sig in seen:
                        continue
                    seen.add(sig)
                    meta = {"type": qtype, **meta}
                    plans.append(_Plan(f"world-{qtype}-{count:04d}", question, answers, keys, meta))
                    count += 1
        return plans

    # helpers
    def final(self, ci: int, metric: str, q: int) -> wt.Key:
        kind = "correction" if (ci, metric, q) in self.m.corrections else "report"
        return (kind, ci, metric, q)

    def name(self, ci: int, q: int) -> str:
        """The name its report used; sometimes the latest one, so aliases get exercised."""
        co = self.m.companies[ci]
        if len(co.names) > 1 and self.rng.random() < self.cfg.p_latest_name:
            return co.names[-1][1]
        return co.report_name(q)

    def ask_value(self, company: str, metric: str, y: int, qq: int) -> str:
        phrase = wt.QUESTION_PHRASE[metric]
        if self.rng.random() < 0.5:
            return f"What was {wt.possessive(company)} {phrase} in Q{qq} {y}?"
        return f"What was the {phrase} of {company} in the {wt.ORDINAL[qq - 1]} quarter of {y}?"

    def pick(self) -> tuple[int, wt.Company, str]:
        ci = self.rng.randrange(len(self.m.companies))
        return ci, self.m.companies[ci], self.rng.choice(self.cfg.metrics)

    def value(self, ci: int, metric: str, q: int) -> str:
        return wt.METRICS[metric].fmt(self.m.companies[ci].values[metric][q])

    def meta(self, co: wt.Company, relation: str, *quarters: int) -> dict[str, Any]:
        return {"company": co.ticker, "relation": relation, "period": [self.m.label(q) for q in quarters]}

    def qs(self, q: int) -> str:
        y, qq = self.m.year_q(q)
        return f"Q{qq} {y}"

    # makers
    def _point(self) -> Made:
        ci, co, metric = self.pick()
        q = self.rng.randint(0, co.last_q)
        question = self.ask_value(self.name(ci, q), metric, *self.m.year_q(q))
        return [
            (question, (self.value(ci, metric, q),), (self.final(ci, metric, q),), self.meta(co, metric, q))
        ]

    def tenures(self, co: wt.Company, role: str) -> list[tuple[int, int, str]]:
        """(first quarter, last quarter, person) of each tenure inside the reported quarters."""
        ts = [(s, p) for s, p in co.roles[role] if s <= co.last_q]
        return [(s, (ts[i + 1][0] - 1 if i + 1 < len(ts) else co.last_q), p) for i, (s, p) in enumerate(ts)]

    def _before(self) -> Made:
        # only one holder in every reported quarter before q: the first tenure's, asked up to its end
        ci, co, _ = self.pick()
        role = self.rng.choice(wt.ROLES)
        _, first_end, person = self.tenures(co, role)[0]
        end = min(first_end + 1, co.last_q)
        if end < 1:
            return []
        q = end if self.rng.random() < 0.7 else self.rng.randint(1, end)
        question = f"Who was the {role} of {self.name(ci, q - 1)} before {self.qs(q)}?"
        return [(question, (person,), (("report", ci, role, q - 1),), self.meta(co, role, q))]

    def _after(self) -> Made:
        ci, co, _ = self.pick()
        role = self.rng.choice(wt.ROLES)
        last = self.tenures(co, role)[-1]
        low = max(last[0] - 1, 0)
        if low > co.last_q - 1:
            return []
        q = low if self.rng.random() < 0.7 else self.rng.randint(low, co.last_q - 1)
        question = f"Who was the {role} of {self.name(ci, q + 1)} after {self.qs(q)}?"
        return [(question, (last[2],), (("report", ci, role, q + 1),), self.meta(co, role, q))]

    def _between(self) -> Made:
        ci, co, _ = self.pick()
        role = self.rng.choice(wt.ROLES)
        s, e, person = self.rng.choice(self.tenures(co, role))
        if e - s < 1:
            return []
        a = self.rng.randint(s, e - 1)
        b = self.rng.randint(a + 1, min(e, a + 4))
        question = f"Who was the {role} of {self.name(ci, b)} between {self.qs(a)} and {self.qs(b)}?"
        keys = (("report", ci, role, a), ("report", ci, role, b))
        return [(question, (person,), keys, self.meta(co, role, a, b))]

    def _relative(self) -> Made:
        # asked late in the next quarter: after that quarter's report and any restatement of it
        ci, co, metric = self.pick()
        q = self.rng.randint(0, co.last_q)
        now = self.m.qstart[q + 1] + self.rng.randint(82, 88)
        c = co.name_on(now)
        phrase = wt.QUESTION_PHRASE[metric]
        if self.rng.random() < 0.5:
            question = f"What was {wt.possessive(c)} {phrase} last quarter?"
        else:
            question = f"What was the {phrase} of {c} last quarter?"
        meta = {**self.meta(co, metric, q), "now": date.fromordinal(now).isoformat()}
        return [(question, (self.value(ci, metric, q),), (self.final(ci, metric, q),), meta)]

    def full_year(self, co: wt.Company) -> list[int] | None:
        years = (co.last_q + 1) // 4
        if years < 1:
            return None
        first = 4 * self.rng.randrange(years)
        return list(range(first, first + 4))

    def _comparison(self) -> Made:
        ci, co, metric = self.pick()
        qs = self.full_year(co)
        if qs is None:
            return []
        vals = [co.values[metric][q] for q in qs]
        highest = self.rng.random() < 0.5
        best = max(vals) if highest else min(vals)
        if vals.count(best) != 1:
            return []
        q = qs[vals.index(best)]
        y = self.m.year_q(q)[0]
        which = "highest" if highest else "lowest"
        phrase = wt.QUESTION_PHRASE[metric]
        question = f"In which quarter of {y} did {self.name(ci, qs[-1])} have the {which} {phrase}?"
        keys = tuple(self.final(ci, metric, k) for k in qs)
        return [(question, (self.qs(q),), keys, self.meta(co, metric, *qs))]

    def _enumeration(self) -> Made:
        ci, co, metric = self.pick()
        qs = self.full_year(co)
        if qs is None:
            return []
        y = self.m.year_q(qs[0])[0]
        phrase = wt.QUESTION_PHRASE[metric]
        question = f"What was {wt.possessive(self.name(ci, qs[-1]))} {phrase} in each quarter of {y}?"
        answer = ", ".join(self.value(ci, metric, q) for q in qs)
        keys = tuple(self.final(ci, metric, q) for q in qs)
        return [(question, (answer,), keys, self.meta(co, metric, *qs))]

    def _as_of(self) -> Made:
        """Twins: asked before the restatement (the original figure), and after it (the restated)."""
        if not self.corrections:
            return []
        ci, metric, q = self.corrections.pop()
        co, ev = self.m.companies[ci], self.m.corrections[(ci, metric, q)]
        fmt = wt.METRICS[metric].fmt
        question = self.ask_value(co.report_name(q), metric, *self.m.year_q(q))
        before = co.report_day[q] + self.rng.randint(1, ev.day - co.report_day[q] - 1)
        after = ev.day + self.rng.randint(0, 20)
        pair = f"{co.ticker}-{self.m.label(q)}-{metric}"
        out: Made = []
        for day, value, key in ((before, ev.data[1], "report"), (after, ev.data[2], "correction")):
            meta = {**self.meta(co, metric, q), "as_of": date.fromordinal(day).isoformat(), "pair": pair}
            out.append((question, (fmt(value),), ((key, ci, metric, q),), meta))
        return out

    def _unanswerable(self) -> Made:
        reasons = ["after_coverage", "before_coverage", "unknown_entity"] + (
            ["after_acquisition"] if self.acquired else []
        )
        reason = reasons[self.turn % len(reasons)]
        self.turn += 1
        _, co, metric = self.pick()
        company = co.names[-1][1]
        if reason == "after_coverage":
            if co.last_q != self.n - 1:
                return []
            y, qq = self.m.year_q(self.n + self.rng.randint(0, 3))
        elif reason == "before_coverage":
            y, qq = self.cfg.start_year - self.rng.randint(1, 6), self.rng.randint(1, 4)
        elif reason == "unknown_entity":
            used = {n.split()[0] for c in self.m.companies for _, n in c.names}
            company = wt.company_name(self.rng, used)
            y, qq = self.m.year_q(self.rng.randint(0, self.n - 1))
        else:
            co = self.m.companies[self.rng.choice(self.acquired)]
            company = co.names[-1][1]
            y, qq = self.m.year_q(self.rng.randint(co.last_q + 1, self.n - 1))
        if self.rng.random() < 0.25:
            role = self.rng.choice(wt.ROLES)
            question = f"Who was the {role} of {company} in Q{qq} {y}?"
        else:
            question = self.ask_value(company, metric, y, qq)
        meta = {"reason": reason, "period": [f"{y:04d}-Q{qq}"]}
        return [(question, (), (), meta)]


# ---- assembly ---------------------------------------------------------------------------------
def generate(config: WorldConfig | str = "small") -> World:
    cfg = SCALES[config] if isinstance(config, str) else config
    rng = random.Random(cfg.seed)
    model = _ModelBuilder(cfg, random.Random(rng.getrandbits(64))).build()
    plans = _Planner(model, random.Random(rng.getrandbits(64))).run()
    needed = {k for p in plans for k in p.keys}
    writer = wt.Writer(model, random.Random(rng.getrandbits(64)), needed)

    # (day, key, report: (ci, q) | event index): sorted, the documents come out in publication order
    specs: list[tuple[int, str, int, int]] = []
    for ci, co in enumerate(model.companies):
        for q in range(co.last_q + 1):
            y, qq = model.year_q(q)
            specs.append((co.report_day[q], f"{co.ticker}-{y}-Q{qq}-report", ci, q))
    for i, ev in enumerate(model.events):
        specs.append((ev.day, f"{model.companies[ev.ci].ticker}-{ev.kind}", -1, i))
    specs.sort()
    documents = [
        writer.report(ci, q, day) if ci >= 0 else writer.news(model.events[q]) for day, _, ci, q in specs
    ]

    slices: list[list[int]] = []
    slice_of: dict[str, int] = {}
    last_quarter = -1
    for i, (day, *_) in enumerate(specs):
        pq = bisect.bisect_right(model.qstart, day)
        if pq != last_quarter:
            slices.append([])
            last_quarter = pq
        slices[-1].append(i)
        slice_of[documents[i].key or ""] = len(slices) - 1
    questions = [_finish(p, writer.found, slice_of) for p in plans]
    facts = [GroundFact(*row) for row in writer.facts]
    return World(cfg, documents, slices, questions, facts, writer.fact_total)


def _finish(plan: _Plan, found: dict[wt.Key, tuple[str, str]], slice_of: dict[str, int]) -> QAItem:
    evidence = tuple(found[k][0] for k in plan.keys)
    docs = [found[k][1] for k in plan.keys]
    meta = dict(plan.meta)
    meta["evidence_docs"] = docs
    meta["slice"] = max((slice_of[d] for d in docs), default=0)
    return QAItem(plan.id, plan.question, plan.answers, evidence, meta)


def _write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _read_jsonl(path: Path) -> Iterator[Any]:
    with open(path, encoding="utf-8") as fh:
        yield from (json.loads(line) for line in fh if line.strip())


def save(world: World, folder: Path) -> None:
    """documents.jsonl, questions.jsonl (FlashRAG fields; evidence in metadata), facts.jsonl, world.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    docs = (
        {
            "text": d.text,
            "date": d.date.isoformat() if d.date else None,
            "period": d.period.label if d.period else None,
            "subject": d.subject,
            "aliases": list(d.aliases),
            "source": d.source,
            "key": d.key,
            "metadata": d.metadata,
        }
        for d in world.documents
    )
    _write_jsonl(folder / "documents.jsonl", docs)
    questions = (
        {
            "id": q.id,
            "question": q.question,
            "golden_answers": list(q.golden_answers),
            "metadata": {**q.metadata, "evidence": list(q.evidence)},
        }
        for q in world.questions
    )
    _write_jsonl(folder / "questions.jsonl", questions)
    _write_jsonl(
        folder / "facts.jsonl", ([f.subject, f.relation, f.value, f.period, f.doc_key] for f in world.facts)
    )
    info = {"config": asdict(world.config), "slices": world.slices, "fact_total": world.fact_total}
    (folder / "world.json").write_text(json.dumps(info), encoding="utf-8")


def load(folder: Path) -> World:
    """The world ``save`` wrote; documents are read the way ``tgrag ingest --format jsonl`` reads them."""
    folder = Path(folder)
    info = json.loads((folder / "world.json").read_text(encoding="utf-8"))
    config = WorldConfig(**{**info["config"], "metrics": tuple(info["config"]["metrics"])})
    documents = [document_from_record(r) for r in _read_jsonl(folder / "documents.jsonl")]
    questions = []
    for r in _read_jsonl(folder / "questions.jsonl"):
        meta = dict(r["metadata"])
        evidence = tuple(meta.pop("evidence", ()))
        questions.append(QAItem(r["id"], r["question"], tuple(r["golden_answers"]), evidence, meta))
    facts_path = folder / "facts.jsonl"
    facts = [GroundFact(*r) for r in _read_jsonl(facts_path)] if facts_path.exists() else []
    return World(config, documents, info["slices"], questions, facts, info["fact_total"])
