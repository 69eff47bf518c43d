"""What every route needs: the store, the upstream model, the workers, settings and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from ..llm.base import LLM
from .config import ServerSettings
from .metrics import Metrics
from .runner import Worker


@dataclass
class ServerState:
    rag: Any  # a tgrag.sdk.TemporalRAG (Any so tests can stand in a double)
    settings: ServerSettings
    llm: LLM | None  # the upstream model, when one is configured
    store: Worker  # store and agent calls, one at a time
    upstream: Worker  # pass-through calls to the upstream model, concurrent
    metrics: Metrics
    created: int  # when the server started (the models' "created")

    def close(self) -> None:
        self.store.close()
        self.upstream.close()


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.tgrag
    return state


State = Annotated[ServerState, Depends(_state)]
