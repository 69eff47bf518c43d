"""LangChain round trips: the retriever adapter in-process, and an LCEL chain that reaches ``tgrag serve``
through the openai client (``langchain-openai`` is not a dependency; a ``RunnableLambda`` stands in
for ``ChatOpenAI``, calling the same endpoint it would)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("fastapi")

from langchain_core.documents import Document as LCDocument
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough

from tgrag.integrations.langchain import TemporalRAGRetriever
from tgrag.sdk import TemporalRAG
from tgrag.server import ServerSettings, create_app

from .test_server import EchoLLM, client, running_server, small_store

QUESTION = "What was Borealis Shipping's revenue in Q2 2023?"


@pytest.fixture(scope="module")
def rag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalRAG]:
    store = small_store(tmp_path_factory.mktemp("langchain") / "store")
    yield store
    store.close()


@pytest.fixture(scope="module")
def base(rag: TemporalRAG) -> Iterator[str]:
    upstream = EchoLLM()
    upstream.generative = False  # tgrag's own answers stay extractive; echo-1 serves pass-through
    with running_server(create_app(rag, ServerSettings(), llm=upstream)) as url:
        yield url


def _format(inputs: dict[str, Any]) -> str:
    docs: list[LCDocument] = inputs["docs"]
    context = "\n".join(f"[{d.metadata['time']}] {d.page_content} ({d.metadata['source']})" for d in docs)
    return f"Context:\n{context}\nQuestion: {inputs['question']}"


def test_retriever_returns_documents_with_their_times(rag: TemporalRAG) -> None:
    docs = TemporalRAGRetriever(rag=rag, budget=256).invoke(QUESTION)
    assert docs and all(isinstance(d, LCDocument) for d in docs)
    assert all(d.metadata["time"] == "2023-Q2" for d in docs if d.metadata["kind"] == "fact")
    top = docs[0]
    assert top.metadata["valid_from"] == "2023-04-01" and top.metadata["valid_until"] == "2023-07-01"
    assert top.metadata["source"] == "BRLS-2023-Q2.txt" and top.metadata["doc_id"]
    # before the Q2 reports were published, the same question finds nothing
    assert TemporalRAGRetriever(rag=rag, as_of=date(2023, 6, 1)).invoke(QUESTION) == []


def test_lcel_chain_through_the_server(rag: TemporalRAG, base: str) -> None:
    api = client(base, key=None)

    def generate(prompt: str) -> str:
        reply = api.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": prompt}])
        return str(reply.choices[0].message.content)

    retriever = TemporalRAGRetriever(rag=rag, budget=256)
    chain = (
        {"docs": retriever, "question": RunnablePassthrough()}
        | RunnableLambda(_format)
        | RunnableLambda(generate)
    )
    out = chain.invoke(QUESTION)
    assert out.startswith("echo: Context:") and "[2023-Q2]" in out and "BRLS-2023-Q2.txt" in out
    assert out.endswith(f"Question: {QUESTION}")


def test_server_answer_cites_what_the_retriever_returns(rag: TemporalRAG, base: str) -> None:
    api = client(base, key=None)

    def ask(question: str) -> dict[str, Any]:
        reply = api.chat.completions.create(model="tgrag", messages=[{"role": "user", "content": question}])
        return {"text": reply.choices[0].message.content, **(reply.model_extra or {})["tgrag"]}

    both = RunnableParallel(answer=RunnableLambda(ask), docs=TemporalRAGRetriever(rag=rag)).invoke(QUESTION)
    answer, docs = both["answer"], both["docs"]
    assert answer["text"].startswith("$") and answer["text"].endswith("million")
    by_text = {d.page_content: d.metadata["time"] for d in docs}
    assert answer["citations"]
    for citation in answer["citations"]:
        assert by_text.get(citation["text"]) == citation["time"] == "2023-Q2"
