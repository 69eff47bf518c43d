"""Where a completion's text comes from: tgrag's Auto-RAG agent, or the upstream model.

Both produce an ``Outcome`` (text, finish reason, usage, tgrag's extension); each can run whole
(``call``) or streamed (``stream``, text pieces as they are produced). The routes only pick one
and format it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..llm.base import LLM, GenerationParams, Message, Usage, count_words
from .convert import extension
from .errors import NOT_FOUND, APIError
from .runner import DeltaCallback, DeltaStream, Timing
from .schemas import ChatCompletionRequest, ChatMessage, GenerationFields, TemporalOptions, TGRAGExtension
from .state import ServerState

log = logging.getLogger("tgrag.server")

# Roles the upstream model understands; OpenAI's newer "developer" is a system message.
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class Outcome:
    text: str
    finish_reason: str
    usage: Usage
    extension: TGRAGExtension | None = None


Job = Callable[[DeltaCallback | None], Outcome]


def resolve_model(state: ServerState, model: str) -> LLM | None:
    """None for tgrag's own model; the upstream LLM for its name; 404 for anything else."""
    if model == state.settings.model_name:
        return None
    if state.llm is not None and model == state.llm.name:
        return state.llm
    known = ", ".join(m for m in (state.settings.model_name, state.llm.name if state.llm else None) if m)
    raise APIError(
        404,
        f"the model {model!r} does not exist; this server has: {known}",
        NOT_FOUND,
        "model",
        "model_not_found",
    )


# ---- tgrag ----------------------------------------------------------------------------------


def ask_job(state: ServerState, question: str, options: TemporalOptions) -> Job:
    """The agent's answer to ``question``; the store lock is taken by the worker that runs it."""
    settings = state.settings
    if options.budget is not None and options.budget > settings.max_budget:
        raise APIError(400, f"budget must be at most {settings.max_budget} tokens", param="budget")
    if options.max_iter is not None and options.max_iter > settings.max_iter_limit:
        raise APIError(400, f"max_iter must be at most {settings.max_iter_limit}", param="max_iter")
    kwargs: dict[str, Any] = {
        "as_of": options.as_of,
        "now": options.now,
        "budget": options.budget or settings.default_budget,
    }
    max_iter = options.max_iter or settings.max_iter
    if max_iter is not None:
        kwargs["max_iter"] = max_iter
    if state.llm is not None:
        kwargs["llm"] = state.llm  # the agent plans and writes with the upstream model

    def run(on_delta: DeltaCallback | None) -> Outcome:
        result = state.rag.ask(question, on_delta=on_delta, **kwargs)
        text = result.answer.text
        usage = result.trace.usage
        if usage.total_tokens == 0:  # no model was called (extractive): count what was read and written
            from ..tokens import count_tokens

            usage = Usage(count_tokens(question), count_tokens(text))
        return Outcome(text, "stop", usage, extension(result))

    return run


def question_of(body: ChatCompletionRequest) -> str:
    """The last user message is the question; earlier turns are not used by the agent."""
    for message in reversed(body.messages):
        if message.role == "user":
            text = message.text.strip()
            if not text:
                break
            return text
    raise APIError(400, "the last user message must hold the question as text", param="messages")


# ---- upstream -------------------------------------------------------------------------------


def params_of(body: GenerationFields, max_tokens: int | None = None, schema: Any = None) -> GenerationParams:
    defaults = GenerationParams()
    return GenerationParams(
        max_tokens=max_tokens or body.max_tokens or defaults.max_tokens,
        temperature=defaults.temperature if body.temperature is None else body.temperature,
        top_p=defaults.top_p if body.top_p is None else body.top_p,
        stop=body.stops,
        seed=body.seed,
        json_schema=schema,
    )


def chat_params(body: ChatCompletionRequest) -> GenerationParams:
    schema = None
    fmt = body.response_format or {}
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise APIError(
                400, "response_format.json_schema.schema must be an object", param="response_format"
            )
    return params_of(body, body.max_completion_tokens, schema)


def upstream_messages(messages: Sequence[ChatMessage]) -> list[Message]:
    out = []
    for i, m in enumerate(messages):
        role = _ROLES.get(m.role)
        if role is None:
            raise APIError(
                400, f"messages[{i}]: role {m.role!r} is not supported here", param=f"messages.{i}.role"
            )
        out.append(Message(role, m.text))  # type: ignore[arg-type]  # a key of _ROLES is a Role
    return out


def chat_job(llm: LLM, messages: list[Message], params: GenerationParams) -> Job:
    def run(on_delta: DeltaCallback | None) -> Outcome:
        if on_delta is None:
            g = llm.chat([messages], params)[0]
            return Outcome(g.text, g.finish_reason, g.usage)
        pieces = []
        for piece in llm.stream_chat(messages, params):
            pieces.append(piece)
            on_delta(piece)
        text = "".join(pieces)
        # streams report no usage: whitespace words, as for backends without a tokenizer
        prompt = sum(count_words(m.content) for m in messages)
        return Outcome(text, "stop", Usage(prompt, count_words(text)))

    return run


def complete_job(llm: LLM, prompt: str, params: GenerationParams) -> Job:
    # The LLM protocol has no streamed completion: a stream carries the whole text as one piece.
    def run(on_delta: DeltaCallback | None) -> Outcome:
        g = llm.complete([prompt], params)[0]
        if on_delta is not None:
            on_delta(g.text)
        return Outcome(g.text, g.finish_reason, g.usage)

    return run


async def run_whole(state: ServerState, job: Job, on_store: bool) -> tuple[Outcome, Timing]:
    worker = state.store if on_store else state.upstream
    return await worker.call_timed(job, None)


def run_streamed(state: ServerState, job: Job, on_store: bool) -> DeltaStream[Outcome]:
    worker = state.store if on_store else state.upstream
    return worker.stream(job)
