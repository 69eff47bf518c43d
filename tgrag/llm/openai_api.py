"""``openai:URL#model``: any OpenAI-compatible server, through the official ``openai`` client.

vLLM's server is the first target: a batch's requests go out concurrently (a thread pool) so
that its continuous batching has work to overlap, and a JSON schema is passed the way vLLM
constrains decoding with it (``response_format`` for chat, ``structured_outputs`` in the
request's extra body for completions). Every client failure becomes one ``LLMError`` line
that names the server.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .base import FinishReason, Generation, GenerationParams, LLMError, Message, Usage

DEFAULT_URL = "http://127.0.0.1:8000/v1"

T = TypeVar("T")
R = TypeVar("R")


def parse_spec(arg: str) -> tuple[str, str | None]:
    """``http://host:port/v1#model`` -> (base URL, model or None); a bare host gets ``http://``."""
    url, _, model = (arg or DEFAULT_URL).partition("#")
    url = url.strip() or DEFAULT_URL
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/"), (model.strip() or None)


class OpenAILLM:
    """An ``LLM`` backed by an OpenAI-compatible HTTP server (vLLM, llama.cpp, OpenAI itself)."""

    generative = True

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 300.0,
        max_retries: int = 1,
        max_workers: int = 8,
    ) -> None:
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - openai is in the llm/server extras
            raise LLMError("the openai backend needs the openai client: pip install 'tgrag[llm]'") from exc
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.base_url = base_url.rstrip("/")
        self._openai = openai
        # vLLM accepts any key unless started with --api-key; "EMPTY" is its documented placeholder.
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=key, timeout=timeout, max_retries=max_retries
        )
        self._max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self.name = model or self._first_model()

    @classmethod
    def from_spec(cls, arg: str, **kwargs: Any) -> OpenAILLM:
        url, model = parse_spec(arg)
        return cls(url, kwargs.pop("model", None) or model, **kwargs)

    # -- the LLM protocol -------------------------------------------------------------------

    def complete(self, prompts: Sequence[str], params: GenerationParams | None = None) -> list[Generation]:
        p = params or GenerationParams()
        return self._map(lambda prompt: self._complete_one(prompt, p), list(prompts))

    def chat(
        self, conversations: Sequence[Sequence[Message]], params: GenerationParams | None = None
    ) -> list[Generation]:
        p = params or GenerationParams()
        return self._map(lambda conv: self._chat_one(conv, p), list(conversations))

    def stream_chat(
        self, messages: Sequence[Message], params: GenerationParams | None = None
    ) -> Iterator[str]:
        p = params or GenerationParams()
        try:
            stream = self._client.chat.completions.create(
                model=self.name, messages=_messages(messages), stream=True, **self._chat_kwargs(p)
            )
            # ``with``: a caller that stops reading early still releases the connection.
            with stream:
                for chunk in stream:
                    for choice in chunk.choices:
                        if choice.delta.content:
                            yield choice.delta.content
        except self._openai.OpenAIError as exc:
            raise self._error(exc) from exc

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._client.close()

    def __enter__(self) -> OpenAILLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one request each -------------------------------------------------------------------

    def _complete_one(self, prompt: str, p: GenerationParams) -> Generation:
        kwargs = self._common_kwargs(p)
        kwargs["max_tokens"] = p.max_tokens
        if p.json_schema is not None:
            # The completions API has no response_format; vLLM (>= 0.12) reads this extra field.
            kwargs["extra_body"] = {"structured_outputs": {"json": p.json_schema}}
        try:
            resp = self._client.completions.create(model=self.name, prompt=prompt, **kwargs)
        except self._openai.OpenAIError as exc:
            raise self._error(exc) from exc
        choice = self._first_choice(resp)
        return self._generation(choice.text, choice.finish_reason, resp)

    def _chat_one(self, conversation: Sequence[Message], p: GenerationParams) -> Generation:
        try:
            resp = self._client.chat.completions.create(
                model=self.name, messages=_messages(conversation), **self._chat_kwargs(p)
            )
        except self._openai.OpenAIError as exc:
            raise self._error(exc) from exc
        choice = self._first_choice(resp)
        return self._generation(choice.message.content, choice.finish_reason, resp)

    def _first_choice(self, resp: Any) -> Any:
        if not resp.choices:
            raise LLMError(f"openai backend at {self.base_url}: the reply has no choices")
        return resp.choices[0]

    def _generation(self, text: str | None, finish: str | None, resp: Any) -> Generation:
        return Generation(
            text=text or "",
            usage=_usage(resp.usage),
            finish_reason=_finish(finish),
            model=resp.model or self.name,
        )

    def _common_kwargs(self, p: GenerationParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"temperature": p.temperature, "top_p": p.top_p}
        if p.stop:
            kwargs["stop"] = list(p.stop)
        if p.seed is not None:
            kwargs["seed"] = p.seed
        return kwargs

    def _chat_kwargs(self, p: GenerationParams) -> dict[str, Any]:
        kwargs = self._common_kwargs(p)
        # ``max_tokens`` rather than ``max_completion_tokens``: every OpenAI-compatible server
        # (vLLM, llama.cpp, TGI) reads it, while the newer name is not universal yet.
        kwargs["max_tokens"] = p.max_tokens
        if p.json_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": p.json_schema, "strict": True},
            }
        return kwargs

    # -- plumbing ---------------------------------------------------------------------------

    def _map(self, fn: Callable[[T], R], items: list[T]) -> list[R]:
        """``fn`` over ``items`` concurrently, results in input order."""
        if len(items) <= 1 or self._max_workers == 1:
            return [fn(x) for x in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="tgrag-openai")
        return list(self._pool.map(fn, items))

    def _first_model(self) -> str:
        try:
            models = [m.id for m in self._client.models.list()]
        except self._openai.OpenAIError as exc:
            raise self._error(exc) from exc
        if not models:
            raise LLMError(
                f"openai backend at {self.base_url}: the server lists no models; name one: URL#model"
            )
        return models[0]

    def _error(self, exc: Exception) -> LLMError:
        """One line naming the server and what it said."""
        o = self._openai
        if isinstance(exc, o.APITimeoutError):
            what = "the request timed out (raise timeout=...)"
        elif isinstance(exc, o.APIConnectionError):
            what = "cannot connect; is the server running?"
        elif isinstance(exc, o.APIStatusError):
            what = f"HTTP {exc.status_code}: {_server_message(exc)}"
        else:
            what = str(exc)
        line = " ".join(what.split())[:300]
        return LLMError(f"openai backend at {self.base_url}: {line}")


def _messages(conversation: Sequence[Message]) -> list[Any]:
    return [{"role": m.role, "content": m.content} for m in conversation]


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    return Usage(int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0))


def _finish(reason: str | None) -> FinishReason:
    return "length" if reason == "length" else "stop"


def _server_message(exc: Any) -> str:
    """The ``message`` of an OpenAI-style error body, else the exception's own text."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if body.get("message"):
            return str(body["message"])
    return str(getattr(exc, "message", exc))
