"""The ``LLM`` protocol: chat and completion over batches, with one registry of spec strings.

A backend is chosen by one string everywhere (SDK, CLI, server):

- ``extractive``: no model at all, the offline default (answers are sentences of the context);
- ``openai:http://127.0.0.1:8000/v1#model``: any OpenAI-compatible server (vLLM's first);
- ``vllm:PATH``: the in-process vLLM engine (extra ``tgrag[vllm]``);
- ``transformers:PATH``: a local Hugging Face causal LM folder.

Backends take whole batches so that a server is kept busy; ``GenerationParams`` says how to
decode (greedy when ``temperature`` is 0), where to stop, and optionally a JSON schema the
output must follow.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from ..errors import TGRAGError, UnknownBackendError
from ..registry import Registry

Role = Literal["system", "user", "assistant"]


class LLMError(TGRAGError):
    """A backend failed (unreachable server, model that cannot load, bad reply)."""


class StructuredOutputError(LLMError):
    """The model's output did not parse as JSON that follows the requested schema."""


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # A JSON schema the output must follow. Backends that can constrain decoding (vLLM) do;
    # others prompt for it and the caller validates (``parse_json``).
    json_schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens
        )


FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Generation:
    text: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: FinishReason = "stop"
    model: str = ""


@runtime_checkable
class LLM(Protocol):
    """What tgrag needs of a language model. Every method takes a batch and keeps its order."""

    name: str  # the model's name, as reported to clients
    # False for backends that only select text (``extractive``): the agent then plans by rules.
    generative: bool

    def complete(
        self, prompts: Sequence[str], params: GenerationParams | None = None
    ) -> list[Generation]: ...

    def chat(
        self, conversations: Sequence[Sequence[Message]], params: GenerationParams | None = None
    ) -> list[Generation]: ...

    def stream_chat(
        self, messages: Sequence[Message], params: GenerationParams | None = None
    ) -> Iterator[str]:
        """Text deltas of one reply, as they are produced; joined they equal ``chat``'s text."""
        ...

    def close(self) -> None: ...


LLMS: Registry[LLM] = Registry("llm")


def create_llm(spec: str | LLM | None, **kwargs: object) -> LLM:
    """An ``LLM`` from a spec string (see the module docstring), or the object itself."""
    if spec is None:
        spec = "extractive"
    if not isinstance(spec, str):
        return spec
    from . import backends  # noqa: F401  (registers the built-in backends)

    name = spec.partition(":")[0]
    if name not in LLMS.names():
        known = ", ".join(LLMS.names())
        raise UnknownBackendError(
            f"unknown llm {spec!r}; known: {known} (e.g. 'openai:http://127.0.0.1:8000/v1#model')"
        )
    return LLMS.create(spec, **kwargs)


def chat_one(llm: LLM, messages: Sequence[Message], params: GenerationParams | None = None) -> Generation:
    return llm.chat([list(messages)], params)[0]


def parse_json(text: str, wanted: Callable[[Any], bool] | None = None) -> Any:
    """The JSON value a model replied with, possibly wrapped in prose or code fences.

    That is the value starting at the first brace or bracket, or a later one ``wanted`` accepts
    (prose before the JSON may hold a stray bracket). A reply cut short fails: one of its inner
    values is never passed off as the answer.
    """
    decoder = json.JSONDecoder(strict=False)  # a raw newline inside a string costs nothing to accept
    starts = [i for i, ch in enumerate(text) if ch in "{["]
    problem = ""
    for n, i in enumerate(starts):
        try:
            value, _ = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            problem = problem or f"{exc.msg}, character {exc.pos}"
            continue
        if n == 0 or (wanted is not None and wanted(value)):
            return value
    if not starts:
        raise StructuredOutputError(f"no JSON value in the model's output: {text[:200]!r}")
    raise StructuredOutputError(f"the JSON is invalid or unfinished ({problem or 'no usable value'})")


def word_deltas(text: str) -> Iterator[str]:
    """A finished text as streaming deltas, word by word (joined they give the text back), for
    replies that were not generated token by token."""
    for i, piece in enumerate(text.split(" ")):
        yield piece if i == 0 else " " + piece


def count_words(text: str) -> int:
    """Token usage for backends without a tokenizer: whitespace words."""
    return len(text.split())
