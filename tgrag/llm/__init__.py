"""Language models behind one protocol (``LLM``) and one registry of spec strings (``create_llm``)."""

from .base import (
    LLM,
    LLMS,
    Generation,
    GenerationParams,
    LLMError,
    Message,
    StructuredOutputError,
    Usage,
    chat_one,
    create_llm,
    parse_json,
)
from .speculative import SpecDecodeCounts, SuffixSpeculation

__all__ = [
    "LLM",
    "LLMS",
    "Generation",
    "GenerationParams",
    "LLMError",
    "Message",
    "SpecDecodeCounts",
    "StructuredOutputError",
    "SuffixSpeculation",
    "Usage",
    "chat_one",
    "create_llm",
    "parse_json",
]
