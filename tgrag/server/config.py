"""``ServerSettings``: everything ``tgrag serve`` is configured with, passed in as one object.

Keys come from a file or from ``TGRAG_API_KEY``, read when the server starts (``load_api_keys``),
never at import. Settings never print the keys: the field is left out of ``repr``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

API_KEY_ENV = "TGRAG_API_KEY"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    # Bearer keys a client may present; empty means no authentication.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    max_request_bytes: int = 8 * 1024 * 1024
    max_documents_per_request: int = 1000
    model_name: str = "tgrag"
    # An upstream LLM spec (``tgrag.llm.create_llm``): other model names pass through to it, and the
    # RAG agent plans and writes with it. None: RAG only, with the SDK's default (extractive) answers.
    llm: str | None = None
    default_budget: int | None = None  # evidence tokens when a request names none (None: the SDK's)
    max_budget: int = 16384  # requests asking for more are refused: retrieval cost grows with it
    max_iter: int | None = None  # the agent's iterations when a request names none (None: the SDK's)
    max_iter_limit: int = 16
    # How long a request waits for its turn at the store before it gets 503.
    busy_timeout_s: float = 60.0
    workers: int = 4  # threads that run store calls (they take turns: one store call at a time)

    def __post_init__(self) -> None:
        if self.max_request_bytes < 1:
            raise ValueError("max_request_bytes must be positive")
        if self.max_documents_per_request < 1:
            raise ValueError("max_documents_per_request must be positive")
        if self.default_budget is not None and self.default_budget < 1:
            raise ValueError("default_budget must be a positive number of tokens")
        if self.max_iter is not None and not 1 <= self.max_iter <= self.max_iter_limit:
            raise ValueError(f"max_iter must be in 1..{self.max_iter_limit}")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")


def read_key_file(path: Path) -> tuple[str, ...]:
    """One key a line; blank lines and lines starting with ``#`` are ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the API key file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"the API key file {path} is not UTF-8 text") from None
    keys = tuple(s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#"))
    if not keys:
        raise InputError(f"the API key file {path} holds no keys (one a line; # starts a comment)")
    return keys


def load_api_keys(key_file: Path | None, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Keys from ``key_file`` and from ``TGRAG_API_KEY`` (either, both or neither), deduplicated."""
    env = os.environ if environ is None else environ
    keys: list[str] = list(read_key_file(key_file)) if key_file is not None else []
    from_env = env.get(API_KEY_ENV, "").strip()
    if from_env:
        keys.append(from_env)
    return tuple(dict.fromkeys(keys))
