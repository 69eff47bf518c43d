"""How the generated world (:mod:`eval.datasets.world`) is held and written down.

Names, metrics and sentence templates; the model's data types (:class:`Company`, :class:`Event`,
:class:`Model`); and the :class:`Writer` that turns the model into documents. ``world.py`` draws the
model and plans the questions; everything about wording lives here, so the hot loop only indexes
lists and calls ``str.format``. Templates are written for the offline stack: one fact per sentence,
the quarter always named in a metric sentence ("the third quarter of 2023", "Q3 2023"), figures in
the forms ``tgrag.extract.values`` reads ("$412 million", "12.5%", "3,200 employees").
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from tgrag.model import Document, TimeInterval

if TYPE_CHECKING:  # world.py imports this module at run time
    from .world import WorldConfig

ORDINAL = ("first", "second", "third", "fourth")
MONTHS = ("January February March April May June July August September October November December").split()

# ---- names ----------------------------------------------------------------------------------
# Syllable parts: the combinations are pronounceable and invented, not taken from real companies.
_CO_HEAD = (
    "Vel Cor Mar Tal Quin Zen Bor Ast Kel Nor Lum Ser Dra Fen Hal Orv Pyr Sol Tor Vex Cal Dun Eld Gal "
    "Hex Ith Jor Kav Lor Myr Nex Oph Pell Rav Sav Tyr Ulm Var Wex Yor"
).split()
_CO_MID = ("", "a", "i", "o", "e", "an", "en", "ar", "or", "is", "u", "el")
_CO_TAIL = (
    "trix via dex tra nix lon ria mont ven lyx bard cor tis vant dor rix quel zen thos mira ganth pex "
    "dara wyn"
).split()
_CO_KIND = (
    "Systems Labs Industries Technologies Holdings Dynamics Networks Energy Foods Logistics Materials "
    "Therapeutics Robotics Analytics"
).split()
_FIRST_HEAD = "Ta Ma Ri Se Lo Ka Ve No Da Ela Ori Ju Mi Sa Be Ti Ro Ada Isa Le".split()
_FIRST_TAIL = "lin ra ren mon sia dric vin na lo rek nia dan mira tho".split()
_LAST_HEAD = (
    "Vor Hal Brem Kess Lind Mor Tress Ald Fen Gar Quill Rost Hew Stan Dal Corm Pem Wend Ash Thorn".split()
)
_LAST_TAIL = "wick stad ford ley holm ner berg ton ard ello mere vale croft by sen dahl".split()
_PRODUCT_HEAD = (
    "Aero Nova Flux Strata Vanta Kilo Orbi Lumi Zeta Pulse Terra Cirra Helio Mira Onyx Quanta".split()
)
_PRODUCT_TAIL = "Edge One Core Link Prime Flow Grid Pro Sense Vault Hub Max".split()
PRODUCT_KINDS = (
    "analytics platform",
    "sensor module",
    "cloud service",
    "payments app",
    "battery pack",
    "diagnostic kit",
    "robotic arm",
    "logistics tracker",
)
INDUSTRIES = (
    "semiconductor",
    "logistics",
    "enterprise software",
    "medical device",
    "renewable energy",
    "specialty chemicals",
    "consumer electronics",
    "payments",
    "industrial automation",
    "food processing",
    "cloud infrastructure",
)
# four-letter words the mention finder treats as acronyms, not tickers
_BAD_TICKERS = frozenset(
    {"GAAP", "SAAS", "EBIT", "CAPEX", "OPEX", "CAGR", "USD", "EUR", "NYSE", "YTD", "TTM"}
)


def company_base(rng: random.Random) -> str:
    return rng.choice(_CO_HEAD) + rng.choice(_CO_MID) + rng.choice(_CO_TAIL)


def company_name(rng: random.Random, used_bases: set[str]) -> str:
    """A fresh company name whose first word no other name of this world uses."""
    for _ in range(1000):
        base = company_base(rng)
        if base not in used_bases:
            used_bases.add(base)
            return f"{base} {rng.choice(_CO_KIND)}"
    raise RuntimeError("ran out of company names: raise the syllable lists or lower the scale")


def ticker_for(name: str, rng: random.Random, used: set[str]) -> str:
    """A unique ticker built from the name's letters (first letter kept, as real tickers do)."""
    base = name.split()[0].upper()
    consonants = [ch for ch in base[1:] if ch not in "AEIOU"]
    candidates = [base[:4], base[0] + "".join(consonants[:3]), base[:3] + base[-1]]
    letters = base[1:] + "".join(name.split()[1][:3].upper())
    candidates += [base[0] + "".join(rng.sample(letters, 3)) for _ in range(8)]
    candidates += [base[0] + "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ", k=4)) for _ in range(50)]
    for c in candidates:
        if len(c) >= 3 and c not in used and c not in _BAD_TICKERS:
            used.add(c)
            return c
    raise RuntimeError(f"no free ticker for {name}")


def person_name(rng: random.Random, used: set[str]) -> str:
    for _ in range(1000):
        name = (
            rng.choice(_FIRST_HEAD)
            + rng.choice(_FIRST_TAIL)
            + " "
            + rng.choice(_LAST_HEAD)
            + rng.choice(_LAST_TAIL)
        )
        if name not in used:
            used.add(name)
            return name
    raise RuntimeError("ran out of person names")


def product_name(rng: random.Random, used: set[str]) -> str:
    base = name = f"{rng.choice(_PRODUCT_HEAD)} {rng.choice(_PRODUCT_TAIL)}"
    n = 2
    while name in used:  # a product line gets a generation number rather than a clash
        name = f"{base} {n}"
        n += 1
    used.add(name)
    return name


def possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") else f"{name}'s"


# ---- metrics --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """One reported quantity: how its values evolve, how they print, how sentences state them.

    Values are ints: millions of dollars, tenths of a percent, or a count, so equality is exact.
    Templates take c (company), cp (possessive), v (value), qp ("the third quarter of 2023"),
    qs ("Q3 2023"); the comparative ones also d ("up"/"down") and pv (the earlier value).
    """

    name: str  # the relation of its ground facts
    kind: str  # "money" | "percent" | "count"
    noun: str  # counts: "employees"
    start: tuple[int, int]  # range of the first quarter's value
    drift: float  # mean growth a quarter (money, counts) or points of tenths (percent)
    noise: float
    low: int  # floor
    high: int  # ceiling
    plain: tuple[str, ...]
    last_quarter: tuple[str, ...]
    year_ago: tuple[str, ...]
    correctable: bool = False

    def walk(self, rng: random.Random, start: int, n: int) -> list[int]:
        """n quarters of values: margins wander by points, sizes grow by a rate."""
        gauss, out, v = rng.gauss, [start], start
        for _ in range(n - 1):
            if self.kind == "percent":
                v = round(v + gauss(self.drift, self.noise))
            else:
                v = round(v * (1.0 + gauss(self.drift, self.noise)))
            v = min(self.high, max(self.low, v))
            out.append(v)
        return out

    def restate(self, rng: random.Random, v: int) -> int:
        """A restated figure: a few percent (or points) off the original, never equal to it."""
        if self.kind == "percent":
            new = v + rng.choice((-1, 1)) * rng.randint(3, 15)
        else:
            new = round(v * (1 + rng.choice((-1, 1)) * rng.uniform(0.02, 0.08)))
        new = min(self.high, max(self.low, new))
        return new if new != v else v + (1 if v < self.high else -1)

    def fmt(self, v: int) -> str:
        if self.kind == "money":
            return f"${v:,} million"
        if self.kind == "percent":
            return f"{v // 10}.{v % 10}%"
        return f"{v:,} {self.noun}"


Templates = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]  # plain, last quarter, year ago


def _money_or_percent(label: str, verb: str) -> Templates:
    cap = label[0].upper() + label[1:]
    plain = (
        f"{{c}} reported {label} of {{v}} for {{qp}}.",
        f"{cap} at {{c}} was {{v}} in {{qs}}.",
        f"In {{qp}}, {{c}} {verb} {label} of {{v}}.",
        f"{{cp}} {label} came in at {{v}} for {{qs}}.",
    )
    last_quarter = (
        f"{{c}} reported {label} of {{v}} for {{qp}}, {{d}} from {{pv}} last quarter.",
        f"{cap} was {{v}} in {{qs}}, {{d}} from {{pv}} in the previous quarter.",
    )
    year_ago = (
        f"{{c}} reported {label} of {{v}} for {{qp}}, compared with {{pv}} a year ago.",
        f"{cap} was {{v}} in {{qs}}, versus {{pv}} in the year-ago quarter.",
        f"In {{qp}}, {{c}} {verb} {label} of {{v}}, compared with {{pv}} in the same quarter last year.",
    )
    return plain, last_quarter, year_ago


METRICS: dict[str, Metric] = {
    "revenue": Metric(
        "revenue", "money", "", (80, 3000), 0.02, 0.05, 5, 10**7,
        *_money_or_percent("revenue", "generated"), correctable=True,
    ),
    "net income": Metric(
        "net income", "money", "", (5, 300), 0.02, 0.08, 1, 10**7,
        *_money_or_percent("net income", "recorded"), correctable=True,
    ),
    "operating margin": Metric(
        "operating margin", "percent", "", (50, 300), 0.0, 12.0, 10, 450,
        *_money_or_percent("operating margin", "achieved"), correctable=True,
    ),
    "gross margin": Metric(
        "gross margin", "percent", "", (300, 700), 0.0, 8.0, 150, 850,
        *_money_or_percent("gross margin", "achieved"),
    ),
    "headcount": Metric(
        "headcount", "count", "employees", (300, 40000), 0.015, 0.03, 50, 10**7,
        plain=(
            "{c} ended {qp} with {v}.",
            "Headcount at {c} was {v} at the end of {qs}.",
            "{cp} headcount stood at {v} in {qs}.",
        ),
        last_quarter=("{c} ended {qp} with {v}, {d} from {pv} last quarter.",),
        year_ago=("Headcount at {c} was {v} at the end of {qs}, compared with {pv} a year ago.",),
    ),
    "customers": Metric(
        "customers", "count", "customers", (1000, 500000), 0.03, 0.04, 100, 10**9,
        plain=(
            "{c} served {v} in {qp}.",
            "The customer base of {c} reached {v} in {qs}.",
        ),
        last_quarter=("{c} served {v} in {qp}, {d} from {pv} last quarter.",),
        year_ago=("{c} served {v} in {qp}, versus {pv} in the year-ago quarter.",),
    ),
}  # fmt: skip

# What a question calls each quantity.
QUESTION_PHRASE = {
    "revenue": "revenue",
    "net income": "net income",
    "operating margin": "operating margin",
    "gross margin": "gross margin",
    "headcount": "headcount",
    "customers": "number of customers",
}

# ---- roles ----------------------------------------------------------------------------------
ROLES = ("chief executive officer", "chief financial officer")
ROLE_SENTENCES = (
    "{p}, {r} of {c}, said the company delivered on its plan in {qp}.",
    "{cp} {r}, {p}, presented the results for {qs}.",
    "Commenting on {qs}, {p}, {r} of {c}, pointed to steady demand.",
)

# ---- reports --------------------------------------------------------------------------------
OPENING = (
    "{c} ({t}) released its financial results for {qp}.",
    "{c} ({t}) published results for {qs} on {day}.",
)
OPENING_RENAMED = ("{c}, formerly {old}, released its financial results for {qp} under the ticker {t}.",)
# Distractors: look relevant, answer nothing. {g1}/{g2} is guidance for the next quarter {nq}.
DISTRACTORS = (
    "Demand across the {ind} industry remained uneven during the period.",
    "Analysts also followed {o}, which competes with {c} in {ind}.",
    "{c} expects revenue between {g1} and {g2} for {nq}.",
    "This release contains forward-looking statements that involve risks and uncertainties.",
    "Supply chain conditions in {ind} continued to normalize.",
    "{o} did not comment on its own outlook.",
    "Management reiterated its focus on disciplined capital allocation.",
    "Investors can find additional materials on the company's website.",
)
GUIDANCE = 2  # the index of the guidance template above: it needs figures

# ---- news -----------------------------------------------------------------------------------
ROLE_CHANGE = (
    "{c} appointed {p} as {r}, succeeding {old}, in {month}.",
    "{p} became {r} of {c} in {month}, replacing {old}.",
)
ROLE_CHANGE_TAIL = "{old} will stay on as an adviser through the transition."
LAUNCH = (
    "{c} launched {prod}, a new {kind}, in {month}.",
    "In {month}, {c} introduced {prod}, its latest {kind}.",
)
ACQUISITION = (
    "{a} completed its acquisition of {b} for {price} in {month}.",
    "In {month}, {a} closed the purchase of {b} for {price}.",
)
ACQUISITION_TAIL = "{b} will no longer report results as a separate company."
RENAME = (
    "{c}, formerly {old}, began operating under its new name in {month}.",
    "{c} (formerly {old}) started trading under its new name in {month}.",
)
RENAME_TAIL = "Its shares continue to trade under the ticker {t}."
CORRECTION = (
    "{c} restated its {label} for {qp} to {new} from {old}.",
    "{c} revised its {label} for {qs} to {new}, from {old} reported earlier.",
)
CORRECTION_TAIL = (
    "The restatement followed a review of revenue recognition for multi-year contracts.",
    "The revision reflects a reclassification of certain one-time items.",
)
NEWS_FILLER = (
    "Shares of {c} were little changed after the announcement.",
    "The company did not hold a conference call about the news.",
    "Industry observers said the move was widely expected in {ind}.",
    "{o} was not part of the announcement.",
)


def quarter_phrases(year: int, quarter: int) -> tuple[str, str]:
    """("the third quarter of 2023", "Q3 2023") for quarter 3 of 2023."""
    return f"the {ORDINAL[quarter - 1]} quarter of {year}", f"Q{quarter} {year}"


# ---- the model: what the writer writes about ------------------------------------------------
@dataclass
class Company:
    ticker: str
    industry: str
    names: list[tuple[int, str]]  # (first day it is used, as an ordinal; name)
    values: dict[str, list[int]]  # final (restated) value per metric and quarter
    roles: dict[str, list[tuple[int, str]]]  # role -> [(first quarter, person)]
    last_q: int  # last reported quarter; earlier than the world's last when acquired
    report_day: list[int] = field(default_factory=list)  # publication day of each quarter's report
    renamed: dict[int, str] = field(default_factory=dict)  # first quarter under a new name -> old name

    def name_on(self, day: int) -> str:
        name = self.names[0][1]
        for first, n in self.names:
            if first > day:
                break
            name = n
        return name

    def former_on(self, day: int) -> tuple[str, ...]:
        return tuple(n for first, n in self.names[:-1] if first <= day and n != self.name_on(day))

    def holder(self, role: str, q: int) -> str:
        person = self.roles[role][0][1]
        for first, p in self.roles[role]:
            if first > q:
                break
            person = p
        return person

    def report_name(self, q: int) -> str:
        return self.name_on(self.report_day[q])


@dataclass(frozen=True)
class Event:
    day: int  # publication day, an ordinal
    kind: str  # role | launch | acquisition | rename | correction
    ci: int
    q: int  # the quarter it belongs to
    data: tuple[Any, ...]  # role: (role, new, old); launch: (product, kind); acquisition: (target ci,
    # price); rename: (old, new); correction: (metric, original, restated)


@dataclass
class Model:
    config: WorldConfig
    companies: list[Company]
    events: list[Event]
    corrections: dict[tuple[int, str, int], Event]  # (ci, metric, q) -> its restatement
    qstart: list[int]  # first day of each quarter index, two past the last reporting one

    def year_q(self, q: int) -> tuple[int, int]:
        return self.config.start_year + q // 4, q % 4 + 1

    def label(self, q: int) -> str:
        y, qq = self.year_q(q)
        return f"{y:04d}-Q{qq}"


# ---- the writer ------------------------------------------------------------------------------
Key = tuple[Any, ...]  # ("report", ci, field, q) | ("correction", ci, metric, q)
FactRow = tuple[str, str, str, str, str]  # subject, relation, value, period, doc_key


class Writer:
    """Writes the documents in publication order, counting facts and catching needed sentences."""

    def __init__(self, model: Model, rng: random.Random, needed: set[Key]) -> None:
        self.m, self.rng, self.needed = model, rng, needed
        self.cfg = model.config
        self.found: dict[Key, tuple[str, str]] = {}
        self.facts: list[FactRow] = []
        self.fact_total = 0
        self.phrases = [quarter_phrases(*model.year_q(q)) for q in range(self.cfg.quarters + 1)]
        self.labels = [model.label(q) for q in range(self.cfg.quarters + 1)]
        self.metrics = [(k, METRICS[k]) for k in self.cfg.metrics]
        solo = self.cfg.companies == 1  # no competitor to mention
        self.distractors = [
            i
            for i, t in enumerate(DISTRACTORS)
            if not (solo and "{o}" in t) and not (i == GUIDANCE and "revenue" not in self.cfg.metrics)
        ]
        self.news_filler = [t for t in NEWS_FILLER if not (solo and "{o}" in t)]

    def fact(self, subject: str, relation: str, value: str, period: str, key: str) -> None:
        self.fact_total += 1
        if self.cfg.keep_facts:
            self.facts.append((subject, relation, value, period, key))

    def catch(self, key: Key, sentence: str, doc_key: str) -> None:
        if key in self.needed:
            self.found[key] = (sentence, doc_key)

    def other(self, ci: int, day: int) -> str:
        n = len(self.m.companies)
        j = (ci + 1 + self.rng.randrange(n - 1)) % n
        return self.m.companies[j].name_on(day)

    def filler(self, ci: int, day: int, q: int) -> list[str]:
        co, rng, out = self.m.companies[ci], self.rng, []
        for i in rng.sample(self.distractors, min(self.cfg.distractors, len(self.distractors))):
            kw = {"c": co.name_on(day), "ind": co.industry}
            if "{o}" in DISTRACTORS[i]:
                kw["o"] = self.other(ci, day)
            if i == GUIDANCE:
                kw.update(self.guidance(co, q))
            out.append(DISTRACTORS[i].format(**kw))
        return out

    def guidance(self, co: Company, q: int) -> dict[str, str]:
        """Next quarter's revenue range: close to the truth but never the figure itself."""
        rev = co.values["revenue"]
        nxt = rev[q + 1] if q + 1 < len(rev) else round(rev[q] * 1.02)
        g1 = int(nxt * self.rng.uniform(0.9, 0.97))
        g2 = g1 + max(2, nxt // 15)
        g2 += g2 == nxt
        money = METRICS["revenue"].fmt
        return {"g1": money(g1), "g2": money(g2), "nq": self.phrases[q + 1][0]}

    def report(self, ci: int, q: int, day: int) -> Document:
        m, rng, co = self.m, self.rng, self.m.companies[ci]
        name, t = co.name_on(day), co.ticker
        poss, label = possessive(name), self.labels[q]
        qp, qs = self.phrases[q]
        y, qq = m.year_q(q)
        key = f"{t}-{y}-Q{qq}-report"
        if q in co.renamed:
            sents = [OPENING_RENAMED[0].format(c=name, old=co.renamed[q], t=t, qp=qp)]
        else:
            d = date.fromordinal(day)
            when = f"{MONTHS[d.month - 1]} {d.day}, {d.year}"
            sents = [rng.choice(OPENING).format(c=name, t=t, qp=qp, qs=qs, day=when)]
        p_rel = self.cfg.p_relative
        for metric, spec in self.metrics:
            vals = co.values[metric]
            corr = m.corrections.get((ci, metric, q))
            v = corr.data[1] if corr else vals[q]
            r, pv = rng.random(), None
            if r < p_rel / 2 and q >= 1 and vals[q - 1] != v:
                tpl, pv = rng.choice(spec.last_quarter), vals[q - 1]
            elif r < p_rel and q >= 4:
                tpl, pv = rng.choice(spec.year_ago), vals[q - 4]
            else:
                tpl = rng.choice(spec.plain)
            d_word = "" if pv is None else ("up" if v > pv else "down")
            s = tpl.format(c=name, cp=poss, v=spec.fmt(v), qp=qp, qs=qs, d=d_word, pv=spec.fmt(pv or 0))
            sents.append(s)
            self.catch(("report", ci, metric, q), s, key)
            if corr is None:
                self.fact(name, metric, spec.fmt(v), label, key)
        for role in ROLES:
            p = co.holder(role, q)
            s = rng.choice(ROLE_SENTENCES).format(p=p, r=role, c=name, cp=poss, qp=qp, qs=qs)
            sents.append(s)
            self.catch(("report", ci, role, q), s, key)
            self.fact(name, role, p, label, key)
        for s in self.filler(ci, day, q):
            sents.insert(rng.randint(1, len(sents)), s)
        meta = {"kind": "report", "ticker": t}
        return self.document(sents, day, co, key, TimeInterval.quarter(y, qq), meta)

    def document(
        self,
        sents: list[str],
        day: int,
        co: Company,
        key: str,
        period: TimeInterval | None,
        meta: dict[str, Any],
    ) -> Document:
        paragraphs = [" ".join(sents[i : i + 4]) for i in range(0, len(sents), 4)]
        return Document(
            text="\n".join(paragraphs),
            date=date.fromordinal(day),
            period=period,
            subject=co.name_on(day),
            aliases=(co.ticker, *co.former_on(day)),
            source=f"{key}.txt",
            key=key,
            metadata=meta,
        )

    def news(self, ev: Event) -> Document:
        rng, co = self.rng, self.m.companies[ev.ci]
        name, day, label = co.name_on(ev.day), ev.day, self.labels[ev.q]
        d = date.fromordinal(day)
        month = f"{MONTHS[d.month - 1]} {d.year}"
        iso, slug = d.isoformat(), ev.kind
        meta: dict[str, Any] = {"kind": "news", "ticker": co.ticker, "event": ev.kind, "period": label}
        if ev.kind == "role":
            role, new, old = ev.data
            slug = "ceo" if role == ROLES[0] else "cfo"
            sents = [rng.choice(ROLE_CHANGE).format(c=name, p=new, r=role, old=old, month=month)]
            sents.append(ROLE_CHANGE_TAIL.format(old=old))
            facts = [(f"appointed {role}", new)]
        elif ev.kind == "launch":
            prod, kind = ev.data
            sents = [rng.choice(LAUNCH).format(c=name, prod=prod, kind=kind, month=month)]
            facts = [("launched", prod)]
        elif ev.kind == "acquisition":
            target, price = ev.data
            b = self.m.companies[target].name_on(day)
            slug = f"acquires-{self.m.companies[target].ticker}"
            meta["target"] = self.m.companies[target].ticker
            sents = [rng.choice(ACQUISITION).format(a=name, b=b, price=price, month=month)]
            sents.append(ACQUISITION_TAIL.format(b=b))
            facts = [("acquired", b)]
        elif ev.kind == "rename":
            old, new = ev.data
            sents = [rng.choice(RENAME).format(c=new, old=old, month=month)]
            sents.append(RENAME_TAIL.format(t=co.ticker))
            facts = [("formerly named", old)]
        else:
            metric, original, restated = ev.data
            spec = METRICS[metric]
            slug = "restated-" + metric.replace(" ", "-")
            meta["metric"] = metric
            qp, qs = self.phrases[ev.q]
            s = rng.choice(CORRECTION).format(
                c=name, label=metric, qp=qp, qs=qs, new=spec.fmt(restated), old=spec.fmt(original)
            )
            sents = [s, rng.choice(CORRECTION_TAIL)]
            self.catch(("correction", ev.ci, metric, ev.q), s, f"{co.ticker}-{iso}-{slug}")
            facts = [(metric, spec.fmt(restated))]
        key = f"{co.ticker}-{iso}-{slug}"
        for relation, value in facts:
            self.fact(name, relation, value, label, key)
        for tpl in rng.sample(self.news_filler, min(self.cfg.distractors, len(self.news_filler))):
            kw = {"c": name, "ind": co.industry, "o": self.other(ev.ci, day) if "{o}" in tpl else ""}
            sents.insert(rng.randint(1, len(sents)), tpl.format(**kw))
        return self.document(sents, day, co, key, None, meta)
