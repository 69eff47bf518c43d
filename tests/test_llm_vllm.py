"""The ``openai`` backend against a real vLLM server, and the in-process ``vllm`` backend.

The model is the tiny random Llama: its words are noise, so the tests check what a backend
owes whatever the model says: batch order, token counts that match the tokenizer, limits,
stop strings, determinism, schema-constrained JSON, streaming and error messages.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tgrag.llm import GenerationParams, LLMError, Message, create_llm, parse_json
from tgrag.llm.openai_api import OpenAILLM, parse_spec

from .vllm_support import VLLMServer, free_port, vllm_env, vllm_python

_TEXT = {"type": "string", "minLength": 1, "maxLength": 16}
# Bounded so that even a random model finishes well inside its token budget.
FACTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {k: _TEXT for k in ("subject", "relation", "object", "time")},
                "required": ["subject", "relation", "object", "time"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["facts"],
    "additionalProperties": False,
}

PROMPTS = ["The company", "Revenue in Q3 2021 was", "Who joined the club in 1998 and left?"]
CONVERSATIONS = [
    [Message("system", "You are terse."), Message("user", "Revenue in Q3 2021 was $12.5 million.")],
    [Message("user", "Who joined?")],
    [
        Message("user", "What was the guidance?"),
        Message("assistant", "Growth."),
        Message("user", "And margin?"),
    ],
]


def validate(value: Any, schema: dict[str, Any], path: str = "$") -> None:
    """The subset of JSON Schema used here (jsonschema is not a test dependency)."""
    kind = schema.get("type")
    if kind == "object":
        assert isinstance(value, dict), f"{path}: not an object"
        for key in schema.get("required", []):
            assert key in value, f"{path}: missing {key!r}"
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(props), f"{path}: extra keys {set(value) - set(props)}"
        for key, sub in props.items():
            if key in value:
                validate(value[key], sub, f"{path}.{key}")
    elif kind == "array":
        assert isinstance(value, list), f"{path}: not an array"
        assert schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)), path
        for i, item in enumerate(value):
            validate(item, schema["items"], f"{path}[{i}]")
    elif kind == "string":
        assert isinstance(value, str), f"{path}: not a string"
        assert schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)), path


@pytest.fixture(scope="module")
def llm(vllm_server: VLLMServer) -> Iterator[Any]:
    backend = create_llm(vllm_server.spec)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def tokenizer(vllm_server: VLLMServer) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(vllm_server.model_dir)


def chat_prompt_tokens(tokenizer: Any, conversation: list[Message]) -> int:
    rendered = tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in conversation],
        tokenize=False,
        add_generation_prompt=True,
    )
    return len(tokenizer(rendered, add_special_tokens=False).input_ids)


# -- no server needed --------------------------------------------------------------------------


def test_parse_spec() -> None:
    assert parse_spec("http://127.0.0.1:8000/v1#tiny") == ("http://127.0.0.1:8000/v1", "tiny")
    assert parse_spec("127.0.0.1:9000/v1/") == ("http://127.0.0.1:9000/v1", None)
    assert parse_spec("") == ("http://127.0.0.1:8000/v1", None)


def test_unreachable_server_is_one_line_llm_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(LLMError) as err:
        create_llm(f"openai:{url}", max_retries=0, timeout=5)  # asks /v1/models for a name
    message = str(err.value)
    assert url in message and "\n" not in message and "Traceback" not in message
    llm = OpenAILLM(url, "tiny", max_retries=0, timeout=5)
    for call in (
        lambda: llm.complete(["a", "b"]),
        lambda: llm.chat([[Message("user", "a")]]),
        lambda: list(llm.stream_chat([Message("user", "a")])),
    ):
        with pytest.raises(LLMError, match="cannot connect") as err:
            call()
        assert url in str(err.value) and "\n" not in str(err.value)
    llm.close()


def test_vllm_backend_without_vllm_says_how_to_install() -> None:
    pytest.importorskip("tgrag.llm.vllm_engine")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(LLMError, match=r"tgrag\[vllm\]"):
            create_llm("vllm:/nonexistent")
    else:  # pragma: no cover - the test environment does not carry vLLM
        pytest.skip("vllm is importable here")


# -- the openai backend against vLLM ---------------------------------------------------------


def test_model_name_is_discovered(vllm_server: VLLMServer) -> None:
    backend = create_llm(f"openai:{vllm_server.base_url}")
    assert backend.name == vllm_server.model
    backend.close()


def test_complete_batch_order_usage_and_limits(llm: Any, tokenizer: Any) -> None:
    params = GenerationParams(max_tokens=12)
    batch = llm.complete(PROMPTS, params)
    assert len(batch) == len(PROMPTS)
    # Order: each position matches the same prompt sent alone, and its prompt's token count.
    for prompt, gen in zip(PROMPTS, batch, strict=True):
        alone = llm.complete([prompt], params)[0]
        assert gen.text == alone.text
        assert gen.usage.prompt_tokens == len(tokenizer(prompt).input_ids) > 0
        assert 0 < gen.usage.completion_tokens <= 12
        if gen.usage.completion_tokens == 12:
            assert gen.finish_reason == "length"
        assert gen.model == "tiny"
    assert len({g.usage.prompt_tokens for g in batch}) == len(PROMPTS)  # distinct, so order is checked
    assert [g.text for g in llm.complete(PROMPTS, params)] == [g.text for g in batch]  # greedy is stable


def test_chat_batch_order_usage_and_limits(llm: Any, tokenizer: Any) -> None:
    params = GenerationParams(max_tokens=10)
    batch = llm.chat(CONVERSATIONS, params)
    counts = [chat_prompt_tokens(tokenizer, c) for c in CONVERSATIONS]
    assert len(set(counts)) == len(counts)
    assert [g.usage.prompt_tokens for g in batch] == counts
    for gen in batch:
        assert 0 < gen.usage.completion_tokens <= 10
        assert gen.finish_reason == ("length" if gen.usage.completion_tokens == 10 else "stop")
    assert [g.text for g in llm.chat(CONVERSATIONS, params)] == [g.text for g in batch]


def test_stop_strings_are_honoured(llm: Any) -> None:
    full = llm.complete(["The company"], GenerationParams(max_tokens=24))[0].text
    stop = full[len(full) // 2 :][:2]  # a piece from the second half of the greedy output
    assert stop.strip(), full
    cut = llm.complete(["The company"], GenerationParams(max_tokens=24, stop=(stop,)))[0]
    assert cut.text == full[: full.index(stop)]
    assert len(cut.text) < len(full) and cut.finish_reason == "stop"


def test_seeded_sampling_is_reproducible(llm: Any) -> None:
    params = GenerationParams(max_tokens=16, temperature=1.0, seed=11)
    first = llm.complete(PROMPTS, params)
    assert [g.text for g in llm.complete(PROMPTS, params)] == [g.text for g in first]


def test_json_schema_output_validates(llm: Any) -> None:
    params = GenerationParams(max_tokens=400, json_schema=FACTS_SCHEMA)
    conversation = [Message("user", "List the facts in: Acme hired Bo as CFO in 2021.")]
    outputs = llm.complete(["Facts as JSON:", "Revenue in Q3 2021"], params) + llm.chat(
        [conversation], params
    )
    for gen in outputs:
        assert gen.finish_reason == "stop", gen.text
        validate(parse_json(gen.text), FACTS_SCHEMA)


def test_stream_chat_joins_to_chat_text(llm: Any) -> None:
    messages = CONVERSATIONS[0]
    for params in (GenerationParams(max_tokens=16), GenerationParams(max_tokens=16, temperature=1.0, seed=5)):
        whole = llm.chat([messages], params)[0].text
        deltas = list(llm.stream_chat(messages, params))
        assert len(deltas) > 1 and "".join(deltas) == whole
    assert len(set(whole)) > 1  # the sampled reply is not a single repeated character


def test_server_error_is_one_line_llm_error(vllm_server: VLLMServer) -> None:
    backend = create_llm(f"openai:{vllm_server.base_url}#no-such-model")
    with pytest.raises(LLMError, match="HTTP 404") as err:
        backend.complete(["hello"])
    assert vllm_server.base_url in str(err.value) and "\n" not in str(err.value)
    backend.close()


# -- the in-process vllm backend ---------------------------------------------------------------

# vLLM starts its engine in child processes with spawn, hence the __main__ guard.
ENGINE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from tgrag.llm import GenerationParams, Message, create_llm

    def main():
        model_dir, schema_path, out_path = sys.argv[1:4]
        schema = json.loads(open(schema_path).read())
        prompts = json.loads(sys.argv[4])
        llm = create_llm("vllm:" + model_dir, dtype="float32", max_model_len=4096, kv_cache_gib=1,
                         enforce_eager=True)
        greedy = llm.complete(prompts, GenerationParams(max_tokens=12))
        structured = llm.complete(["Facts as JSON:"], GenerationParams(max_tokens=400, json_schema=schema))
        chat = llm.chat([[Message("user", "Who joined?")]], GenerationParams(max_tokens=8))
        streamed = list(llm.stream_chat([Message("user", "Who joined?")], GenerationParams(max_tokens=8)))
        rows = [[g.text, g.usage.prompt_tokens, g.usage.completion_tokens, g.finish_reason, g.model]
                for g in greedy + structured + chat]
        with open(out_path, "w") as f:
            json.dump({"rows": rows, "streamed": streamed}, f)
        llm.close()

    if __name__ == "__main__":
        main()
    """
)


def test_in_process_vllm_backend_matches_the_server(
    vllm_server: VLLMServer, llm: Any, tmp_path: Path
) -> None:
    python = vllm_python()
    script, schema_path, out = tmp_path / "engine.py", tmp_path / "schema.json", tmp_path / "out.json"
    script.write_text(ENGINE_SCRIPT)
    schema_path.write_text(json.dumps(FACTS_SCHEMA))
    log = tmp_path / "engine.log"
    with open(log, "wb") as f:
        proc = subprocess.run(
            [
                str(python),
                str(script),
                str(vllm_server.model_dir),
                str(schema_path),
                str(out),
                json.dumps(PROMPTS),
            ],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=vllm_env(),
            cwd=tmp_path,
            timeout=300,
        )
    if proc.returncode != 0:
        sys.stderr.write(log.read_text(errors="replace")[-4000:])
    assert proc.returncode == 0, f"engine script failed; log {log}"
    result = json.loads(out.read_text())
    rows = result["rows"]
    greedy, structured, chat = rows[: len(PROMPTS)], rows[len(PROMPTS)], rows[-1]
    server = llm.complete(PROMPTS, GenerationParams(max_tokens=12))
    # Same weights, same greedy decoding, same kernels: the same text and counts as the server.
    for row, gen in zip(greedy, server, strict=True):
        assert row[:4] == [gen.text, gen.usage.prompt_tokens, gen.usage.completion_tokens, gen.finish_reason]
        assert row[4] == vllm_server.model_dir.name
    assert structured[3] == "stop"
    validate(parse_json(structured[0]), FACTS_SCHEMA)
    assert chat[2] <= 8 and "".join(result["streamed"]) == chat[0]
