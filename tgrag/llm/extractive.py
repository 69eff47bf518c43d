"""``extractive``: the no-LLM backend. It selects text from its prompt instead of generating.

The reply to a prompt is the prompt's sentence that shares the most words with its question
(the line starting ``Question:``, else the last line), so an OpenAI-style client of the server
still gets a grounded reply with no model installed. It cannot follow a JSON schema, and the
agent plans by rules when it sees ``generative = False``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..text import split_sentences, words
from .base import (
    FinishReason,
    Generation,
    GenerationParams,
    Message,
    StructuredOutputError,
    Usage,
    count_words,
    word_deltas,
)

_NO_ANSWER = "I don't know."


class ExtractiveLLM:
    name = "extractive"
    generative = False

    def complete(self, prompts: Sequence[str], params: GenerationParams | None = None) -> list[Generation]:
        return [self._reply(p, params or GenerationParams()) for p in prompts]

    def chat(
        self, conversations: Sequence[Sequence[Message]], params: GenerationParams | None = None
    ) -> list[Generation]:
        return [self._reply(_last_user(c), params or GenerationParams()) for c in conversations]

    def stream_chat(
        self, messages: Sequence[Message], params: GenerationParams | None = None
    ) -> Iterator[str]:
        yield from word_deltas(self.chat([messages], params)[0].text)

    def close(self) -> None:
        pass

    def _reply(self, prompt: str, params: GenerationParams) -> Generation:
        if params.json_schema is not None:
            raise StructuredOutputError(
                "the extractive backend cannot produce JSON; configure a generative LLM"
            )
        question, context = _split_prompt(prompt)
        text = _best_sentence(question, context) or _NO_ANSWER
        finish: FinishReason = "stop"
        tokens = text.split()
        if len(tokens) > params.max_tokens:
            text, finish = " ".join(tokens[: params.max_tokens]), "length"
        for stop in params.stop:
            if stop and stop in text:
                text, finish = text[: text.index(stop)], "stop"
        return Generation(text, Usage(count_words(prompt), count_words(text)), finish, self.name)


def _last_user(conversation: Sequence[Message]) -> str:
    for m in reversed(conversation):
        if m.role == "user":
            return m.content
    return ""


def _split_prompt(prompt: str) -> tuple[str, str]:
    """(question, context): the ``Question:`` line if there is one, else the last non-empty line."""
    lines = [ln for ln in prompt.splitlines() if ln.strip()]
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].lower().startswith("question:"):
            return lines[i].split(":", 1)[1].strip(), "\n".join(lines[:i] + lines[i + 1 :])
    if not lines:
        return "", ""
    return lines[-1], "\n".join(lines[:-1])


def _best_sentence(question: str, context: str) -> str | None:
    wanted = set(words(question))
    best, best_score = None, 0.0
    for span in split_sentences(context):
        got = set(words(span.text))
        overlap = len(wanted & got)
        score = overlap / (1.0 + 0.05 * len(got))  # prefer the tighter of two equal matches
        if overlap and score > best_score:
            best, best_score = span.text, score
    return best
