"""Bearer API keys: ``Authorization: Bearer KEY``, checked before any route runs.

Each configured key is compared in constant time (``secrets.compare_digest``) and every key is
compared, so timing tells nothing about which key or how much of one matched. Keys are never
logged: a failed check logs only that it failed.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import AUTHENTICATION, send_error

log = logging.getLogger("tgrag.server")

OPEN_PATHS = frozenset({"/health"})


class KeyChecker:
    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(k.encode("utf-8") for k in keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def valid(self, presented: str) -> bool:
        candidate = presented.encode("utf-8")
        matches = [secrets.compare_digest(candidate, key) for key in self._keys]
        return any(matches)


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class APIKeyMiddleware:
    """Rejects requests without a valid key (401, OpenAI's error shape); ``/health`` stays open."""

    def __init__(self, app: ASGIApp, keys: Iterable[str]) -> None:
        self.app = app
        self.checker = KeyChecker(keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.checker or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope["headers"])
        if token is None:
            message = "missing API key: send the header 'Authorization: Bearer YOUR_KEY'"
        elif not self.checker.valid(token):
            message = "invalid API key"
        else:
            await self.app(scope, receive, send)
            return
        log.info("rejected %s %s: %s", scope["method"], scope["path"], message)
        await send_error(
            send, 401, message, AUTHENTICATION, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
        )
