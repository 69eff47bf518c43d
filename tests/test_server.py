"""``tgrag serve``: the OpenAI-compatible server, driven by the official ``openai`` client over loopback.

One small store (eight generated quarterly reports, real embeddings) is served by uvicorn in a
background thread; stand-ins for the store and the upstream model cover what a real store cannot
be made to do on demand (be busy, fail, stream slowly).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

import uvicorn  # noqa: E402

from tgrag.agent import AgentResult, AgentTrace  # noqa: E402
from tgrag.errors import InputError, StoreLockedError  # noqa: E402
from tgrag.llm.base import Generation, GenerationParams, Message, Usage  # noqa: E402
from tgrag.model import Answer, Document  # noqa: E402
from tgrag.sdk import TemporalRAG  # noqa: E402
from tgrag.server import ServerSettings, create_app, load_api_keys  # noqa: E402
from tgrag.server.config import read_key_file  # noqa: E402

from .world import generate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEY = "tgrag-test-key-5f0c2a9e"
OTHER_KEY = "tgrag-test-key-second"
ANSWERABLE = "What was Asteria Labs's revenue in Q1 2023?"
OUT_OF_TIME = "What was Asteria Labs's revenue in Q1 2019?"


# ---- helpers (also used by test_langchain_roundtrip.py) -------------------------------------------


def small_store(path: Path) -> TemporalRAG:
    """Two companies' quarterly reports for 2023 (eight), each known from its publication day."""
    rag = TemporalRAG.open(path)

    def published(doc: Document) -> datetime:
        assert doc.date is not None
        return datetime(doc.date.year, doc.date.month, doc.date.day, 12, tzinfo=timezone.utc)

    docs = [d for d in generate(seed=7).documents if (d.key or "").startswith(("ASTL-2023", "BRLS-2023"))]
    assert len(docs) == 8
    rag.ingest(docs, ingested_at=published)
    return rag


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields the base URL."""
    port = free_port()
    # log_config=None: uvicorn's records (access log included) propagate to the root logger.
    # A port, not a pre-bound socket: handed a socket, uvicorn answered ~40 ms slower per request here.
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=True, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def client(base: str, key: str | None = KEY) -> Any:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key or "none", max_retries=0, timeout=60)


# ---- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalRAG]:
    store = small_store(tmp_path_factory.mktemp("server") / "store")
    yield store
    store.close()


@pytest.fixture(scope="module")
def base(rag: TemporalRAG) -> Iterator[str]:
    settings = ServerSettings(
        api_keys=(KEY, OTHER_KEY), max_request_bytes=64 * 1024, max_documents_per_request=5
    )
    with running_server(create_app(rag, settings)) as url:
        yield url


@pytest.fixture(scope="module")
def api(base: str) -> Any:
    return client(base)


@pytest.fixture(scope="module")
def http(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
        yield c


def _ask(api: Any, question: str, **kwargs: Any) -> Any:
    return api.chat.completions.create(
        model="tgrag", messages=[{"role": "user", "content": question}], **kwargs
    )


def _tgrag(obj: Any) -> dict[str, Any]:
    """The ``tgrag`` extension field, which the openai client keeps as an extra attribute."""
    extra = obj.model_extra or {}
    assert "tgrag" in extra, f"no tgrag extension in {obj}"
    return dict(extra["tgrag"])


# ---- models and chat ------------------------------------------------------------------------------


def test_models_lists_tgrag(api: Any) -> None:
    ids = [m.id for m in api.models.list()]
    assert ids == ["tgrag"]  # no upstream model configured
    assert api.models.retrieve("tgrag").owned_by == "tgrag"


def test_chat_answers_for_the_asked_time_with_cited_times(api: Any) -> None:
    reply = _ask(api, ANSWERABLE)
    assert reply.object == "chat.completion" and reply.model == "tgrag"
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert choice.message.content == "$680 million"
    ext = _tgrag(reply)
    assert not ext["abstained"]
    assert ext["citations"], ext
    assert all(c["time"] == "2023-Q1" for c in ext["citations"])
    assert any("$680 million" in c["text"] and c["source"] == "ASTL-2023-Q1.txt" for c in ext["citations"])
    assert ext["trace"]["iterations"] >= 1 and ext["trace"]["steps"][0]["query"]
    assert reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_chat_abstains_outside_the_covered_time(api: Any) -> None:
    reply = _ask(api, OUT_OF_TIME)
    ext = _tgrag(reply)
    assert ext["abstained"] and ext["reason"] and not ext["citations"]
    assert reply.choices[0].message.content.startswith("No answer")


def test_as_of_extension_hides_what_was_not_yet_known(api: Any) -> None:
    # Q2 reports were published in the summer of 2023: on 2023-06-01 only Q1 was known.
    question = "What was Asteria Labs's revenue in Q2 2023?"
    early = _tgrag(_ask(api, question, extra_body={"as_of": "2023-06-01"}))
    late = _tgrag(_ask(api, question, extra_body={"as_of": "2024-01-01", "budget": 256, "max_iter": 2}))
    assert early["abstained"]
    assert not late["abstained"] and all(c["time"] == "2023-Q2" for c in late["citations"])


def test_streaming_matches_the_whole_answer(api: Any) -> None:
    whole = _ask(api, ANSWERABLE)
    chunks = list(_ask(api, ANSWERABLE, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2  # really in pieces
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].choices[0].finish_reason == "stop"
    assert _tgrag(finishing[0])["citations"] == _tgrag(whole)["citations"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


def test_stream_without_usage_ends_with_done(http: httpx.Client) -> None:
    body = {"model": "tgrag", "stream": True, "messages": [{"role": "user", "content": ANSWERABLE}]}
    with http.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    payloads = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(p["object"] == "chat.completion.chunk" and "usage" not in p for p in payloads)
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop" and "tgrag" in payloads[-1]


def test_completions_whole_and_streamed(api: Any) -> None:
    whole = api.completions.create(model="tgrag", prompt=ANSWERABLE)
    assert whole.object == "text_completion" and whole.choices[0].text == "$680 million"
    assert _tgrag(whole)["citations"]
    pieces = list(api.completions.create(model="tgrag", prompt=ANSWERABLE, stream=True))
    assert "".join(p.choices[0].text for p in pieces if p.choices) == whole.choices[0].text
    assert pieces[-1].choices[0].finish_reason == "stop"


# ---- errors ---------------------------------------------------------------------------------------


def test_wrong_or_missing_key_is_401(base: str) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        client(base, key="not-the-key").models.list()
    assert info.value.status_code == 401 and info.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    resp = httpx.get(f"{base}/v1/models")
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    assert client(base, key=OTHER_KEY).models.list().data  # every configured key works


def test_health_is_open_even_with_keys(base: str) -> None:
    resp = httpx.get(f"{base}/health")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


def test_unknown_model_is_404(api: Any) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        api.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]


@pytest.mark.parametrize(
    ("messages", "extra", "param"),
    [
        ([], {}, "messages"),
        ([{"role": "user", "content": "q"}], {"as_of": "2024-13-01"}, "as_of"),
        ([{"role": "user", "content": "q"}], {"as_of": 20240101}, "as_of"),
        ([{"role": "user", "content": "q"}], {"now": "yesterday-ish"}, "now"),
        ([{"role": "user", "content": "q"}], {"budget": 0}, "budget"),
        ([{"role": "user", "content": "q"}], {"max_iter": 1000}, "max_iter"),
        ([{"role": "system", "content": "only a system message"}], {}, "messages"),
        ([{"role": "wizard", "content": "q"}], {}, "messages.0.role"),
    ],
)
def test_bad_requests_are_400_naming_the_parameter(
    api: Any, messages: list[dict[str, str]], extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        api.chat.completions.create(model="tgrag", messages=messages, extra_body=extra)
    body = info.value.body
    assert body["type"] == "invalid_request_error" and body["param"] == param, body  # type: ignore[index]


def test_raw_http_errors(http: httpx.Client) -> None:
    too_big = http.post(
        "/v1/retrieve", content=b"x" * (65 * 1024), headers={"content-type": "application/json"}
    )
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "request_too_large"

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        for _ in range(20):
            yield b" " * 4096

    assert http.post("/v1/retrieve", content=chunked()).status_code == 413
    bad_json = http.post(
        "/v1/chat/completions",
        content=b'{"model": "tgrag", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
    assert http.post("/v1/chat/completions", json=[1, 2]).status_code == 400
    gone = http.delete("/v1/documents/no-such-document")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "document_not_found"
    assert http.get("/v1/nothing-here").status_code == 404
    wrong_method = http.get("/v1/chat/completions")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    many = http.post("/v1/documents", json={"documents": [{"text": f"Doc {i}."} for i in range(6)]})
    assert many.status_code == 413 and many.json()["error"]["code"] == "too_many_documents"
    for resp in (too_big, bad_json, gone, wrong_method, many):
        assert "Traceback" not in resp.text


# ---- documents and retrieval ----------------------------------------------------------------------


def test_documents_added_are_retrieved_then_deleted(http: httpx.Client, api: Any) -> None:
    record = {
        "text": "Zephyr Dynamics reported revenue of $913 million in the third quarter of 2023.",
        "period": "2023-Q3",
        "date": "2023-10-20",
        "subject": "Zephyr Dynamics",
        "source": "ZPHR-2023-Q3.txt",
        "key": "ZPHR-2023-Q3",
    }
    added = http.post("/v1/documents", json={"documents": [record, {"no_text": True}]})
    assert added.status_code == 200, added.text
    report = added.json()
    assert len(report["added"]) == 1 and report["facts_created"] >= 1
    assert [s["position"] for s in report["skipped"]] == [1]  # the bad record is reported, not fatal

    query = {"query": "What was Zephyr Dynamics' revenue in Q3 2023?"}
    found = http.post("/v1/retrieve", json=query).json()
    assert not found["abstained"]
    hit = next(e for e in found["evidence"] if "$913 million" in e["text"])
    assert (
        hit["time"] == "2023-Q3" and hit["valid_from"] == "2023-07-01" and hit["source"] == "ZPHR-2023-Q3.txt"
    )
    assert found["scope"]["time"] == "2023-Q3"
    assert (
        _ask(api, "What was Zephyr Dynamics' revenue in Q3 2023?").choices[0].message.content
        == "$913 million"
    )

    deleted = http.delete("/v1/documents/ZPHR-2023-Q3")
    assert deleted.status_code == 200 and deleted.json()["deleted"] and deleted.json()["facts_removed"] >= 1
    after = http.post("/v1/retrieve", json=query).json()
    assert not any("$913 million" in e["text"] for e in after["evidence"])
    assert http.delete("/v1/documents/ZPHR-2023-Q3").status_code == 404


def test_retrieve_scopes_by_time_and_as_of(http: httpx.Client) -> None:
    resp = http.post("/v1/retrieve", json={"query": ANSWERABLE, "budget": 128})
    assert "tgrag;dur=" in resp.headers["server-timing"]  # the server's own time, for clients to subtract
    scoped = resp.json()
    assert scoped["evidence"] and sum(e["tokens"] for e in scoped["evidence"]) <= 128
    early = http.post("/v1/retrieve", json={"query": ANSWERABLE, "as_of": "2023-01-15"}).json()
    assert early["abstained"] and early["reason"] and not early["evidence"]
    assert http.post("/v1/retrieve", json={"query": "   "}).status_code == 400


def test_metrics_count_requests_by_route_and_status(http: httpx.Client, api: Any) -> None:
    _ask(api, ANSWERABLE)
    httpx.get(http.base_url.join("/v1/models"))  # no key: a 401 counted under its route
    resp = http.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = resp.text
    assert 'tgrag_http_requests_total{route="/v1/chat/completions",method="POST",status="200"}' in text
    assert 'tgrag_http_requests_total{route="/v1/models",method="GET",status="401"}' in text
    assert 'tgrag_http_request_duration_seconds_bucket{route="/v1/chat/completions",le="+Inf"}' in text
    assert 'tgrag_tokens_total{model="tgrag",kind="completion"}' in text
    for line in text.splitlines():  # every sample line is "name{labels} number"
        if line and not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])
    assert httpx.get(http.base_url.join("/metrics")).status_code == 401  # metrics need the key too


def test_api_key_never_logged(base: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret_wrong = "wrong-key-that-must-not-be-logged-7d1e"
    with pytest.raises(openai.AuthenticationError) as info:
        client(base, key=secret_wrong).models.list()
    assert secret_wrong not in str(info.value.body)
    _ask(client(base), ANSWERABLE)
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.args}" for r in caplog.records)
    assert any(r.name == "uvicorn.access" for r in caplog.records), "the access log was not captured"
    assert "rejected GET /v1/models" in logged
    for secret in (KEY, OTHER_KEY, secret_wrong):
        assert secret not in logged
    assert KEY not in repr(ServerSettings(api_keys=(KEY,)))


# ---- stand-ins: busy store, failures, upstream pass-through, real streaming -----------------------


def _result(text: str) -> AgentResult:
    return AgentResult(Answer("q", text), AgentTrace((), 1, "answer", Usage(3, 2)))


class StandInRAG:
    """Answers after ``delay`` seconds, sending its words one by one; or fails as told."""

    def __init__(self, delay: float = 0.0, fail: BaseException | None = None, fail_after_delta: bool = False):
        self.delay, self.fail, self.fail_after_delta = delay, fail, fail_after_delta

    def ask(self, question: str, on_delta: Callable[[str], None] | None = None, **kwargs: Any) -> AgentResult:
        if self.fail is not None and not self.fail_after_delta:
            raise self.fail
        time.sleep(self.delay)
        text = "one two three"
        for i, word in enumerate(text.split()):
            if on_delta is not None:
                on_delta(word if i == 0 else " " + word)
            if self.fail is not None:
                raise self.fail
        return _result(text)

    def retrieve(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals /srv/tgrag/store.sqlite")


class EchoLLM:
    """An upstream model that echoes the last message, streaming a word every ``pause`` seconds."""

    name = "echo-1"
    generative = True

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause

    def complete(self, prompts: Sequence[str], params: GenerationParams | None = None) -> list[Generation]:
        return [
            Generation(f"echo: {p}", Usage(len(p.split()), 1 + len(p.split())), "stop", self.name)
            for p in prompts
        ]

    def chat(
        self, conversations: Sequence[Sequence[Message]], params: GenerationParams | None = None
    ) -> list[Generation]:
        return self.complete([c[-1].content for c in conversations], params)

    def stream_chat(
        self, messages: Sequence[Message], params: GenerationParams | None = None
    ) -> Iterator[str]:
        for i, word in enumerate(f"echo: {messages[-1].content}".split()):
            time.sleep(self.pause)
            yield word if i == 0 else " " + word

    def close(self) -> None:
        pass


def test_busy_store_is_503_and_failures_are_500_without_traceback() -> None:
    settings = ServerSettings(busy_timeout_s=0.2, workers=2)
    with running_server(create_app(StandInRAG(delay=1.5), settings)) as url:
        results: list[int] = []

        def call() -> None:
            r = httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": "tgrag", "messages": [{"role": "user", "content": "q"}]},
                timeout=30,
            )
            results.append(r.status_code)

        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [200, 503]
        broken = httpx.post(f"{url}/v1/retrieve", json={"query": "q"})
        assert broken.status_code == 500
        assert broken.json()["error"]["code"] == "internal_error"
        assert "secret internals" not in broken.text and "Traceback" not in broken.text
    with running_server(create_app(StandInRAG(fail=StoreLockedError("locked by pid 42")))) as url:
        locked = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "tgrag", "stream": True, "messages": [{"role": "user", "content": "q"}]},
        )
        assert locked.status_code == 503 and locked.headers["retry-after"] == "1"  # even when streaming


def test_failure_mid_stream_reaches_the_client_as_an_error() -> None:
    app = create_app(StandInRAG(fail=RuntimeError("boom"), fail_after_delta=True))
    with running_server(app) as url:
        stream = client(url).chat.completions.create(
            model="tgrag", messages=[{"role": "user", "content": "q"}], stream=True
        )
        with pytest.raises(openai.APIError, match="internal error"):
            list(stream)


def test_other_models_pass_through_to_the_upstream_and_stream_for_real() -> None:
    app = create_app(StandInRAG(), ServerSettings(), llm=EchoLLM(pause=0.25))
    with running_server(app) as url:
        api = client(url)
        assert [m.id for m in api.models.list()] == ["tgrag", "echo-1"]
        reply = api.chat.completions.create(
            model="echo-1",
            messages=[
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": "hello there"},
            ],
        )
        assert reply.choices[0].message.content == "echo: hello there"
        assert reply.model_extra is None or reply.model_extra.get("tgrag") is None
        batch = api.completions.create(model="echo-1", prompt=["a", "b c"])
        assert [c.text for c in batch.choices] == ["echo: a", "echo: b c"] and batch.usage.prompt_tokens == 3

        started = time.monotonic()
        arrivals = []
        stream = api.chat.completions.create(
            model="echo-1", messages=[{"role": "user", "content": "one two three four"}], stream=True
        )
        pieces = []
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.monotonic() - started)
                pieces.append(chunk.choices[0].delta.content)
        assert "".join(pieces) == "echo: one two three four"
        # five words, 0.25 s apart: the first arrives long before the last is produced
        assert arrivals[0] < 0.9 and arrivals[-1] - arrivals[0] > 0.6, arrivals


# ---- configuration and the command line -----------------------------------------------------------


def test_key_file_and_environment(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# team keys\n\nalpha\n  beta  \n#gamma\nalpha\n")
    assert read_key_file(keys) == ("alpha", "beta", "alpha")
    assert load_api_keys(keys, {"TGRAG_API_KEY": "delta"}) == ("alpha", "beta", "delta")
    assert load_api_keys(None, {}) == ()
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(InputError, match="holds no keys"):
        load_api_keys(tmp_path / "empty", {})
    with pytest.raises(InputError, match="cannot read"):
        load_api_keys(tmp_path / "missing", {})


def test_serve_command_end_to_end(rag: TemporalRAG, tmp_path: Path) -> None:
    """``tgrag serve`` in its own process: the environment key is enforced and never printed."""
    port = free_port()
    env = {**os.environ, "TGRAG_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
    store = rag.workspace.path
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tgrag.cli",
            "serve",
            "--store",
            str(store),
            "--port",
            str(port),
            "--budget",
            "256",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "tgrag serve did not come up"
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
        reply = _ask(client(f"http://127.0.0.1:{port}"), ANSWERABLE)
        assert reply.choices[0].message.content == "$680 million"
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0]
    assert "serving" in output and "1 API key(s)" in output
    assert KEY not in output


def test_serve_command_errors_are_one_line(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tgrag.cli", "serve", *args],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )

    missing = run("--store", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and missing.stderr.strip().startswith("error: no store at")
    assert "Traceback" not in missing.stderr
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "store.sqlite").touch()
    nokeys = run("--store", str(tmp_path / "store"), "--api-key-file", str(tmp_path / "absent"))
    assert nokeys.returncode == 2 and "cannot read the API key file" in nokeys.stderr
    assert len(nokeys.stderr.strip().splitlines()) == 1


def test_as_of_dates_parse_like_the_cli() -> None:
    from tgrag.server.schemas import RetrieveRequest

    assert RetrieveRequest(query="q", as_of="2024-06").as_of == date(2024, 6, 1)  # type: ignore[arg-type]
    moment = RetrieveRequest(query="q", as_of="2024-06-30T12:00:00Z").as_of  # type: ignore[arg-type]
    assert isinstance(moment, datetime) and moment.tzinfo is not None
