"""Synchronous work (the store, the agent, an upstream model) run off the event loop.

``Worker`` owns a thread pool and, for the store, a lock: the SDK shares one SQLite connection and
in-memory indexes between threads, so store calls take turns. A call that waits longer than
``busy_timeout_s`` for its turn fails with ``StoreLockedError`` (503), so a flood of requests
queues for a bounded time instead of forever.

``stream`` runs a function that reports text pieces through a callback and hands the pieces to
the event loop as they come (``call_soon_threadsafe`` into a queue), so streaming is real: a client
sees each piece when the worker produces it, not when the whole answer is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import StoreLockedError
from .errors import from_exception

T = TypeVar("T")
DeltaCallback = Callable[[str], None]


@dataclass(frozen=True)
class Timing:
    """Seconds a call waited for a thread and the lock, and seconds it ran."""

    wait_s: float
    work_s: float

    def header(self) -> str:
        """A ``Server-Timing`` value: clients can tell the server's own time from the network's."""
        return f"queue;dur={self.wait_s * 1000:.2f}, tgrag;dur={self.work_s * 1000:.2f}"


class Worker:
    def __init__(self, name: str, threads: int, *, serialize: bool, busy_timeout_s: float = 60.0) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=f"tgrag-{name}")
        self._lock = threading.Lock() if serialize else None
        self.busy_timeout_s = busy_timeout_s

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a worker thread; failures come back as ``APIError``."""
        value, _ = await self.call_timed(fn, *args, **kwargs)
        return value

    async def call_timed(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> tuple[T, Timing]:
        """Like ``call``, with how long the call waited for its turn and how long ``fn`` ran."""
        loop = asyncio.get_running_loop()
        submitted = time.perf_counter()

        def timed() -> tuple[T, Timing]:
            def measured() -> tuple[T, float, float]:
                started = time.perf_counter()  # the lock is held from here
                return fn(*args, **kwargs), started, time.perf_counter()

            value, started, ended = self._run(measured, (), {})
            return value, Timing(started - submitted, ended - started)

        try:
            return await loop.run_in_executor(self._pool, timed)
        except Exception as exc:
            raise from_exception(exc) from None

    def stream(self, fn: Callable[[DeltaCallback], T]) -> DeltaStream[T]:
        """Start ``fn(on_delta)`` in a worker thread; iterate the result for its text pieces."""
        return DeltaStream(self, fn)

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        if self._lock is None:
            return fn(*args, **kwargs)
        if not self._lock.acquire(timeout=self.busy_timeout_s):
            raise StoreLockedError(
                f"the store is busy with other requests (waited {self.busy_timeout_s:g} s); try again"
            )
        try:
            return fn(*args, **kwargs)
        finally:
            self._lock.release()

    def submit(self, loop: asyncio.AbstractEventLoop, job: Callable[[], None]) -> None:
        """Run ``job`` in the pool, outside the lock (``job`` takes it through ``run_locked``)."""
        loop.run_in_executor(self._pool, job)

    def run_locked(self, fn: Callable[..., T], *args: Any) -> T:
        return self._run(fn, args, {})

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


_DELTA, _DONE, _FAILED = "delta", "done", "failed"


class DeltaStream(Generic[T]):
    """``async for piece in stream`` yields text pieces; then ``stream.result`` is ``fn``'s value.

    A failure in ``fn`` is raised from the iteration as an ``APIError``. The worker runs to the end
    even if nobody iterates any more (a client that hung up): Python threads cannot be stopped.
    """

    def __init__(self, worker: Worker, fn: Callable[[DeltaCallback], T]) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._result: T | None = None
        self._finished = False
        self._fn = fn
        self._worker = worker
        worker.submit(self._loop, self._work)

    def _post(self, kind: str, value: Any) -> None:
        # RuntimeError: the loop has closed (server shutting down), so nobody is listening
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))

    def _on_delta(self, piece: str) -> None:
        if piece:
            self._post(_DELTA, piece)

    def _work(self) -> None:
        # Runs in the worker thread, under the worker's lock when it has one.
        try:
            result = self._worker.run_locked(self._fn, self._on_delta)
        except BaseException as exc:
            self._post(_FAILED, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self._post(_DONE, result)

    def __aiter__(self) -> DeltaStream[T]:
        return self

    async def __anext__(self) -> str:
        if self._finished:
            raise StopAsyncIteration
        kind, value = await self._queue.get()
        if kind == _DELTA:
            return str(value)
        self._finished = True
        if kind == _FAILED:
            raise from_exception(value)
        self._result = value
        raise StopAsyncIteration

    @property
    def result(self) -> T:
        if not self._finished:
            raise RuntimeError("the stream has not finished")
        return self._result  # type: ignore[return-value]  # set by the DONE message
