"""Server-sent events exactly as OpenAI streams them.

``data: {chunk}`` lines: for chat, a first chunk whose delta has ``role: "assistant"``, then content
deltas, then a chunk with an empty delta and ``finish_reason`` (carrying tgrag's ``tgrag``
extension: citations, abstention, trace), then, when ``stream_options.include_usage`` is set, a
chunk with no choices and the usage, and finally ``data: [DONE]``. Text completions stream the same
way with ``text`` in place of ``delta``. An error after the stream has started is sent as one
``data: {"error": {...}}`` event, which the openai client raises; no ``[DONE]`` follows it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from fastapi.responses import StreamingResponse

from .answering import Outcome
from .errors import APIError
from .runner import DeltaStream

log = logging.getLogger("tgrag.server")

Kind = Literal["chat", "text"]
DONE = b"data: [DONE]\n\n"


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class Chunks:
    """Builds one stream's chunks: same id, creation time and model in each."""

    def __init__(self, kind: Kind, id: str, created: int, model: str, include_usage: bool) -> None:
        self.kind = kind
        self.id = id
        self.created = created
        self.model = model
        self.include_usage = include_usage

    def _chunk(self, choice: dict[str, Any] | None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [] if choice is None else [choice],
        }
        if self.include_usage:
            chunk["usage"] = None  # OpenAI sends null in every chunk but the usage one
        return chunk

    def _choice(self, content: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        key = "delta" if self.kind == "chat" else "text"
        value: Any = content if self.kind == "chat" else content.get("content", "")
        return {"index": 0, key: value, "logprobs": None, "finish_reason": finish_reason}

    def start(self) -> bytes | None:
        if self.kind != "chat":
            return None
        return event(self._chunk(self._choice({"role": "assistant", "content": ""}, None)))

    def delta(self, text: str) -> bytes:
        return event(self._chunk(self._choice({"content": text}, None)))

    def finish(self, outcome: Outcome) -> bytes:
        chunk = self._chunk(self._choice({}, outcome.finish_reason))
        if outcome.extension is not None:
            chunk["tgrag"] = outcome.extension.model_dump()
        return event(chunk)

    def usage(self, outcome: Outcome) -> bytes:
        chunk = self._chunk(None)
        u = outcome.usage
        chunk["usage"] = {
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens,
        }
        return event(chunk)


async def stream_response(
    stream: DeltaStream[Outcome], chunks: Chunks, on_outcome: Callable[[Outcome], None]
) -> StreamingResponse:
    """Wait for the first piece, then answer 200 with the stream.

    Waiting first means a failure before any text (a busy store, a bad upstream) still gets its
    proper status and a JSON error body instead of a 200 stream that breaks.
    """
    first: str | None
    try:
        first = await stream.__anext__()
    except StopAsyncIteration:
        first = None
    return StreamingResponse(
        _events(stream, chunks, first, on_outcome),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    stream: DeltaStream[Outcome], chunks: Chunks, first: str | None, on_outcome: Callable[[Outcome], None]
) -> AsyncIterator[bytes]:
    start = chunks.start()
    if start is not None:
        yield start
    sent: list[str] = []
    try:
        if first is not None:
            sent.append(first)
            yield chunks.delta(first)
            async for piece in stream:
                sent.append(piece)
                yield chunks.delta(piece)
    except APIError as exc:
        yield event(exc.body())
        return
    outcome = stream.result
    streamed = "".join(sent)
    if outcome.text != streamed:
        # Deltas are meant to join to the final text; if the producer sent less, send the rest.
        if outcome.text.startswith(streamed):
            yield chunks.delta(outcome.text[len(streamed) :])
        else:
            log.warning(
                "streamed text differs from the final answer (%d vs %d chars)",
                len(streamed),
                len(outcome.text),
            )
    on_outcome(outcome)
    yield chunks.finish(outcome)
    if chunks.include_usage:
        yield chunks.usage(outcome)
    yield DONE
