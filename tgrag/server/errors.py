"""Errors in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with the right status.

Every failure a client can cause maps to a 4xx with a message it can act on; anything else is a
500 that says only that it happened (the traceback goes to the server log, never to the client).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InputError, StoreCorruptedError, StoreLockedError, TGRAGError, UnknownBackendError
from ..llm.base import LLMError

log = logging.getLogger("tgrag.server")

INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
NOT_FOUND = "not_found_error"
SERVER = "server_error"
UNAVAILABLE = "service_unavailable_error"
UPSTREAM = "upstream_error"


class APIError(Exception):
    """An error to answer with: HTTP status and OpenAI's error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(
    message: str, type: str = INVALID_REQUEST, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_bytes(message: str, type: str, code: str | None = None) -> bytes:
    """The JSON body of an error answered before FastAPI sees the request (auth, size limit)."""
    return json.dumps(error_body(message, type, None, code)).encode()


def from_exception(exc: BaseException) -> APIError:
    """The API error for an exception raised while serving (store, SDK, upstream model, bug)."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, StoreLockedError):
        return APIError(503, str(exc), UNAVAILABLE, code="store_busy", headers={"Retry-After": "1"})
    if isinstance(exc, StoreCorruptedError):
        log.error("store damaged: %s", exc)
        return APIError(500, "the store is damaged; see the server log", SERVER, code="store_damaged")
    if isinstance(exc, LLMError):
        log.error("upstream model failed: %s", exc)
        return APIError(502, f"the upstream model failed: {exc}", UPSTREAM, code="upstream_error")
    if isinstance(exc, (InputError, UnknownBackendError)):
        return APIError(400, str(exc), INVALID_REQUEST)
    if isinstance(exc, TGRAGError):
        log.error("store error: %s", exc)
        return APIError(500, str(exc), SERVER)
    log.error("unexpected error while serving a request", exc_info=exc)
    return APIError(500, "internal error; see the server log", SERVER, code="internal_error")


def _validation_error(exc: RequestValidationError) -> APIError:
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    kind = first.get("type")
    if kind == "json_invalid":
        return APIError(400, "the request body is not valid JSON", param=None, code="invalid_json")
    if param is None:  # the body as a whole: absent, or not an object
        what = "missing" if kind == "missing" else "not a JSON object"
        message = f"the request body is {what}: send a JSON object with Content-Type: application/json"
        return APIError(400, message, param=None, code="invalid_body")
    message = str(first.get("msg", "invalid request"))
    # pydantic prefixes messages from our own validators with "Value error, "
    message = message.removeprefix("Value error, ")
    if kind == "missing":
        message = f"missing required parameter: {param}"
    elif param:
        message = f"{param}: {message}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return APIError(400, message, param=param, code="invalid_value")


_HTTP_CODES = {404: ("not_found", NOT_FOUND), 405: ("method_not_allowed", INVALID_REQUEST)}


def install_handlers(app: FastAPI) -> None:
    """Replace FastAPI's default error bodies (``{"detail": ...}``, 422) with OpenAI's."""

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        return from_exception(exc).response()

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _validation_error(exc).response()

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code, type_ = _HTTP_CODES.get(exc.status_code, (None, INVALID_REQUEST))
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no such route: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        headers = dict(exc.headers) if exc.headers else None
        return APIError(exc.status_code, message, type_, code=code, headers=headers).response()

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(TGRAGError, api_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, api_error)


async def send_error(
    send: Any,
    status: int,
    message: str,
    type: str,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer with an error straight from ASGI middleware, before any route runs."""
    body = error_bytes(message, type, code)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
