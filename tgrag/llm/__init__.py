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

__all__ = [
    "LLM",
    "LLMS",
    "Generation",
    "GenerationParams",
    "LLMError",
    "Message",
    "StructuredOutputError",
    "Usage",
    "chat_one",
    "create_llm",
    "parse_json",
]
