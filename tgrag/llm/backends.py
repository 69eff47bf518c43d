"""Registers the built-in LLM backends. Each imports its heavy dependency only when created."""

from __future__ import annotations

from typing import Any

from .base import LLM, LLMS


@LLMS.register("extractive")
def _extractive(arg: str | None, **kwargs: Any) -> LLM:
    from .extractive import ExtractiveLLM

    return ExtractiveLLM()


@LLMS.register("openai")
def _openai(arg: str | None, **kwargs: Any) -> LLM:
    from .openai_api import OpenAILLM

    return OpenAILLM.from_spec(arg or "", **kwargs)


@LLMS.register("vllm")
def _vllm(arg: str | None, **kwargs: Any) -> LLM:
    from .vllm_engine import VLLMEngineLLM

    return VLLMEngineLLM.from_spec(arg or "", **kwargs)


@LLMS.register("transformers")
def _transformers(arg: str | None, **kwargs: Any) -> LLM:
    from .hf import TransformersLLM

    return TransformersLLM.from_spec(arg or "", **kwargs)
