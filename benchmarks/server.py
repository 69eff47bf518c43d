"""Server benchmark: what ``tgrag serve`` adds over the SDK, and how it holds up under load.

    python benchmarks/server.py [--quick] [--data ../shared/data/ect-qa-2024] [--out FILE]

Measured, with the server in its own process (``tgrag serve``) on loopback:
- overhead: p50 of ``rag.retrieve`` in-process against p50 of ``POST /v1/retrieve`` for the same
  questions on the same store (one client, keep-alive; the two are interleaved question by question
  so that load from elsewhere on the machine hits both alike), and, per request, the round trip less
  the server's own time in the store (its ``Server-Timing`` header): what HTTP, JSON and the thread
  hop add, which other load on the machine cannot blur;
- load: ``--clients`` concurrent clients (default 50) asking ``/v1/chat/completions`` (model
  ``tgrag``) for ``--seconds`` (60; quick: 10): requests, errors, p50/p95 latency, requests/s;
- vLLM (unless ``--no-vllm``; needs ``.venv-vllm``): a real vLLM server on the tiny local Llama,
  its tokens/s (a batch of 8 and one request, 128 greedy tokens each), and the end-to-end latency
  of ``ask`` with that model planning and writing, in-process and through ``tgrag serve --llm``,
  against the extractive ``ask`` on the same questions.
The store is ECT-QA 2024 (quick: its first 24 transcripts) when ``--data`` holds it, else a
generated world (eval/datasets/world.py). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from report import emit, run_info  # noqa: E402

from tgrag.model import Document  # noqa: E402
from tgrag.sdk import TemporalRAG  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ect-qa-2024"
OVERHEAD_TARGET_MS = 5.0


def corpus(data: Path, quick: bool) -> tuple[str, list[Document], list[str]]:
    """(name, documents, questions): ECT-QA when present, else a generated world."""
    if (data / "corpus.jsonl.gz").exists():
        from eval.datasets import ectqa

        docs = ectqa.load_corpus(data)
        if quick:
            docs = docs[:24]
        questions = [item.question for item in ectqa.load_questions(data / "questions.jsonl")]
        return f"ect-qa-2024 ({len(docs)} transcripts)", docs, questions
    from eval.datasets import world

    w = world.generate("small")
    return f"generated world ({len(w.documents)} documents)", w.documents, [q.question for q in w.questions]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(store: Path, port: int, llm: str | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tgrag.cli", "-q", "serve", "--store", str(store), "--port", str(port)]
    if llm:
        cmd += ["--llm", llm]
    proc = subprocess.Popen(
        [*cmd, "--no-access-log"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tgrag serve exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("tgrag serve did not come up within 120 s")


def server_seconds(header: str) -> float:
    """The sum of a ``Server-Timing`` header's durations (milliseconds), in seconds."""
    total = 0.0
    for metric in header.split(","):
        for param in metric.split(";")[1:]:
            name, _, value = param.strip().partition("=")
            if name == "dur":
                total += float(value)
    return total / 1000


def _ms(values: list[float], q: float) -> float:
    """The q-th percentile of durations in seconds, in milliseconds."""
    return round(float(np.percentile(np.asarray(values) * 1000, q)), 2)


def overhead(store: Path, base: str, questions: list[str], repeats: int) -> dict[str, Any]:
    inproc: list[float] = []
    remote: list[float] = []
    served: list[float] = []  # the server's own time for each request (Server-Timing)
    with TemporalRAG.open(store) as rag, httpx.Client(base_url=base, timeout=60) as http:
        for q in questions[:5]:  # warm both: model, caches, connection
            rag.retrieve(q)
            http.post("/v1/retrieve", json={"query": q}).raise_for_status()
        for _ in range(repeats):
            for q in questions:
                started = time.perf_counter()
                rag.retrieve(q)
                inproc.append(time.perf_counter() - started)
                started = time.perf_counter()
                resp = http.post("/v1/retrieve", json={"query": q})
                remote.append(time.perf_counter() - started)
                resp.raise_for_status()
                served.append(server_seconds(resp.headers.get("server-timing", "")))
    p50_in, p50_http = _ms(inproc, 50), _ms(remote, 50)
    # What HTTP adds to each request: its round trip less the time the server spent in the store
    # (waiting for and running rag.retrieve). Measured on the same request, so load from elsewhere
    # on the machine, which moves both p50s above, cancels out.
    added = [r - s for r, s in zip(remote, served, strict=True)]
    return {
        "queries": len(inproc),
        "retrieve_inprocess_ms_p50": p50_in,
        "retrieve_inprocess_ms_p95": _ms(inproc, 95),
        "retrieve_http_ms_p50": p50_http,
        "retrieve_http_ms_p95": _ms(remote, 95),
        "retrieve_server_side_ms_p50": _ms(served, 50),
        "overhead_ms_p50": round(p50_http - p50_in, 2),
        "overhead_per_request_ms_p50": _ms(added, 50),
        "overhead_per_request_ms_p95": _ms(added, 95),
        "overhead_target_ms": OVERHEAD_TARGET_MS,
    }


async def load(base: str, questions: list[str], clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    rng = random.Random(0)
    order = [rng.choice(questions) for _ in range(100_000)]
    counter = iter(range(len(order)))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits) as http:
        deadline = time.perf_counter() + seconds

        async def one_client() -> None:
            while time.perf_counter() < deadline:
                q = order[next(counter) % len(order)]
                body = {"model": "tgrag", "messages": [{"role": "user", "content": q}]}
                started = time.perf_counter()
                try:
                    resp = await http.post("/v1/chat/completions", json=body)
                    ok = (
                        resp.status_code == 200
                        and resp.json()["choices"][0]["message"]["content"] is not None
                    )
                    kind = "" if ok else f"http {resp.status_code}"
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    kind = type(exc).__name__
                if kind:
                    errors[kind] = errors.get(kind, 0) + 1
                else:
                    latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": len(latencies) + sum(errors.values()),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "latency_ms_p50": _ms(latencies, 50) if latencies else None,
        "latency_ms_p95": _ms(latencies, 95) if latencies else None,
        "requests_per_s": round(len(latencies) / elapsed, 2),
    }


def with_vllm(store: Path, questions: list[str], n_questions: int, tmp: Path) -> dict[str, Any]:
    """A real vLLM server (``.venv-vllm``) on the tiny local Llama: its tokens/s, and the end-to-end
    latency of ``ask`` with the model planning and writing (SDK, and through ``tgrag serve``)."""
    from tgrag.llm import GenerationParams, create_llm
    from tgrag.llm.tiny import build_tiny_llama
    from tgrag.llm.vllm_server import COMPACT_JSON, VLLMServer, VLLMServerConfig

    vllm_venv = Path(os.environ.get("TGRAG_VLLM_VENV", ROOT / ".venv-vllm"))
    if not (vllm_venv / ".installed").exists():
        return {"skipped": f"{vllm_venv} is not built (make vllm-env)"}
    model_dir = build_tiny_llama(tmp / "tiny-llama")
    config = VLLMServerConfig(
        model_dir,
        python=vllm_venv / "bin" / "python",
        served_name="tiny",
        dtype="float32",
        max_model_len=4096,
        enforce_eager=True,
        kv_cache_gib=2,
        structured_outputs=COMPACT_JSON,
        env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    vllm = VLLMServer.start(config, tmp / "vllm.log")
    out: dict[str, Any] = {"server_start_s": round(vllm.startup_s, 1)}
    try:
        llm = create_llm(vllm.spec)
        prompts = [f"Question {i}: what was revenue in Q{i % 4 + 1} 2024?" for i in range(8)]
        params = GenerationParams(max_tokens=128, temperature=0.0)
        llm.complete(prompts[:1], GenerationParams(max_tokens=4))  # warm-up
        started = time.perf_counter()
        batch = llm.complete(prompts, params)
        seconds = time.perf_counter() - started
        out["tokens_per_s_batch8"] = round(sum(g.usage.completion_tokens for g in batch) / seconds, 1)
        started = time.perf_counter()
        one = llm.complete(prompts[:1], params)[0]
        out["tokens_per_s_single"] = round(one.usage.completion_tokens / (time.perf_counter() - started), 1)
        sample = questions[:n_questions]
        sdk_s: list[float] = []
        extractive_s: list[float] = []
        with TemporalRAG.open(store) as rag:
            for q in sample:
                t0 = time.perf_counter()
                rag.ask(q)
                t1 = time.perf_counter()
                rag.ask(q, llm=llm, max_iter=2)
                t2 = time.perf_counter()
                extractive_s.append(t1 - t0)
                sdk_s.append(t2 - t1)
        port = free_port()
        server = start_server(store, port, llm=vllm.spec)
        http_s: list[float] = []
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
                for q in sample:
                    t0 = time.perf_counter()
                    body = {"model": "tgrag", "messages": [{"role": "user", "content": q}], "max_iter": 2}
                    client.post("/v1/chat/completions", json=body).raise_for_status()
                    http_s.append(time.perf_counter() - t0)
        finally:
            server.terminate()
            server.wait(30)
        out.update(
            questions=len(sample),
            ask_extractive_ms_p50=_ms(extractive_s, 50),
            ask_vllm_sdk_ms_p50=_ms(sdk_s, 50),
            ask_vllm_sdk_ms_p95=_ms(sdk_s, 95),
            ask_vllm_http_ms_p50=_ms(http_s, 50),
            ask_vllm_http_ms_p95=_ms(http_s, 95),
        )
    finally:
        vllm.stop()
    return out


def table(result: dict[str, Any]) -> str:
    o, lo = result["overhead"], result["load"]
    rows = [
        (
            "retrieve in-process p50 / p95 (ms)",
            f"{o['retrieve_inprocess_ms_p50']} / {o['retrieve_inprocess_ms_p95']}",
        ),
        ("POST /v1/retrieve p50 / p95 (ms)", f"{o['retrieve_http_ms_p50']} / {o['retrieve_http_ms_p95']}"),
        ("difference of the p50s (ms)", f"{o['overhead_ms_p50']}"),
        (
            "HTTP overhead per request p50 / p95 (ms)",
            f"{o['overhead_per_request_ms_p50']} / {o['overhead_per_request_ms_p95']} "
            f"(round trip less server time; target p50 <= {OVERHEAD_TARGET_MS})",
        ),
        (
            f"chat load: {lo['clients']} clients x {lo['seconds']} s",
            f"{lo['requests']} requests, {lo['errors']} errors",
        ),
        ("chat latency p50 / p95 (ms)", f"{lo['latency_ms_p50']} / {lo['latency_ms_p95']}"),
        ("chat throughput (req/s)", str(lo["requests_per_s"])),
    ]
    v = result.get("vllm", {})
    if "tokens_per_s_batch8" in v:
        rows += [
            ("vLLM (tiny Llama) start (s)", str(v["server_start_s"])),
            (
                "vLLM tokens/s: batch of 8 / single",
                f"{v['tokens_per_s_batch8']} / {v['tokens_per_s_single']}",
            ),
            ("ask p50, extractive (ms)", str(v["ask_extractive_ms_p50"])),
            ("ask p50 / p95 with vLLM, SDK (ms)", f"{v['ask_vllm_sdk_ms_p50']} / {v['ask_vllm_sdk_ms_p95']}"),
            (
                "ask p50 / p95 with vLLM, HTTP (ms)",
                f"{v['ask_vllm_http_ms_p50']} / {v['ask_vllm_http_ms_p95']}",
            ),
        ]
    elif v:
        rows.append(("vLLM", v.get("skipped", "")))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="ECT-QA folder (else a generated world)"
    )
    parser.add_argument("--quick", action="store_true", help="24 transcripts, a 10 s load test")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, help="load test length (default 60; quick: 10)")
    parser.add_argument(
        "--repeats", type=int, help="passes over the questions for the overhead (default 3; quick: 1)"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    parser.add_argument("--no-vllm", action="store_true", help="skip the vLLM part (tokens/s, ask latency)")
    args = parser.parse_args(argv)
    seconds = args.seconds or (10.0 if args.quick else 60.0)
    repeats = args.repeats or (1 if args.quick else 3)
    name, docs, questions = corpus(args.data, args.quick)
    result: dict[str, Any] = {
        **run_info(args.quick),
        "corpus": name,
        "questions": len(questions),
    }
    with tempfile.TemporaryDirectory(prefix="tgrag-server-bench-") as tmp:
        store = Path(tmp) / "store"
        print(f"ingesting {name} ...", flush=True)
        with TemporalRAG.open(store) as rag:
            rag.ingest(docs)
        port = free_port()
        server = start_server(store, port)
        base = f"http://127.0.0.1:{port}"
        try:
            print(f"overhead: {len(questions)} questions x {repeats}, in-process vs HTTP ...", flush=True)
            result["overhead"] = overhead(store, base, questions, repeats)
            print(f"load: {args.clients} clients for {seconds:g} s on /v1/chat/completions ...", flush=True)
            result["load"] = asyncio.run(load(base, questions, args.clients, seconds))
        finally:
            server.terminate()
            server.wait(30)
        if not args.no_vllm:
            print("vLLM: tiny model server, tokens/s, ask latency ...", flush=True)
            result["vllm"] = with_vllm(store, questions, 10 if args.quick else 40, Path(tmp))
    print(table(result))
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
