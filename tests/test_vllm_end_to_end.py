"""Ingest with LLM extraction and ask with the Auto-RAG loop, through a real vLLM server.

The model is the tiny random Llama (``tgrag.llm.tiny``): its words are noise, but every call is
real (batched chat requests, JSON-schema constrained decoding, streaming), so these tests check
the plumbing and its accounting, not the model's judgement.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tgrag.extract.llm import FACTS_PROMPT, LLMExtractor
from tgrag.model import Document, TimeInterval
from tgrag.sdk import TemporalRAG

from .vllm_support import VLLMServer
from .world import World

pytestmark = pytest.mark.slow

DOCS = [
    Document(
        "Acme Corp reported revenue of $4.1 billion in the second quarter. "
        "Jane Smith, chief executive officer of Acme Corp, presented the results.",
        period=TimeInterval.quarter(2024, 2),
        subject="Acme Corp",
        source="acme-q2.txt",
    ),
    Document(
        "Revenue was $4.4 billion in the third quarter, up from last quarter.",
        period=TimeInterval.quarter(2024, 3),
        subject="Acme Corp",
        source="acme-q3.txt",
    ),
]


def _bounded(schema: Any, items: int, chars: int) -> Any:
    """The reply schema with short lists and strings: a random model never chooses to close a
    list or a string, so only tight bounds let its constrained output finish and validate."""
    if isinstance(schema, dict):
        if schema.get("type") == ["number", "null"]:
            return {"type": "null"}  # nor does it stop writing digits
        out = {k: _bounded(v, items, chars) for k, v in schema.items()}
        if "maxItems" in out:
            out["maxItems"] = items
        if "maxLength" in out:
            out["maxLength"] = chars
        return out
    if isinstance(schema, list):
        return [_bounded(v, items, chars) for v in schema]
    return schema


# The built-in prompt with bounds a random model can meet (its own version: its own cache keys).
TINY_PROMPT = replace(
    FACTS_PROMPT, version=FACTS_PROMPT.version + "-tiny", schema=_bounded(FACTS_PROMPT.schema, 2, 24)
)


def test_ingest_with_llm_extraction_through_vllm(vllm_server: VLLMServer, tmp_path: Path) -> None:
    cache = tmp_path / "extract-cache.sqlite"
    extractor = LLMExtractor(vllm_server.spec, cache=cache, max_tokens=512, retries=1, prompt=TINY_PROMPT)
    with TemporalRAG.open(tmp_path / "store", extractor=extractor) as rag:
        report = rag.ingest(DOCS)
        assert len(report.added) == len(DOCS)
        stats = extractor.stats
        chunks = stats.chunks
        assert chunks >= len(DOCS)
        # Every chunk was asked of the server (batched: one call per round, not per chunk) and
        # either gave a validated reply or was skipped with a reason.
        assert stats.requests >= chunks
        assert stats.llm_calls <= stats.requests
        assert stats.skipped == 0 or stats.reasons
        assert rag.workspace.store.integrity_check() == "ok"
        assert {d.source for d in rag.documents()} == {"acme-q2.txt", "acme-q3.txt"}
        answered = chunks - stats.skipped
        # With the bounded schema every reply is valid JSON; what the noise says is then checked
        # against the chunk: only facts whose sentence is in the document are stored.
        assert answered == chunks
        stored = list(rag.workspace.store.fact_rows())
        assert len(stored) <= stats.facts  # merging can only make fewer
        assert all(any(f.text in d.text for d in DOCS) for f in stored)
        assert stats.facts + stats.facts_dropped > 0, "the replies carried facts to check"
    # The same chunks again (a rebuilt store, same cache file): validated replies come from the
    # cache and the server is asked only about the chunks skipped before.
    again = LLMExtractor(vllm_server.spec, cache=cache, max_tokens=512, retries=1, prompt=TINY_PROMPT)
    with TemporalRAG.open(tmp_path / "store2", extractor=again) as rag:
        rag.ingest(DOCS)
    assert again.stats.cached == answered
    assert again.stats.requests >= chunks - answered


def test_ask_through_vllm_plans_retrieves_and_streams(
    vllm_server: VLLMServer, world: World, world_store: TemporalRAG
) -> None:
    question = "What was the revenue of Asteria Labs and Borealis Shipping in Q2 2024?"
    deltas: list[str] = []
    streamed = world_store.ask(question, llm=vllm_server.spec, max_iter=3, on_delta=deltas.append)
    trace = streamed.trace
    assert 1 <= trace.iterations <= 3
    assert trace.finish_reason in ("answer", "max_iter", "no_new_evidence")
    assert trace.queries[0] == question
    assert trace.usage.prompt_tokens > 0, "the planner's calls are counted"
    assert deltas and "".join(deltas) == streamed.answer.text
    shown = [ev for step in trace.steps for ev in step.passages]
    assert shown, "retrieval found the companies' Q2 2024 facts"
    # Citations are passages the loop read, with their times.
    shown_texts = {ev.text for ev in shown}
    assert streamed.answer.citations
    assert all(c.text in shown_texts and c.time for c in streamed.answer.citations)
    # Greedy decoding: the same question without streaming takes the same steps and writes the same text.
    plain = world_store.ask(question, llm=vllm_server.spec, max_iter=3)
    assert plain.trace.queries == trace.queries
    assert plain.answer.text == streamed.answer.text
    assert plain.trace.usage.completion_tokens > trace.usage.completion_tokens  # + the writer's call


def test_our_server_streams_rag_answers_and_passes_through_to_vllm(
    vllm_server: VLLMServer, world_store: TemporalRAG
) -> None:
    """The whole path: openai client -> tgrag serve (model tgrag, agent on vLLM) -> vLLM."""
    import openai

    from tgrag.server import ServerSettings, create_app

    from .test_server import running_server

    settings = ServerSettings(llm=vllm_server.spec, max_iter=2)
    with running_server(create_app(world_store, settings)) as base:
        api = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=120)
        assert {m.id for m in api.models.list().data} == {"tgrag", vllm_server.model}
        question = [{"role": "user", "content": "What was Asteria Labs's revenue in Q2 2024?"}]
        whole = api.chat.completions.create(model="tgrag", messages=question)
        chunks = list(api.chat.completions.create(model="tgrag", messages=question, stream=True))
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == whole.choices[0].message.content  # greedy: the same text either way
        extension = whole.model_extra["tgrag"]
        assert extension["citations"] and all(c["time"] for c in extension["citations"])
        assert 1 <= extension["trace"]["iterations"] <= 2
        # Another model name goes to the upstream vLLM server as it is.
        direct = api.chat.completions.create(model=vllm_server.model, messages=question, max_tokens=8)
        assert direct.model == vllm_server.model
        assert 0 < direct.usage.completion_tokens <= 8
