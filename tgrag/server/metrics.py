"""Prometheus metrics in the text exposition format 0.0.4, without a client library.

Requests are counted by route template (``/v1/documents/{doc_id}``, never the raw path, so the
number of series stays bounded), method and status; latency is a histogram by route; tokens are
counted by model and kind (prompt, completion). ``MetricsMiddleware`` records every request,
including the ones refused before routing (401, 413) and streamed ones (timed to their last byte).
"""

from __future__ import annotations

import bisect
import re
import threading
import time
from collections import defaultdict
from collections.abc import Sequence

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UNMATCHED = "unmatched"


class Metrics:
    """Thread-safe counters and histograms; ``render()`` is the ``/metrics`` body."""

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self._lock = threading.Lock()
        self._buckets = tuple(sorted(buckets))
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._latency_counts: dict[str, list[int]] = {}
        self._latency_sum: dict[str, float] = defaultdict(float)
        self._tokens: dict[tuple[str, str], int] = defaultdict(int)
        self._in_flight = 0

    def started(self) -> None:
        with self._lock:
            self._in_flight += 1

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self._in_flight -= 1
            self._requests[(route, method, str(status))] += 1
            counts = self._latency_counts.setdefault(route, [0] * (len(self._buckets) + 1))
            counts[bisect.bisect_left(self._buckets, seconds)] += 1
            self._latency_sum[route] += seconds

    def tokens(self, model: str, prompt: int, completion: int) -> None:
        with self._lock:
            self._tokens[(model, "prompt")] += prompt
            self._tokens[(model, "completion")] += completion

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP tgrag_http_requests_total HTTP requests by route template, method and status.",
                "# TYPE tgrag_http_requests_total counter",
            ]
            for (route, method, status), n in sorted(self._requests.items()):
                lines.append(
                    f"tgrag_http_requests_total{_labels(route=route, method=method, status=status)} {n}"
                )
            lines += [
                "# HELP tgrag_http_request_duration_seconds Time from request to last response byte.",
                "# TYPE tgrag_http_request_duration_seconds histogram",
            ]
            for route, counts in sorted(self._latency_counts.items()):
                cumulative = 0
                for bound, n in zip((*self._buckets, float("inf")), counts, strict=True):
                    cumulative += n
                    le = "+Inf" if bound == float("inf") else _float(bound)
                    lines.append(
                        f"tgrag_http_request_duration_seconds_bucket{_labels(route=route, le=le)} {cumulative}"
                    )
                lines.append(
                    f"tgrag_http_request_duration_seconds_sum{_labels(route=route)} "
                    f"{_float(self._latency_sum[route])}"
                )
                lines.append(f"tgrag_http_request_duration_seconds_count{_labels(route=route)} {cumulative}")
            lines += [
                "# HELP tgrag_tokens_total Tokens by model and kind (prompt, completion).",
                "# TYPE tgrag_tokens_total counter",
            ]
            for (model, kind), n in sorted(self._tokens.items()):
                lines.append(f"tgrag_tokens_total{_labels(model=model, kind=kind)} {n}")
            lines += [
                "# HELP tgrag_http_requests_in_flight Requests being served now.",
                "# TYPE tgrag_http_requests_in_flight gauge",
                f"tgrag_http_requests_in_flight {self._in_flight}",
            ]
        return "\n".join(lines) + "\n"


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _escape(value: str) -> str:
    """Label values escape backslash, double quote and newline (exposition format 0.0.4)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _float(value: float) -> str:
    return repr(float(value))


class MetricsMiddleware:
    """Outermost middleware: times every HTTP request and counts it by its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: ASGIApp) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes  # the FastAPI app, whose router names the route templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self._route(scope)
        status = 500  # when the app fails before it starts a response
        started = time.perf_counter()
        self.metrics.started()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe(route, scope["method"], status, time.perf_counter() - started)

    def _route(self, scope: Scope) -> str:
        partial = UNMATCHED  # a path that exists under another method (answered 405)
        for r in getattr(getattr(self.routes, "router", None), "routes", ()):
            match, _ = r.matches(scope)
            if match is Match.FULL:
                return _template(r)
            if match is Match.PARTIAL and partial == UNMATCHED:
                partial = _template(r)
        return partial


def _template(route: object) -> str:
    """``/v1/documents/{doc_id:path}`` -> ``/v1/documents/{doc_id}``: converters are noise in a label."""
    return re.sub(r":\w+}", "}", str(getattr(route, "path", UNMATCHED)))
