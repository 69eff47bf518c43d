"""The Auto-RAG loop: rule planning without an LLM, LLM planning, traces, citations, streaming."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from pathlib import Path

import pytest

from tgrag.agent import AutoRAG, ResultCache, RulePlanner, sub_queries
from tgrag.errors import InputError
from tgrag.llm import Generation, GenerationParams, Message, Usage
from tgrag.model import Document, RetrievalResult, TimeInterval
from tgrag.sdk import TemporalRAG

from .world import World


class ScriptedLLM:
    """A generative model that replies from a script: tests the loop's logic, not a model."""

    name = "scripted"
    generative = True

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.prompts: list[list[Message]] = []
        self.params: list[GenerationParams | None] = []

    def complete(self, prompts: Sequence[str], params: GenerationParams | None = None) -> list[Generation]:
        return self.chat([[Message("user", p)] for p in prompts], params)

    def chat(
        self, conversations: Sequence[Sequence[Message]], params: GenerationParams | None = None
    ) -> list[Generation]:
        out = []
        for conv in conversations:
            self.prompts.append(list(conv))
            self.params.append(params)
            out.append(Generation(self.replies.pop(0), Usage(10, 5), "stop", self.name))
        return out

    def stream_chat(
        self, messages: Sequence[Message], params: GenerationParams | None = None
    ) -> Iterator[str]:
        text = self.chat([messages], params)[0].text
        for i in range(0, len(text), 4):
            yield text[i : i + 4]

    def close(self) -> None:
        pass


def _decision(action: str, query: str = "", thought: str = "") -> str:
    return json.dumps({"thought": thought, "action": action, "query": query})


# ---- the rule planner's splitting ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("question", "expected"),
    [
        (
            "What was the gross margin of Crocs and Deckers in Q2 2024?",
            [
                ("Crocs", "What was the gross margin of Crocs in Q2 2024?"),
                ("Deckers", "What was the gross margin of Deckers in Q2 2024?"),
            ],
        ),
        (
            "How did Crocs revenue change from Q1 2024 to Q3 2024?",
            [
                ("Q1 2024", "What was Crocs revenue in Q1 2024?"),
                ("Q3 2024", "What was Crocs revenue in Q3 2024?"),
            ],
        ),
        (
            "What was revenue in Q2 and Q3 2024?",
            [("Q2 2024", "What was revenue in Q2 2024?"), ("Q3 2024", "What was revenue in Q3 2024?")],
        ),
        (
            "Compare Nike, Adidas and Puma revenue in 2023",
            [
                ("Nike", "Compare Nike revenue in 2023"),
                ("Adidas", "Compare Adidas revenue in 2023"),
                ("Puma", "Compare Puma revenue in 2023"),
            ],
        ),
        # one fact over a range, one company: nothing to split
        ("Which team did John Smith play for between 2006 and 2009?", []),
        ("What was Acme's revenue in Q2 2024?", []),
    ],
)
def test_sub_queries(question: str, expected: list[tuple[str, str]]) -> None:
    assert sub_queries(question) == expected


# ---- the default loop (no LLM) -------------------------------------------------------------------
def test_single_question_is_one_retrieval_and_the_extractive_answer(
    world: World, world_store: TemporalRAG
) -> None:
    q = "What was Asteria Labs's revenue in Q2 2024?"
    result = world_store.ask(q)
    assert result.trace.iterations == 1
    assert result.trace.finish_reason == "answer"
    assert [s.action for s in result.trace.steps] == ["query", "answer"]
    assert (
        result.answer.text
        == world_store.answer(q).text
        == f"${world.revenue[('Asteria Labs', 2024, 2)]} million"
    )
    assert result.answer.citations and result.answer.citations[0].time == "2024-Q2"


def test_multi_company_question_iterates_and_answers_each_part(
    world: World, world_store: TemporalRAG
) -> None:
    q = "What was the revenue of Asteria Labs and Borealis Shipping in Q2 2024?"
    deltas: list[str] = []
    result = world_store.ask(q, on_delta=deltas.append)
    trace = result.trace
    assert trace.iterations == 3
    assert trace.queries[1:] == [
        "What was the revenue of Asteria Labs in Q2 2024?",
        "What was the revenue of Borealis Shipping in Q2 2024?",
    ]
    assert [s.action for s in trace.steps] == ["query", "refine", "refine", "answer"]
    a, b = world.revenue[("Asteria Labs", 2024, 2)], world.revenue[("Borealis Shipping", 2024, 2)]
    assert result.answer.text == f"Asteria Labs: ${a} million; Borealis Shipping: ${b} million"
    assert {c.time for c in result.answer.citations} == {"2024-Q2"}
    assert "".join(deltas) == result.answer.text
    # a passage is shown once: later steps only carry what is new
    shown = [ev.item_id for step in trace.steps for ev in step.passages]
    assert len(shown) == len(set(shown))


def test_period_comparison_looks_up_each_period(world: World, world_store: TemporalRAG) -> None:
    result = world_store.ask("How did Asteria Labs' revenue change from Q1 2024 to Q3 2024?")
    r1, r3 = world.revenue[("Asteria Labs", 2024, 1)], world.revenue[("Asteria Labs", 2024, 3)]
    assert result.answer.text == f"Q1 2024: ${r1} million; Q3 2024: ${r3} million"
    assert [c.time for c in result.answer.citations] == ["2024-Q1", "2024-Q3"]


def test_max_iter_stops_the_loop(world_store: TemporalRAG) -> None:
    result = world_store.ask(
        "What was the revenue of Asteria Labs and Borealis Shipping in Q2 2024?", max_iter=2
    )
    assert result.trace.iterations == 2
    assert result.trace.finish_reason == "max_iter"
    assert not result.answer.abstained
    with pytest.raises(InputError):
        AutoRAG(world_store, max_iter=0)


def test_unknown_entity_abstains_with_the_reason(world_store: TemporalRAG) -> None:
    deltas: list[str] = []
    result = world_store.ask("What was Zephyr Dynamics' revenue in Q1 2024?", on_delta=deltas.append)
    assert result.answer.abstained
    assert result.trace.finish_reason == "abstained"
    assert "Zephyr Dynamics" in result.answer.reason
    assert "".join(deltas) == result.answer.text


def test_retriever_hook_sees_every_query(world_store: TemporalRAG) -> None:
    """Speculative retrieval plugs in here: anything with ``retrieve`` serves the loop."""
    seen: list[str] = []

    class Recording:
        def retrieve(
            self,
            question: str,
            as_of: datetime | date | None = None,
            budget: int | None = None,
            now: date | None = None,
        ) -> RetrievalResult:
            seen.append(question)
            return world_store.retrieve(question, as_of=as_of, budget=budget, now=now)

    result = AutoRAG(Recording()).run(
        "What was the revenue of Asteria Labs and Borealis Shipping in Q1 2024?"
    )
    assert seen == result.trace.queries and len(seen) == 3


# ---- LLM planning and writing --------------------------------------------------------------------
def test_llm_plans_refines_and_writes_with_citations(world: World, world_store: TemporalRAG) -> None:
    llm = ScriptedLLM(
        [
            _decision("query", "Borealis Shipping revenue Q3 2024", "need the other company"),
            _decision("answer", thought="enough"),
            "Borealis Shipping reported it [1].",
        ]
    )
    deltas: list[str] = []
    result = world_store.ask(
        "What was Borealis Shipping's revenue in Q3 2024?", llm=llm, on_delta=deltas.append
    )
    trace = result.trace
    assert trace.queries == [
        "What was Borealis Shipping's revenue in Q3 2024?",
        "Borealis Shipping revenue Q3 2024",
    ]
    assert [s.action for s in trace.steps] == ["query", "refine", "answer"]
    assert trace.steps[1].thought == "need the other company"
    assert trace.finish_reason == "answer"
    assert "".join(deltas) == result.answer.text == "Borealis Shipping reported it [1]."
    # the planner was asked for JSON following the decision schema; the writer for free text
    assert llm.params[0] is not None and llm.params[0].json_schema is not None
    assert llm.params[2] is not None and llm.params[2].json_schema is None
    # [1] cites the best passage shown, with its time
    writer_prompt = llm.prompts[2][1].content
    first_passage = writer_prompt.split("\n")[1]
    assert first_passage.startswith("[1] (")
    assert result.answer.citations[0].text in first_passage
    assert trace.usage.prompt_tokens == 20  # two planning calls counted (streamed writing has no usage)


def test_planner_output_that_does_not_parse_falls_back_to_rules(
    world_store: TemporalRAG, caplog: pytest.LogCaptureFixture
) -> None:
    llm = ScriptedLLM(["not json", '{"action": "dance"}', "Done [1]."])
    with caplog.at_level(logging.WARNING, logger="tgrag.agent"):
        result = world_store.ask("What was Asteria Labs's revenue in Q1 2024?", llm=llm)
    assert "planner output unusable" in caplog.text
    assert result.trace.finish_reason == "answer"  # the rule planner had nothing to split
    assert result.answer.text == "Done [1]."
    assert len(llm.prompts) == 3  # two tries at planning, then the writer


def test_repeated_query_ends_the_loop(world_store: TemporalRAG) -> None:
    q = "What was Asteria Labs's revenue in Q4 2023?"
    llm = ScriptedLLM([_decision("query", q), "Answer [1]."])
    result = world_store.ask(q, llm=llm, max_iter=5)
    assert result.trace.finish_reason == "no_new_evidence"
    assert result.trace.iterations == 1


# ---- speculative retrieval in the loop -----------------------------------------------------------
QUESTIONS = [
    "What was the revenue of Asteria Labs and Borealis Shipping in Q2 2024?",
    "How did Asteria Labs' revenue change from Q1 2024 to Q3 2024?",
    "What was Asteria Labs's revenue in Q4 2023?",
    "What was Zephyr Dynamics' revenue in Q1 2024?",
]


def test_speculative_loop_gives_the_plain_loop_s_trace_and_answer(world_store: TemporalRAG) -> None:
    for question in QUESTIONS:
        plain = world_store.ask(question)
        cold = world_store.ask(question, speculative=True)  # nothing to guess from yet
        warm = world_store.ask(question, speculative=True)  # every retrieval guessed from the cache
        assert cold.trace == plain.trace and warm.trace == plain.trace
        assert cold.answer == plain.answer and warm.answer == plain.answer


class _Wrong:
    """A speculator that is always wrong: every guess is the result of another question."""

    def __init__(self, wrong: RetrievalResult) -> None:
        self.wrong = wrong
        self.learned = 0

    def guess(self, key: object) -> RetrievalResult:
        return self.wrong

    def learn(self, key: object, result: RetrievalResult) -> None:
        self.learned += 1


def test_wrong_guesses_are_rolled_back(world_store: TemporalRAG) -> None:
    wrong = _Wrong(world_store.retrieve("Who was the chief executive officer of Borealis Shipping in 2023?"))
    question = QUESTIONS[0]
    plain = AutoRAG(world_store).run(question)
    agent = AutoRAG(world_store, speculative=wrong)
    try:
        rolled = agent.run(question)
    finally:
        agent.close()
    assert rolled.trace == plain.trace
    assert rolled.answer.text == plain.answer.text
    assert wrong.learned == plain.trace.iterations  # every retrieval was verified


def test_a_changed_store_is_caught_by_verification(tmp_path: Path) -> None:
    with TemporalRAG.open(tmp_path / "store") as rag:
        rag.ingest(
            [
                Document(
                    "Acme Corp reported revenue of $4.1 billion.",
                    period=TimeInterval.quarter(2024, 2),
                    subject="Acme Corp",
                )
            ]
        )
        question = "What was Acme Corp's revenue in Q2 2024?"
        assert rag.ask(question, speculative=True).answer.text == "$4.1 billion"
        rag.ingest(
            [
                Document(
                    "Acme Corp restated revenue to $3.9 billion.",
                    period=TimeInterval.quarter(2024, 2),
                    subject="Acme Corp",
                )
            ]
        )
        again = rag.ask(question, speculative=True)  # the cached guess is stale
        assert again.trace == rag.ask(question).trace
        assert rag._results.misses >= 1


def test_verification_overlaps_with_planning(world_store: TemporalRAG) -> None:
    """With a warm cache, the store's answer arrives while the (slow) planner is working."""
    import time

    class Slow:
        def retrieve(self, question: str, as_of=None, budget=None, now=None):  # type: ignore[no-untyped-def]
            time.sleep(0.15)
            return world_store.retrieve(question, as_of=as_of, budget=budget, now=now)

    class SlowPlanner(RulePlanner):
        def decide(self, state):  # type: ignore[no-untyped-def]
            time.sleep(0.15)
            return super().decide(state)

    question = QUESTIONS[0]  # three retrievals, three planning steps
    cache = ResultCache()
    warm_up = AutoRAG(Slow(), planner=SlowPlanner(), speculative=cache)
    warm_up.run(question)
    warm_up.close()
    started = time.perf_counter()
    plain = AutoRAG(Slow(), planner=SlowPlanner()).run(question)
    plain_s = time.perf_counter() - started
    agent = AutoRAG(Slow(), planner=SlowPlanner(), speculative=cache)
    started = time.perf_counter()
    fast = agent.run(question)
    fast_s = time.perf_counter() - started
    agent.close()
    assert fast.trace == plain.trace
    assert cache.hits >= 3
    assert fast_s < 0.8 * plain_s, (fast_s, plain_s)


def test_parse_json_reads_the_reply_s_value_not_an_inner_one() -> None:
    from tgrag.llm import StructuredOutputError, parse_json

    assert parse_json('Sure:\n```json\n{"action": "answer", "query": ""}\n```') == {
        "action": "answer",
        "query": "",
    }
    assert parse_json('{"a": 1, "b": "line\nbreak"}') == {"a": 1, "b": "line\nbreak"}  # raw newline accepted
    # cut short: the inner object must not pass for the answer
    with pytest.raises(StructuredOutputError, match="unfinished"):
        parse_json('{"thought": "x", "inner": {"action": "answer"}')
    # prose with a stray bracket before the JSON: a later value the caller wants is taken
    assert parse_json('[see below] {"facts": []}', wanted=lambda v: isinstance(v, dict)) == {"facts": []}
    with pytest.raises(StructuredOutputError, match="no JSON value"):
        parse_json("no json here")
