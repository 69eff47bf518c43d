"""``create_app(rag, settings)``: the FastAPI app behind ``tgrag serve``.

Middleware, outermost first: metrics (sees every request, refused ones too), API keys (before any
body is read), the body size limit (before anything parses the body), then FastAPI's routing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from ..llm.base import LLM, create_llm
from . import openai_routes, store_routes
from .auth import APIKeyMiddleware
from .config import ServerSettings
from .errors import install_handlers
from .limits import BodyLimitMiddleware
from .metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from .runner import Worker
from .schemas import Health
from .state import ServerState, State

log = logging.getLogger("tgrag.server")


def create_app(rag: Any, settings: ServerSettings | None = None, *, llm: LLM | None = None) -> FastAPI:
    """The app serving ``rag`` (a ``TemporalRAG``; the caller keeps ownership and closes it).

    ``llm`` overrides ``settings.llm`` with a ready model object (tests, embedding in a program).
    """
    settings = settings or ServerSettings()
    owns_llm = llm is None and settings.llm is not None
    upstream = llm if llm is not None else (create_llm(settings.llm) if settings.llm else None)
    state = ServerState(
        rag=rag,
        settings=settings,
        llm=upstream,
        store=Worker("store", settings.workers, serialize=True, busy_timeout_s=settings.busy_timeout_s),
        upstream=Worker("upstream", max(8, settings.workers), serialize=False),
        metrics=Metrics(),
        created=int(time.time()),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()
        if owns_llm and upstream is not None:
            upstream.close()

    app = FastAPI(
        title="tgrag",
        summary="An OpenAI-compatible API over a temporal knowledge graph",
        lifespan=lifespan,
        docs_url=None,  # no browser UI: every route but /health needs a key
        redoc_url=None,
    )
    app.state.tgrag = state
    install_handlers(app)
    openai_routes.install(app)
    store_routes.install(app)

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        return Health()

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics(state: State) -> PlainTextResponse:
        return PlainTextResponse(state.metrics.render(), media_type=CONTENT_TYPE)

    # add_middleware wraps what is there, so the last added runs first.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(APIKeyMiddleware, keys=settings.api_keys)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics, routes=app)
    if not settings.auth_enabled and not settings.loopback:
        log.warning(
            "serving on %s without API keys: anyone who can reach it can read and change the store "
            "(give --api-key-file or set TGRAG_API_KEY)",
            settings.host,
        )
    return app
