"""The ``transformers`` backend over a tiny random Llama built here: its output is noise, but batching,
usage counts, stop strings, streaming, seeds and errors are real code paths."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tgrag.llm import GenerationParams, LLMError, Message, create_llm, hf, parse_json
from tgrag.llm.hf import TransformersLLM
from tgrag.llm.tiny import build_tiny_llama

PROMPTS = [
    "Revenue grew in Q2 2024",
    "a",
    "The chief executive officer joined the company in 1999 and left the university",
    "what",
    "Margin guidance for fiscal 2025 was",
]
CONVERSATION = [Message("system", "You are brief."), Message("user", "What was revenue in Q2 2024?")]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """A tiny model runs faster on one thread: syncing two costs more than it saves."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def llm(tiny_dir: Path) -> TransformersLLM:
    # Batches of 2 over 5 prompts: several batches, one of them partial.
    return TransformersLLM(tiny_dir, batch_size=2)


@pytest.fixture(scope="module")
def tokenizer(tiny_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir, local_files_only=True)


def greedy(n: int, **kw: Any) -> GenerationParams:
    return GenerationParams(max_tokens=n, **kw)


def sampled(n: int, seed: int | None, **kw: Any) -> GenerationParams:
    return GenerationParams(max_tokens=n, temperature=1.0, seed=seed, **kw)


def test_created_from_a_spec_string(tiny_dir: Path) -> None:
    made = create_llm(f"transformers:{tiny_dir}", batch_size=3)
    assert isinstance(made, TransformersLLM)
    assert made.batch_size == 3 and made.name == tiny_dir.name and made.generative


def test_batch_keeps_order_and_equals_one_by_one(llm: TransformersLLM) -> None:
    batched = llm.complete(PROMPTS, greedy(12))
    alone = [llm.complete([p], greedy(12))[0] for p in PROMPTS]
    assert [g.text for g in batched] == [g.text for g in alone]
    assert len({g.text for g in batched}) > 1  # distinct replies, so a mix-up of rows would show
    chats = llm.chat([CONVERSATION, [Message("user", "hello there")]], greedy(8))
    assert [c.text for c in chats] == [
        llm.chat([c], greedy(8))[0].text for c in (CONVERSATION, [Message("user", "hello there")])
    ]


def test_usage_is_exact(llm: TransformersLLM, tokenizer: Any) -> None:
    gens = llm.complete(PROMPTS, greedy(7))
    for prompt, g in zip(PROMPTS, gens, strict=True):
        assert g.usage.prompt_tokens == len(tokenizer(prompt)["input_ids"])
        assert g.finish_reason == "length" and g.usage.completion_tokens == 7
    chat = llm.chat([CONVERSATION], greedy(5))[0]
    msgs = [{"role": m.role, "content": m.content} for m in CONVERSATION]
    templated = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert chat.usage.prompt_tokens == len(tokenizer(templated, add_special_tokens=False)["input_ids"])
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + 5
    assert chat.model == llm.name


def test_max_tokens_is_respected(llm: TransformersLLM) -> None:
    for n in (1, 4, 16):
        g = llm.complete([PROMPTS[0]], sampled(n, seed=1))[0]
        assert g.usage.completion_tokens <= n
        if g.finish_reason == "length":
            assert g.usage.completion_tokens == n


def _stop_in(text: str) -> str:
    """A 3-character piece of ``text`` whose first occurrence is well inside it."""
    for k in range(5, len(text) - 3):
        piece = text[k : k + 3]
        if piece.strip() and text.find(piece) == k:
            return piece
    pytest.fail(f"no usable stop string in {text!r}")


def test_stop_strings_truncate_and_end_generation(llm: TransformersLLM) -> None:
    full = llm.complete([PROMPTS[2]], sampled(40, seed=11))[0]
    stop = _stop_in(full.text)
    cut = llm.complete([PROMPTS[2]], sampled(40, seed=11, stop=(stop, "never-written")))[0]
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.finish_reason == "stop"
    assert cut.usage.completion_tokens < full.usage.completion_tokens  # ended early, not cut afterwards


def test_stop_in_a_batch_ends_only_its_row(llm: TransformersLLM) -> None:
    params = greedy(20)
    full = llm.complete(PROMPTS[:2], params)
    stop = _stop_in(full[1].text)
    cut = llm.complete(PROMPTS[:2], greedy(20, stop=(stop,)))
    for f, c in zip(full, cut, strict=True):
        i = f.text.find(stop)
        assert c.text == (f.text if i < 0 else f.text[:i])
        assert c.finish_reason == ("length" if i < 0 else "stop")


def test_streaming_deltas_join_to_the_chat_text(llm: TransformersLLM) -> None:
    for params in (greedy(24), sampled(24, seed=5)):
        deltas = list(llm.stream_chat(CONVERSATION, params))
        assert "".join(deltas) == llm.chat([CONVERSATION], params)[0].text
        assert len(deltas) > 1
    full = llm.chat([CONVERSATION], sampled(40, seed=5))[0].text
    stop = _stop_in(full)
    params = sampled(40, seed=5, stop=(stop,))
    streamed = "".join(llm.stream_chat(CONVERSATION, params))
    assert streamed == llm.chat([CONVERSATION], params)[0].text == full[: full.find(stop)]


def test_stream_abandoned_early_does_not_block(llm: TransformersLLM) -> None:
    stream = llm.stream_chat(CONVERSATION, sampled(200, seed=2))
    assert isinstance(stream, Generator)
    first = next(stream)
    stream.close()  # the consumer goes away; generation must stop and release the model
    assert isinstance(first, str)
    assert llm.complete(["a"], greedy(2))[0].usage.completion_tokens == 2


def test_sampling_is_reproducible_with_a_seed(llm: TransformersLLM) -> None:
    a = llm.complete(PROMPTS[:3], sampled(16, seed=42))
    b = llm.complete(PROMPTS[:3], sampled(16, seed=42))
    c = llm.complete(PROMPTS[:3], sampled(16, seed=43))
    assert [g.text for g in a] == [g.text for g in b]
    assert [g.text for g in a] != [g.text for g in c]
    greedy_text = llm.complete([PROMPTS[0]], greedy(16))[0].text
    assert a[0].text != greedy_text  # it really sampled


SCHEMA = {
    "type": "object",
    "properties": {"kind": {"type": "string", "enum": ["revenue", "margin"]}},
    "required": ["kind"],
    "additionalProperties": False,
}


def test_json_schema_constrains_decoding(llm: TransformersLLM) -> None:
    if not llm.constrains_json:
        pytest.skip("xgrammar is not installed: the schema is only asked for in the prompt")
    with_schema = llm.chat([CONVERSATION, [Message("user", "hi")]], greedy(16, json_schema=SCHEMA))
    plain = llm.chat([CONVERSATION], greedy(16))[0]
    for g in with_schema:  # noise weights, yet the output follows the schema
        assert parse_json(g.text)["kind"] in {"revenue", "margin"} and g.finish_reason == "stop"
    assert with_schema[0].usage.prompt_tokens == plain.usage.prompt_tokens


def test_json_schema_without_xgrammar_is_asked_for_in_the_prompt(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hf, "_xgrammar_available", lambda: False)
    prompted = TransformersLLM(tiny_dir)
    assert not prompted.constrains_json
    with_schema = prompted.chat([CONVERSATION], greedy(4, json_schema=SCHEMA))[0]
    plain = prompted.chat([CONVERSATION], greedy(4))[0]
    assert with_schema.usage.prompt_tokens > plain.usage.prompt_tokens  # the schema was appended
    completed = prompted.complete(["Revenue"], greedy(4, json_schema=SCHEMA))[0]
    assert completed.usage.prompt_tokens > prompted.complete(["Revenue"], greedy(4))[0].usage.prompt_tokens


def test_missing_folder_is_an_llm_error(tmp_path: Path) -> None:
    with pytest.raises(LLMError, match="no model folder") as info:
        TransformersLLM(tmp_path / "absent")
    assert "\n" not in str(info.value)
    with pytest.raises(LLMError):
        create_llm(f"transformers:{tmp_path / 'absent'}")


def test_not_a_causal_lm_is_an_llm_error(tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import DistilBertConfig

    folder = tmp_path / "encoder"
    shutil.copytree(tiny_dir, folder)
    (folder / "config.json").write_text(json.dumps(DistilBertConfig(vocab_size=64).to_dict()))
    with pytest.raises(LLMError, match="cannot load a causal LM") as info:
        TransformersLLM(folder)
    assert "\n" not in str(info.value)


def test_importing_the_extractor_loads_no_model_library() -> None:
    code = "import sys, tgrag.extract.llm, tgrag.llm.hf; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
