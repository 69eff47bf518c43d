"""vLLM's suffix speculative decoding (method ``"suffix"``, Arctic Inference) on tgrag's backends.

Unit tests (no vLLM): ``SuffixSpeculation`` validation and its ``speculative_config``, the
Prometheus parser, ``SpecDecodeCounts``, the launcher's command line and its startup errors.

Integration (skip without ``.venv-vllm``): a second server with suffix speculation next to the
plain ``vllm_server`` fixture, and the in-process ``vllm:`` backend with and without it; greedy
outputs must be identical, and vLLM's own counters must show drafts proposed and accepted.

Which models: the server test uses the random tiny Llama (``tiny_llama_dir``), the cheaper choice,
because the plain fixture already serves it and only one more server starts. Its greedy output
repeats one token (``::::``), which suffix trees predict almost perfectly, so that test shows the
plumbing and schema-constrained output under speculation, not realistic acceptance. The
in-process test trains a tiny Llama briefly (``train_tiny_llama``, 60 steps: 3-20 s on 2 cores,
depending on load) on extraction-shaped lines: its output is JSON-like text whose names and
numbers drafts miss, so drafts get rejected there and "identical to no speculation" is a real
check.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from tgrag.llm.speculative import SpecDecodeCounts, SuffixSpeculation
from tgrag.llm.vllm_server import (
    VLLMServer,
    VLLMServerConfig,
    VLLMServerError,
    parse_prometheus,
    stop_process_group,
)

from .vllm_support import start_tiny_server, suffix_python, tiny_server_config, vllm_env

SPECULATION = SuffixSpeculation(
    num_speculative_tokens=16,
    max_tree_depth=32,
    max_spec_factor=2.0,
    min_token_prob=0.1,
    max_cached_requests=1000,
)


def extraction_prompt(company: str, quarter: int, amount: str) -> str:
    """A few-shot JSON extraction prompt: the repetitive shape suffix decoding is made for."""
    example = (
        "Text: Globex reported revenue of $2.5 billion in Q1 2023.\n"
        'JSON: {"subject": "Globex", "relation": "reported revenue", "object": "$2.5 billion", '
        '"time": "Q1 2023"}\n'
    )
    return (
        f"Extract the fact as JSON.\n{example}"
        f"Text: {company} reported revenue of ${amount} billion in Q{quarter} 2024.\nJSON:"
    )


PROMPTS = [
    extraction_prompt("Acme Corp", 2, "4.1"),
    extraction_prompt("Initech", 3, "0.7"),
    extraction_prompt("Umbrella", 4, "12.9"),
]
ROUNDS = 3  # the same prompts again: from round 2 the global tree holds the earlier outputs
MAX_TOKENS = 48
FACT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {k: {"type": "string", "minLength": 1, "maxLength": 16} for k in ("subject", "time")},
    "required": ["subject", "time"],
    "additionalProperties": False,
}


# -- SuffixSpeculation -------------------------------------------------------------------------


def test_suffix_speculation_to_vllm() -> None:
    assert SPECULATION.to_vllm() == {
        "method": "suffix",
        "num_speculative_tokens": 16,
        "suffix_decoding_max_tree_depth": 32,
        "suffix_decoding_max_spec_factor": 2.0,
        "suffix_decoding_min_token_prob": 0.1,
        "suffix_decoding_max_cached_requests": 1000,
    }
    default = SuffixSpeculation().to_vllm()  # vLLM 0.32's defaults, the draft length made explicit
    assert default["num_speculative_tokens"] == default["suffix_decoding_max_tree_depth"] == 24
    assert default["suffix_decoding_max_cached_requests"] == 10_000
    assert json.loads(json.dumps(default)) == default  # goes to the server as JSON


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_speculative_tokens": 0}, "num_speculative_tokens must be >= 1"),
        ({"num_speculative_tokens": 2.5}, "num_speculative_tokens must be an integer"),
        ({"max_tree_depth": 0}, "max_tree_depth must be >= 1"),
        ({"max_tree_depth": True}, "max_tree_depth must be an integer"),
        ({"max_cached_requests": -1}, "max_cached_requests must be >= 0"),
        ({"max_spec_factor": -0.5}, "max_spec_factor must be >= 0"),
        ({"max_spec_factor": float("inf")}, "max_spec_factor must be a finite number"),
        ({"min_token_prob": 1.5}, r"min_token_prob must be in \[0, 1\]"),
        ({"min_token_prob": "0.1"}, "min_token_prob must be a finite number"),
    ],
)
def test_suffix_speculation_rejects_bad_values(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SuffixSpeculation(**changes)


def test_suffix_speculation_edges_are_allowed() -> None:
    spec = SuffixSpeculation(max_cached_requests=0, max_spec_factor=0, min_token_prob=1)
    assert spec.to_vllm()["suffix_decoding_max_cached_requests"] == 0  # prompt trees only


# -- metrics -----------------------------------------------------------------------------------

SAMPLE_METRICS = """\
# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts_total counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="tiny"} 40.0
vllm:spec_decode_num_drafts_created{engine="0",model_name="tiny"} 1.7e9
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="tiny"} 400.0
vllm:spec_decode_num_draft_tokens_total{engine="1",model_name="tiny"} 100.0
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="tiny"} 250.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="tiny",position="0"} 38.0
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.3",model_name="tiny"} 3.0
vllm:e2e_request_latency_seconds_bucket{engine="0",le="+Inf",model_name="tiny"} 9.0
vllm:e2e_request_latency_seconds_count{engine="0",model_name="tiny"} 9.0
vllm:e2e_request_latency_seconds_sum{engine="0",model_name="tiny"} 1.5
vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} NaN
process_start_time_seconds 1.7e9
http_requests_total{handler="/v1/completions",method="POST",status="2xx"} 12 1700000000000
garbage line
"""


def test_parse_prometheus_sums_label_sets_and_skips_buckets() -> None:
    m = parse_prometheus(SAMPLE_METRICS)
    assert m["vllm:spec_decode_num_drafts_total"] == 40
    assert "vllm:spec_decode_num_drafts_created" not in m  # a timestamp, not a count
    assert m["vllm:spec_decode_num_draft_tokens_total"] == 500  # two engines
    assert m["vllm:spec_decode_num_accepted_tokens_per_pos_total"] == 38
    assert m["vllm:e2e_request_latency_seconds_count"] == 9
    assert m["vllm:e2e_request_latency_seconds_sum"] == 1.5
    assert "vllm:e2e_request_latency_seconds_bucket" not in m
    assert m["process_start_time_seconds"] == 1.7e9
    assert m["http_requests_total"] == 12  # the trailing timestamp is not the value
    assert m["vllm:kv_cache_usage_perc"] != m["vllm:kv_cache_usage_perc"]  # NaN kept as NaN
    assert "garbage" not in m


def test_spec_decode_counts() -> None:
    after = SpecDecodeCounts.from_metrics(parse_prometheus(SAMPLE_METRICS))
    assert after == SpecDecodeCounts(drafts=40, draft_tokens=500, accepted_tokens=250)
    delta = after - SpecDecodeCounts(drafts=20, draft_tokens=300, accepted_tokens=150)
    assert delta.acceptance_rate == 0.5
    assert delta.mean_acceptance_length == 1 + 100 / 20
    assert SpecDecodeCounts.from_metrics({}) == SpecDecodeCounts()  # a server without speculation
    assert SpecDecodeCounts().acceptance_rate == SpecDecodeCounts().mean_acceptance_length == 0


# -- the launcher without vLLM -----------------------------------------------------------------


def test_server_config_command_line() -> None:
    config = VLLMServerConfig(
        "/models/tiny",
        python="/venv/bin/python",
        dtype="float32",
        max_model_len=4096,
        enforce_eager=True,
        kv_cache_gib=0.5,
        structured_outputs={"backend": "xgrammar"},
        speculative=SPECULATION,
        extra_args=("--seed", "1"),
    )
    cmd = config.command(8123)
    assert cmd[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    flags = {a: cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a.startswith("--")}
    assert flags["--served-model-name"] == "tiny" == config.name
    assert flags["--host"] == "127.0.0.1" and flags["--port"] == "8123"
    assert flags["--kv-cache-memory-bytes"] == str(2**29)
    assert "--enforce-eager" in cmd and cmd[-2:] == ["--seed", "1"]
    assert json.loads(cmd[cmd.index("--speculative-config") + 1]) == SPECULATION.to_vllm()
    assert json.loads(cmd[cmd.index("--structured-outputs-config") + 1]) == {"backend": "xgrammar"}
    env = config.process_env()
    assert env["VLLM_HOST_IP"] == "127.0.0.1" and "VLLM_CPU_KVCACHE_SPACE" not in env
    plain = VLLMServerConfig("org/model").command(9000)
    assert "--speculative-config" not in plain and "--enforce-eager" not in plain


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": ""}, "needs a model"),
        ({"port": 70000}, "port must be"),
        ({"max_model_len": 0}, "max_model_len"),
        ({"kv_cache_gib": 0}, "kv_cache_gib"),
        ({"start_timeout_s": 0}, "start_timeout_s"),
        ({"extra_args": "--seed 1"}, "extra_args"),
    ],
)
def test_server_config_rejects_bad_values(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VLLMServerConfig(**{"model": "m", **changes})


def test_server_that_exits_raises_with_its_log(tmp_path: Path) -> None:
    # An interpreter without vLLM: the "server" dies at once.
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'No module named vllm' >&2\nexit 3\n")
    fake.chmod(0o755)
    config = VLLMServerConfig("m", python=fake, start_timeout_s=30)
    with pytest.raises(VLLMServerError, match=r"exited with 3(.|\n)*No module named vllm"):
        VLLMServer.start(config, tmp_path / "server.log")


def test_server_not_healthy_in_time_is_stopped(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    pid_file = tmp_path / "pid"
    # A "server" that never answers, with a child of its own, as vLLM's engine core is.
    fake.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {pid_file}\necho starting\nwait\n")
    fake.chmod(0o755)
    config = VLLMServerConfig("m", python=fake, start_timeout_s=1.5, stop_grace_s=5)
    started = time.monotonic()
    with pytest.raises(VLLMServerError, match=r"not healthy after 2 s(.|\n)*starting"):
        VLLMServer.start(config, tmp_path / "server.log")
    assert time.monotonic() - started < 15
    child = pid_file.read_text().strip()
    stat = Path(f"/proc/{child}/stat")
    # The whole process group is gone (a zombie left to init to reap counts as gone).
    if Path("/proc").is_dir():
        assert not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] == "Z"


# -- a server with suffix speculation next to the plain one ------------------------------------


@pytest.fixture(scope="module")
def suffix_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VLLMServer]:
    suffix_python()  # skip before building the model when arctic-inference is absent
    tiny_llama_dir: Path = request.getfixturevalue("tiny_llama_dir")
    config = tiny_server_config(tiny_llama_dir, speculative=SPECULATION)
    log_path = tmp_path_factory.mktemp("vllm-suffix") / "server.log"
    with start_tiny_server(config, log_path) as server:
        yield server


def _complete(server: VLLMServer, prompt: str, max_tokens: int = MAX_TOKENS) -> str:
    from openai import OpenAI

    with OpenAI(base_url=server.base_url, api_key="EMPTY", timeout=120, max_retries=0) as client:
        reply = client.completions.create(
            model=server.model, prompt=prompt, max_tokens=max_tokens, temperature=0
        )
    return reply.choices[0].text


def _ask(server: VLLMServer) -> list[str]:
    """Every prompt, ROUNDS times, greedy, through the official client; then one schema reply."""
    from openai import OpenAI

    client = OpenAI(base_url=server.base_url, api_key="EMPTY", timeout=120, max_retries=0)
    texts = []
    for _ in range(ROUNDS):
        for prompt in PROMPTS:
            reply = client.completions.create(
                model=server.model, prompt=prompt, max_tokens=MAX_TOKENS, temperature=0
            )
            texts.append(reply.choices[0].text)
        chat = client.chat.completions.create(
            model=server.model,
            messages=[{"role": "user", "content": PROMPTS[0]}],
            max_tokens=MAX_TOKENS,
            temperature=0,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "fact", "schema": FACT_SCHEMA, "strict": True},
            },
        )
        texts.append(chat.choices[0].message.content or "")
    client.close()
    return texts


def test_suffix_server_matches_plain_server(
    suffix_server: VLLMServer, request: pytest.FixtureRequest
) -> None:
    # Asked for here, not as an argument: the session-scoped plain server would start before the
    # module-scoped fixture could skip for want of arctic-inference.
    vllm_server: VLLMServer = request.getfixturevalue("vllm_server")
    for server in (vllm_server, suffix_server):  # warm-up, so that the timings below compare
        _complete(server, "Warm up.", max_tokens=4)
    plain_before = SpecDecodeCounts.from_metrics(vllm_server.metrics())
    before = SpecDecodeCounts.from_metrics(suffix_server.metrics())
    started = time.perf_counter()
    plain = _ask(vllm_server)
    plain_s = time.perf_counter() - started
    started = time.perf_counter()
    speculated = _ask(suffix_server)
    suffix_s = time.perf_counter() - started
    counts = SpecDecodeCounts.from_metrics(suffix_server.metrics()) - before

    assert speculated == plain  # greedy output does not depend on speculation
    assert all(plain) and len(set(plain)) > 1
    json.loads(speculated[-1])  # the schema-constrained reply survived verification too
    assert counts.draft_tokens > 0 and counts.accepted_tokens > 0, counts
    assert counts.accepted_tokens <= counts.draft_tokens
    # The plain server proposes nothing.
    assert SpecDecodeCounts.from_metrics(vllm_server.metrics()) - plain_before == SpecDecodeCounts()
    print(
        f"\nsuffix server: {counts.drafts:.0f} drafts, {counts.draft_tokens:.0f} draft tokens, "
        f"{counts.accepted_tokens:.0f} accepted ({counts.acceptance_rate:.0%}), "
        f"mean acceptance length {counts.mean_acceptance_length:.2f}; "
        f"requests {suffix_s:.2f} s against {plain_s:.2f} s plain (both warm); "
        f"startup {suffix_server.startup_s:.0f} s"
    )


# -- the in-process engine ----------------------------------------------------------------------


def extraction_corpus(lines: int, seed: int = 0) -> list[str]:
    """Text and JSON lines in the shape of ``PROMPTS``, for a briefly trained tiny Llama."""
    rng = random.Random(seed)
    companies = ["Acme Corp", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell"]
    relations = ["reported revenue of", "guided revenue of", "reported a net loss of", "raised"]
    out = []
    for _ in range(lines):
        company, relation = rng.choice(companies), rng.choice(relations)
        amount, when = (
            f"${rng.randint(1, 99)}.{rng.randint(0, 9)} billion",
            f"Q{rng.randint(1, 4)} {rng.randint(2015, 2025)}",
        )
        out.append(f"Text: {company} {relation} {amount} in {when}.")
        fact = {"subject": company, "relation": relation, "object": amount, "time": when}
        out.append("JSON: " + json.dumps(fact))
    return out


# vLLM starts its engine in child processes with spawn, hence the __main__ guard. The plain engine
# runs first: it keeps no stats, so the speculative one is the only one to register metrics.
ENGINE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from tgrag.llm import GenerationParams, create_llm
    from tgrag.llm.speculative import SpecDecodeCounts, SuffixSpeculation

    def run(model_dir, prompts, max_tokens, speculative):
        llm = create_llm("vllm:" + model_dir, dtype="float32", max_model_len=4096, kv_cache_gib=1,
                         enforce_eager=True, speculative=speculative)
        texts, rounds = [], []
        for _ in range(2):  # the second round finds the first's outputs in the global tree
            before = SpecDecodeCounts.from_metrics(llm.metrics())
            texts += [g.text for g in llm.complete(prompts, GenerationParams(max_tokens=max_tokens))]
            rounds.append((SpecDecodeCounts.from_metrics(llm.metrics()) - before).__dict__)
        llm.close()
        return texts, rounds

    def main():
        model_dir, out_path, spec, max_tokens = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
        prompts = json.loads(sys.argv[5])
        plain, _ = run(model_dir, prompts, max_tokens, None)
        speculated, rounds = run(model_dir, prompts, max_tokens, SuffixSpeculation(**spec))
        with open(out_path, "w") as f:
            json.dump({"plain": plain, "speculated": speculated, "rounds": rounds}, f)

    if __name__ == "__main__":
        main()
    """
)


def test_in_process_engine_with_suffix_speculation(tmp_path: Path) -> None:
    python = suffix_python()
    from tgrag.llm.tiny import train_tiny_llama

    started = time.perf_counter()
    model_dir = train_tiny_llama(
        tmp_path / "model", extraction_corpus(300), steps=60, seq_len=64, batch_size=8
    )
    train_s = time.perf_counter() - started
    script, out, log = tmp_path / "engine.py", tmp_path / "out.json", tmp_path / "engine.log"
    script.write_text(ENGINE_SCRIPT)
    args = [str(model_dir), str(out), json.dumps(asdict(SPECULATION)), str(MAX_TOKENS), json.dumps(PROMPTS)]
    started = time.perf_counter()
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [str(python), str(script), *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=vllm_env(),
            cwd=tmp_path,
            start_new_session=True,  # the engine's children go with it on timeout
        )
        try:
            proc.wait(timeout=420)
        finally:
            stop_process_group(proc, grace_s=10)
    if proc.returncode != 0:
        sys.stderr.write(log.read_text(errors="replace")[-4000:])
    assert proc.returncode == 0, f"engine script failed; log {log}"
    result = json.loads(out.read_text())
    plain = result["plain"]
    assert result["speculated"] == plain  # greedy output does not depend on speculation
    assert len(plain) == 2 * len(PROMPTS) and all(plain)
    assert len({ch for text in plain for ch in text}) > 10, plain  # text, not one repeated token
    first, second = (SpecDecodeCounts(**r) for r in result["rounds"])
    total = first + second
    assert total.draft_tokens > 0 and total.accepted_tokens > 0, total
    assert total.accepted_tokens < total.draft_tokens  # some drafts were wrong, and were rejected
    print(
        f"\nin-process suffix engine (tiny Llama trained {train_s:.0f} s): "
        + "; ".join(
            f"round {i}: {c.drafts:.0f} drafts, {c.draft_tokens:.0f} draft tokens, "
            f"{c.accepted_tokens:.0f} accepted ({c.acceptance_rate:.0%})"
            for i, c in enumerate((first, second), 1)
        )
        + f"; script {time.perf_counter() - started:.0f} s (two engines)"
    )
