"""The Auto-RAG loop (arXiv 2411.19443): plan, retrieve, read, and decide when there is enough.

Each iteration a planner looks at the question and what has been read so far, and either emits a
query (the first, or a refined one) or a final answer. The loop retrieves from the temporal store
for each query, shows only passages not shown before, and stops at an answer, at ``max_iter``, or
when retrieval has nothing new. The result carries the answer with cited times and sources, and a
trace of every step.

Two planners: ``LLMPlanner`` asks a generative model for a JSON decision; ``RulePlanner`` (no LLM)
splits multi-company and multi-period questions into sub-queries, so the default iterates too.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, Protocol

from . import aggregate
from .answer import ExtractiveAnswerer
from .errors import InputError
from .extract.mentions import find_mentions
from .extract.values import find_values
from .llm.base import (
    LLM,
    GenerationParams,
    Message,
    StructuredOutputError,
    Usage,
    chat_one,
    create_llm,
    parse_json,
    word_deltas,
)
from .model import Answer, Citation, Evidence, RetrievalResult
from .timex import find_times

log = logging.getLogger(__name__)

FinishReason = Literal["answer", "max_iter", "no_new_evidence", "abstained"]


@dataclass(frozen=True)
class TraceStep:
    """One iteration: what the planner decided and what retrieval showed it."""

    iteration: int
    action: Literal["query", "refine", "answer"]
    query: str  # the query retrieved for ("" for an answer step)
    thought: str = ""  # the planner's reason, when it gives one
    part: str = ""  # the company or period this query covers, for a multi-part question
    passages: tuple[Evidence, ...] = ()  # passages shown for the first time in this step


@dataclass(frozen=True)
class AgentTrace:
    steps: tuple[TraceStep, ...]
    iterations: int
    finish_reason: FinishReason
    usage: Usage = field(default_factory=Usage)

    @property
    def queries(self) -> list[str]:
        return [s.query for s in self.steps if s.query]


@dataclass(frozen=True)
class AgentResult:
    answer: Answer  # text, citations (time, source), abstention
    trace: AgentTrace


# Called with each piece of the final answer's text as it is produced (for streaming).
DeltaCallback = Callable[[str], None]


class Retriever(Protocol):
    """Where the loop gets passages: a ``TemporalRAG``, or anything wrapping one.

    This is the hook for speculative retrieval: a wrapper with the same method can serve queries
    from a local cache and verify them against the store in batches.
    """

    def retrieve(
        self,
        question: str,
        as_of: datetime | date | None = None,
        budget: int | None = None,
        now: date | None = None,
    ) -> RetrievalResult: ...


@dataclass(frozen=True)
class Decision:
    action: Literal["query", "answer"]
    query: str = ""
    thought: str = ""
    part: str = ""  # the company or period a sub-query covers


@dataclass
class AgentState:
    """What a planner sees: the question, the queries so far and every passage shown."""

    question: str
    queries: list[str] = field(default_factory=list)
    results: list[RetrievalResult] = field(default_factory=list)
    shown: list[Evidence] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)


class Planner(Protocol):
    def decide(self, state: AgentState) -> Decision:
        """The next query, or ``answer`` when what has been read is enough."""
        ...


# ---- the rule planner (no LLM) -------------------------------------------------------------------
# What may sit between two names of a list: a comma or a conjunction, after an optional corporate
# suffix that the name itself left out ("Skechers U.S.A., Inc., Crocs").
_LIST_GLUE = re.compile(
    r"^\.?\s*(?:,\s*(?:inc|corp|co|ltd|plc|llc|n\.v|l\.p|s\.a|ag|se)\b\.?)?"
    r"\s*(?:,\s*(?:and\s+|or\s+)?|and\s+|or\s+|&\s*|vs\.?\s+|versus\s+)$",
    re.IGNORECASE,
)
_COMPARE = re.compile(
    r"\b(change[ds]?|compar\w*|differ\w*|grow|grew|growth|increas\w*|decreas\w*|ris[ei]n?g?|rose|fell|fall\w*|"
    r"declin\w*|improv\w*|versus|vs)\b",
    re.IGNORECASE,
)
_RANGE = re.compile(r"^(?:from|between)\s+(.+?)\s+(?:to|and|through|until)\s+(.+)$", re.IGNORECASE)
_PARTS = re.compile(r"\b([QH][1-4])((?:\s*,\s*[QH][1-4])*)\s*(?:,\s*)?(?:and|&)\s+([QH][1-4])\s+(\d{4})\b")
_LEADING_VERBS = frozenset("compare list show tell give find contrast describe summarize summarise".split())


class RulePlanner:
    """Splits multi-company and multi-period questions into one sub-query each, then answers.

    "What was the gross margin of Crocs and Deckers in Q2 2024?" becomes a query per company;
    "How did revenue change from Q1 2024 to Q3 2024?" a query per period. The first retrieval
    (the whole question) has already run when ``decide`` is first called.
    """

    def decide(self, state: AgentState) -> Decision:
        # Stateless: the next part is the first one not yet queried, so a speculative loop can
        # roll the state back and ask again.
        for part, query in sub_queries(state.question):
            if query not in state.queries:
                return Decision("query", query, f"the part of the question about {part}", part)
        return Decision("answer", thought="every part of the question has been looked up")


def sub_queries(question: str) -> list[tuple[str, str]]:
    """(part, query): one per company of a coordinated list, and one per period of a comparison."""
    out: list[tuple[str, str]] = []
    group = _coordinated_entities(question)
    if group is not None:
        # "Which company had the highest X among A and B" asks for X of A, then of B.
        lookup = _as_lookup(question)
        lookup_group = _coordinated_entities(lookup) if lookup != question else None
        if lookup_group is not None:
            question, group = lookup, lookup_group
        start, end, names = group
        before = re.sub(r"\bamong\s*$", "of ", question[:start], flags=re.IGNORECASE)
        out += [(name, before + name + question[end:]) for name in names]
    compare = bool(_COMPARE.search(question))
    periods = _periods(question, compare)
    if periods is not None:
        # "How did revenue change from Q1 to Q3" looks up "What was revenue in Q1", then in Q3.
        question = _as_lookup(question)
        periods = _periods(question, compare) or periods
        start, end, labels = periods
        before = re.sub(r"\b(?:between|from)\s*$", "", question[:start], flags=re.IGNORECASE)
        lead = "" if re.search(r"\b(?:in|for|during|at|of|on)\s*$", before, re.IGNORECASE) else "in "
        out += [(label, before + lead + label + question[end:]) for label in labels]
    unique = {q: (part, q) for part, q in reversed(out) if q != question}
    return list(reversed(unique.values()))


_HOW_CHANGE = re.compile(
    r"^\s*how (?:did|has|have|does|do|much did|much has) (.+?) (?:change[ds]?|grow|grown|increase[ds]?|"
    r"decrease[ds]?|rise|risen|fall|fallen|decline[ds]?|improve[ds]?|evolve[ds]?|move[ds]?)\b\s*",
    re.IGNORECASE,
)


_WHICH_EXTREME = re.compile(
    r"^\s*(?:in\s+)?(?:which|what)\s+\w+\s+(?:did\s+(.+?)\s+\w+|had|has|achieved|reported|experienced|"
    r"posted|saw|recorded|delivered|showed)\s+(?:the\s+)?(?:highest|lowest|largest|smallest|biggest|"
    r"greatest|strongest|weakest|best|worst|most|least|maximum|minimum)\s+",
    re.IGNORECASE,
)


def _as_lookup(question: str) -> str:
    """The question a part of a comparison asks: "What was revenue in Q1 2024?"."""
    m = _HOW_CHANGE.match(question)
    if m:
        return f"What was {m.group(1)} {question[m.end() :]}"
    m = _WHICH_EXTREME.match(question)
    if m:
        subject = f"{m.group(1)}'s " if m.group(1) else "the "
        return f"What was {subject}{question[m.end() :]}"
    return question


def _coordinated_entities(question: str) -> tuple[int, int, list[str]] | None:
    mentions = []
    for m in find_mentions(question):
        text, start = m.text, m.start
        first, _, rest = text.partition(" ")
        if rest and first.lower() in _LEADING_VERBS:  # "Compare Nike" is the verb and a name
            text, start = rest, start + len(first) + 1
        if any(t.start == 0 and t.end >= len(text) - 1 for t in find_times(text)):
            continue  # "2026-Q2" is a period, not a company
        mentions.append((start, start + len(text), text))
    best: list[tuple[int, int, str]] = []
    run: list[tuple[int, int, str]] = []
    for span in mentions:
        if run and _LIST_GLUE.match(question[run[-1][1] : span[0]]):
            run.append(span)
        else:
            run = [span]
        if len(run) > len(best):
            best = list(run)
    if len(best) < 2:
        return None
    return best[0][0], best[-1][1], [t for _, _, t in best]


def _periods(question: str, compare: bool) -> tuple[int, int, list[str]] | None:
    """(start, end, period texts) of the question's times, when it asks about several periods."""
    m = _PARTS.search(question)
    if m:  # "Q2 and Q3 2024": the year is written once
        parts = [m.group(1), *re.findall(r"[QH][1-4]", m.group(2)), m.group(3)]
        return m.start(), m.end(), [f"{p} {m.group(4)}" for p in parts]
    times = find_times(question)
    if len(times) >= 2:
        labels = list(dict.fromkeys(t.text for t in times))
        if len(labels) >= 2:
            return times[0].start, times[-1].end, labels
    if len(times) == 1 and compare:
        r = _RANGE.match(times[0].text)
        if r and all(find_times(part) for part in r.groups()):
            return times[0].start, times[0].end, [r.group(1), r.group(2)]
    return None


# ---- the LLM planner ---------------------------------------------------------------------------
DECISION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        # Bounded so that a model constrained to the schema always closes the object.
        "thought": {"type": "string", "maxLength": 240},
        "action": {"type": "string", "enum": ["query", "answer"]},
        "query": {"type": "string", "maxLength": 200},
    },
    "required": ["thought", "action", "query"],
    "additionalProperties": False,
}


def planning_messages(state: AgentState, max_passages: int = 12) -> list[Message]:
    """The prompt for one planning step; its reply follows ``DECISION_SCHEMA``."""
    system = (
        "You answer questions about facts that change over time, using a search tool over a "
        "temporal knowledge base. Each passage shows the time it is valid for. Decide the next "
        'step and reply with JSON only: {"thought": why, "action": "query" or "answer", "query": '
        "the next search query (a refined or narrower one than before), or an empty string when "
        "you answer}. Answer when the passages are enough, or when searching again would not help."
    )
    lines = [f"Question: {state.question}", "", "Queries so far:"]
    lines += [f"- {q}" for q in state.queries] or ["- (none)"]
    lines += ["", "Passages read:"]
    lines += [_passage_line(i, ev) for i, ev in enumerate(state.shown[:max_passages], 1)] or ["(none)"]
    return [Message("system", system), Message("user", "\n".join(lines))]


class LLMPlanner:
    """Asks a generative model for each decision; falls back to the rule planner on bad output."""

    # 512 tokens: room for the bounded schema even at one character a token.
    def __init__(self, llm: LLM, retries: int = 1, max_tokens: int = 512) -> None:
        self.llm = llm
        self.retries = retries
        self.params = GenerationParams(max_tokens=max_tokens, temperature=0.0, json_schema=DECISION_SCHEMA)
        self._fallback = RulePlanner()

    def decide(self, state: AgentState) -> Decision:
        messages = planning_messages(state)
        problem = ""
        for _ in range(1 + self.retries):
            try:
                gen = chat_one(self.llm, messages, self.params)
            except StructuredOutputError as exc:
                problem = str(exc)
                continue
            state.usage = state.usage + gen.usage
            try:
                return _decision(parse_json(gen.text))
            except (StructuredOutputError, ValueError) as exc:
                problem = str(exc)
        log.warning("planner output unusable (%s); planning this step by rules", problem)
        return self._fallback.decide(state)


def _decision(value: Any) -> Decision:
    if not isinstance(value, dict):
        raise ValueError("the decision is not a JSON object")
    action = value.get("action")
    query = str(value.get("query") or "").strip()
    thought = str(value.get("thought") or "").strip()
    if action == "answer":
        return Decision("answer", thought=thought)
    if action == "query" and query:
        return Decision("query", query, thought)
    raise ValueError(f"action {action!r} with query {query!r}")


def _passage_line(i: int, ev: Evidence) -> str:
    where = f"; {ev.source}" if ev.source else ""
    return f"[{i}] ({ev.time.label or 'undated'}{where}) {ev.text}"


# ---- answer writing ----------------------------------------------------------------------------
ANSWER_SYSTEM = (
    "Answer the question from the numbered passages only, briefly, for the time the question asks "
    "about. Cite the passages you use as [n]. If they do not contain the answer, say you don't know."
)


def answer_messages(question: str, passages: Sequence[Evidence]) -> list[Message]:
    lines = [
        "Passages:",
        *(_passage_line(i, ev) for i, ev in enumerate(passages, 1)),
        "",
        f"Question: {question}",
    ]
    return [Message("system", ANSWER_SYSTEM), Message("user", "\n".join(lines))]


_CITED = re.compile(r"\[(\d{1,3})\]")


# ---- speculative retrieval ---------------------------------------------------------------------
SpeculationKey = tuple[str, "datetime | date | None", "int | None", "date | None"]


class RetrievalSpeculator(Protocol):
    """Guesses a retrieval's result before the store answers (RaLMSpec's idea, for whole queries).

    A guess only has to be right often: every guess is verified against the store and a wrong one
    is rolled back, so the loop's trace never depends on it.
    """

    def guess(self, key: SpeculationKey) -> RetrievalResult | None: ...

    def learn(self, key: SpeculationKey, result: RetrievalResult) -> None: ...


class ResultCache:
    """Guesses that a query retrieves what it retrieved last time (bounded, least recently used).

    Agent loops and servers see the same sub-queries again and again; until the store changes,
    the guess is right and the store's answer arrives while the planner is already working.
    """

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._results: OrderedDict[SpeculationKey, RetrievalResult] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0  # guesses the store contradicted

    def guess(self, key: SpeculationKey) -> RetrievalResult | None:
        with self._lock:
            result = self._results.get(key)
            if result is not None:
                self._results.move_to_end(key)
            return result

    def learn(self, key: SpeculationKey, result: RetrievalResult) -> None:
        with self._lock:
            previous = self._results.get(key)
            if previous is not None:
                if previous == result:
                    self.hits += 1
                else:
                    self.misses += 1
            self._results[key] = result
            self._results.move_to_end(key)
            while len(self._results) > self.size:
                self._results.popitem(last=False)


# ---- the loop ----------------------------------------------------------------------------------
class AutoRAG:
    """``AutoRAG(rag, llm).run(question)``: iterate retrieval until the planner answers.

    ``llm`` is a spec string or an ``LLM``; a non-generative one (the default, ``extractive``)
    plans by rules and answers extractively. ``retriever`` defaults to ``rag`` itself.
    """

    def __init__(
        self,
        rag: Retriever,
        llm: LLM | str | None = None,
        *,
        max_iter: int = 4,
        planner: Planner | None = None,
        answerer: ExtractiveAnswerer | None = None,
        answer_passages: int = 12,
        answer_max_tokens: int = 256,
        speculative: bool | RetrievalSpeculator = False,
    ) -> None:
        if max_iter < 1:
            raise InputError(f"max_iter must be at least 1, not {max_iter}")
        self.retriever = rag
        self.llm = create_llm(llm)
        self.max_iter = max_iter
        self._planner = planner
        self.answerer = answerer or ExtractiveAnswerer()
        self.answer_passages = answer_passages
        self.answer_params = GenerationParams(max_tokens=answer_max_tokens, temperature=0.0)
        # Speculative retrieval: a guess from the speculator is read at once and verified by the
        # store in a worker thread while the planner works; a wrong guess is rolled back, so the
        # trace is the one the plain loop produces.
        self.speculator: RetrievalSpeculator | None = (
            ResultCache() if speculative is True else (speculative or None)
        )
        self._pool: ThreadPoolExecutor | None = None

    def _verifier(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tgrag-verify")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def run(
        self,
        question: str,
        as_of: datetime | date | None = None,
        budget: int | None = None,
        now: date | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> AgentResult:
        planner = self._planner or (LLMPlanner(self.llm) if self.llm.generative else RulePlanner())
        state = AgentState(question)
        steps: list[TraceStep] = []
        seen: set[str] = set()
        decision = Decision("query", question, "start from the question itself")
        finish: FinishReason = "max_iter"
        speculator = self.speculator

        def retrieve(query: str) -> RetrievalResult:
            return self.retriever.retrieve(query, as_of=as_of, budget=budget, now=now)

        def read(iteration: int, decision: Decision, result: RetrievalResult) -> None:
            fresh = tuple(ev for ev in result.evidence if _key(ev) not in seen)
            seen.update(_key(ev) for ev in fresh)
            action: Literal["query", "refine"] = "refine" if state.queries else "query"
            steps.append(TraceStep(iteration, action, decision.query, decision.thought, decision.part, fresh))
            state.queries.append(decision.query)
            state.results.append(result)
            state.shown.extend(fresh)

        for iteration in range(1, self.max_iter + 1):
            if decision.action == "answer":
                steps.append(TraceStep(iteration, "answer", "", decision.thought))
                finish = "answer"
                break
            if decision.query in state.queries:
                finish = "no_new_evidence"  # the planner repeats itself: nothing more to learn
                break
            step = decision
            key = (step.query, as_of, budget, now)
            guess = speculator.guess(key) if speculator is not None else None
            if speculator is None or guess is None:
                result = retrieve(step.query)
                if speculator is not None:
                    speculator.learn(key, result)
                read(iteration, step, result)
                if iteration < self.max_iter:
                    decision = planner.decide(state)
                continue
            # Speculate: read the guess and plan the next step while the store verifies it.
            mark = (len(steps), len(state.queries), len(state.shown), set(seen))
            verification = self._verifier().submit(retrieve, step.query)
            read(iteration, step, guess)
            if iteration < self.max_iter:
                decision = planner.decide(state)
            true = verification.result()
            speculator.learn(key, true)
            if true != guess:  # roll back to before this step and go on from the true result
                del (
                    steps[mark[0] :],
                    state.queries[mark[1] :],
                    state.results[mark[1] :],
                    state.shown[mark[2] :],
                )
                seen.clear()
                seen.update(mark[3])
                read(iteration, step, true)
                if iteration < self.max_iter:
                    decision = planner.decide(state)
        if not state.shown:
            first = state.results[0] if state.results else None
            reason = first.reason if first is not None and first.reason else "no evidence in the store"
            answer = Answer(question, f"No answer: {reason}.", (), True, reason, first)
            _emit(answer.text, on_delta)
            trace = AgentTrace(tuple(steps), len(state.queries), "abstained", state.usage)
            return AgentResult(answer, trace)
        if self.llm.generative:
            answer = self._write(question, state, on_delta)
        else:
            answer = self._by_parts(question, state, steps) or self.answerer.answer(_merged(question, state))
            _emit(answer.text, on_delta)
        return AgentResult(answer, AgentTrace(tuple(steps), len(state.queries), finish, state.usage))

    def _by_parts(self, question: str, state: AgentState, steps: list[TraceStep]) -> Answer | None:
        """ "Crocs: $1.1 billion; Deckers: $825 million": each part answered from its own query."""
        parts = [(s.part, state.results[state.queries.index(s.query)]) for s in steps if s.part]
        if len(parts) < 2:
            return None
        answers = [(part, self.answerer.answer(result)) for part, result in parts]
        if any(a.abstained for _, a in answers):
            return None  # a part with no evidence: let the whole question's evidence speak
        citations = tuple(dict.fromkeys(c for _, a in answers for c in a.citations))
        high = aggregate.asks_extreme(question)
        numbers = [find_values(a.text) for _, a in answers]
        if high is not None and all(numbers):
            # "Which company had the highest margin among A, B and C": the part with the extreme.
            pick = (max if high else min)(range(len(answers)), key=lambda i: numbers[i][0].number)
            part, best = answers[pick]
            return Answer(question, part, best.citations, False, "", _merged(question, state))
        text = "; ".join(f"{part}: {a.text}" for part, a in answers)
        return Answer(question, text, citations, False, "", _merged(question, state))

    def _write(self, question: str, state: AgentState, on_delta: DeltaCallback | None) -> Answer:
        passages = sorted(state.shown, key=lambda ev: -ev.score)[: self.answer_passages]
        messages = answer_messages(question, passages)
        if on_delta is None:
            gen = chat_one(self.llm, messages, self.answer_params)
            state.usage = state.usage + gen.usage
            text = gen.text
        else:
            pieces = []
            for delta in self.llm.stream_chat(messages, self.answer_params):
                pieces.append(delta)
                on_delta(delta)
            text = "".join(pieces)
        cited = [int(n) - 1 for n in _CITED.findall(text) if 0 < int(n) <= len(passages)]
        used = list(dict.fromkeys(cited)) or list(range(min(3, len(passages))))
        citations = tuple(Citation.of(passages[i]) for i in used)
        # Not stripped: the answer's text is exactly what was streamed.
        return Answer(question, text, citations, False, "", _merged(question, state))


def _merged(question: str, state: AgentState) -> RetrievalResult:
    """Everything the loop read, as one retrieval result for the question."""
    first = state.results[0]
    entities = tuple(dict.fromkeys(e for r in state.results for e in r.entities))
    return RetrievalResult(question, first.scope, tuple(state.shown), False, "", entities, first.as_of)


def _key(ev: Evidence) -> str:
    return ev.item_id or ev.text


def _emit(text: str, on_delta: DeltaCallback | None) -> None:
    if on_delta is not None:
        for piece in word_deltas(text):
            on_delta(piece)
