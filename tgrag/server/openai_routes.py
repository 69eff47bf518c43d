"""The OpenAI-compatible routes: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``.

Model ``tgrag`` answers from the store through the Auto-RAG agent; the upstream model's name (when
one is configured) passes the request through to it; any other name is 404 ``model_not_found``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import FastAPI, Response

from ..llm.base import Usage
from .answering import (
    Outcome,
    ask_job,
    chat_job,
    chat_params,
    complete_job,
    params_of,
    question_of,
    resolve_model,
    run_streamed,
    run_whole,
    upstream_messages,
)
from .convert import usage_out
from .errors import NOT_FOUND, APIError
from .schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionChoice,
    CompletionRequest,
    ModelCard,
    ModelList,
)
from .sse import Chunks, stream_response
from .state import ServerState, State


def _models(state: ServerState) -> list[ModelCard]:
    cards = [ModelCard(id=state.settings.model_name, created=state.created, owned_by="tgrag")]
    if state.llm is not None:
        cards.append(ModelCard(id=state.llm.name, created=state.created, owned_by="upstream"))
    return cards


async def list_models(state: State) -> ModelList:
    return ModelList(data=_models(state))


async def get_model(model_id: str, state: State) -> ModelCard:
    for card in _models(state):
        if card.id == model_id:
            return card
    raise APIError(404, f"the model {model_id!r} does not exist", NOT_FOUND, "model", "model_not_found")


def _counter(state: ServerState, model: str) -> Any:
    def record(outcome: Outcome) -> None:
        state.metrics.tokens(model, outcome.usage.prompt_tokens, outcome.usage.completion_tokens)

    return record


async def chat_completions(body: ChatCompletionRequest, state: State, response: Response) -> Any:
    llm = resolve_model(state, body.model)
    if llm is None:
        job, on_store = ask_job(state, question_of(body), body), True
    else:
        job, on_store = chat_job(llm, upstream_messages(body.messages), chat_params(body)), False
    id_, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    record = _counter(state, body.model)
    if body.stream:
        chunks = Chunks("chat", id_, created, body.model, body.include_usage)
        return await stream_response(run_streamed(state, job, on_store), chunks, record)
    outcome, timing = await run_whole(state, job, on_store)
    response.headers["Server-Timing"] = timing.header()
    record(outcome)
    return ChatCompletion(
        id=id_,
        created=created,
        model=body.model,
        choices=[
            ChatChoice(message=AssistantMessage(content=outcome.text), finish_reason=outcome.finish_reason)
        ],
        usage=usage_out(outcome.usage),
        tgrag=outcome.extension,
    )


async def completions(body: CompletionRequest, state: State, response: Response) -> Any:
    llm = resolve_model(state, body.model)
    prompts = body.prompts
    id_, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    record = _counter(state, body.model)
    if llm is not None and len(prompts) > 1 and not body.stream:
        return await _complete_batch(state, body, prompts, id_, created)
    if len(prompts) != 1:
        raise APIError(
            400, "send one prompt (a batch of prompts needs an upstream model, unstreamed)", param="prompt"
        )
    if llm is None:
        if not prompts[0].strip():
            raise APIError(400, "the prompt is empty", param="prompt")
        job, on_store = ask_job(state, prompts[0].strip(), body), True
    else:
        job, on_store = complete_job(llm, prompts[0], params_of(body)), False
    if body.stream:
        chunks = Chunks("text", id_, created, body.model, body.include_usage)
        return await stream_response(run_streamed(state, job, on_store), chunks, record)
    outcome, timing = await run_whole(state, job, on_store)
    response.headers["Server-Timing"] = timing.header()
    record(outcome)
    return Completion(
        id=id_,
        created=created,
        model=body.model,
        choices=[CompletionChoice(text=outcome.text, finish_reason=outcome.finish_reason)],
        usage=usage_out(outcome.usage),
        tgrag=outcome.extension,
    )


async def _complete_batch(
    state: ServerState, body: CompletionRequest, prompts: list[str], id_: str, created: int
) -> Completion:
    assert state.llm is not None
    generations = await state.upstream.call(state.llm.complete, prompts, params_of(body))
    usage = sum((g.usage for g in generations), Usage())
    state.metrics.tokens(body.model, usage.prompt_tokens, usage.completion_tokens)
    return Completion(
        id=id_,
        created=created,
        model=body.model,
        choices=[
            CompletionChoice(index=i, text=g.text, finish_reason=g.finish_reason)
            for i, g in enumerate(generations)
        ],
        usage=usage_out(usage),
    )


def install(app: FastAPI) -> None:
    # Routes are added to the app itself (not an included router) so that each one is a plain
    # route with a path template that the metrics middleware can match.
    app.add_api_route("/v1/models", list_models, methods=["GET"], response_model=ModelList)
    app.add_api_route("/v1/models/{model_id:path}", get_model, methods=["GET"], response_model=ModelCard)
    app.add_api_route(
        "/v1/chat/completions", chat_completions, methods=["POST"], response_model=ChatCompletion
    )
    app.add_api_route("/v1/completions", completions, methods=["POST"], response_model=Completion)
