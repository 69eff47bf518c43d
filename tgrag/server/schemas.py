"""Request and response bodies, mirroring OpenAI's, plus tgrag's own endpoints and extension fields.

Requests ignore fields they do not know (clients send many), but every field they do know is
checked; a bad one becomes a 400 naming the parameter. tgrag's request extensions (``as_of``,
``now``, ``budget``, ``max_iter``) arrive through the client's ``extra_body``; its response
extension is the top-level ``tgrag`` object (citations, abstention, trace).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from ..timex import parse_date

# ---- dates ----------------------------------------------------------------------------------


def _date(value: Any) -> Any:
    """Our date forms: "2024-06-30", "2024-06", "2024", "June 30, 2024"."""
    if isinstance(value, str):
        return parse_date(value)  # its ValueError says which forms it reads
    if isinstance(value, date):
        return value
    # pydantic would read a number as seconds since 1970: refuse it rather than guess
    raise ValueError("must be a date string such as '2024-06-30'")


def _moment(value: Any) -> Any:
    """A date, or an ISO 8601 date-time for an as-of finer than a day."""
    if isinstance(value, str) and "T" in value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"cannot read {value!r} as an ISO 8601 date-time") from None
    return _date(value)


Day = Annotated[date, BeforeValidator(_date)]
Moment = Annotated[datetime | date, BeforeValidator(_moment)]
Tokens = Annotated[int, Field(ge=1, strict=True)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TemporalOptions(_Request):
    """tgrag's request extensions (``extra_body`` in the openai client)."""

    as_of: Moment | None = None  # only what had been ingested by then
    now: Day | None = None  # what "last quarter" is relative to (default: today)
    budget: Tokens | None = None  # evidence tokens
    max_iter: Annotated[int, Field(ge=1, strict=True)] | None = None  # Auto-RAG iterations


# ---- OpenAI requests ------------------------------------------------------------------------


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Request):
    include_usage: bool = False


class GenerationFields(_Request):
    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Tokens | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    user: str | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError("only n=1 is supported")
        return n

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(GenerationFields, TemporalOptions):
    messages: list[ChatMessage]
    max_completion_tokens: Tokens | None = None
    response_format: dict[str, Any] | None = None

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if not messages:
            raise ValueError("messages must hold at least one message")
        return messages


class CompletionRequest(GenerationFields, TemporalOptions):
    prompt: str | list[str]

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and not prompt:
            raise ValueError("prompt must hold at least one prompt")
        return prompt


# ---- tgrag requests -------------------------------------------------------------------------


class IngestRequest(_Request):
    # Records as ``tgrag ingest --format jsonl`` reads them: text, date, period, subject, aliases,
    # source, key (or id), metadata. A bad record is skipped and reported, not fatal.
    documents: list[dict[str, Any]]
    ingested_at: Moment | None = None  # the knowledge time to record (default: now)


class RetrieveRequest(_Request):
    query: Annotated[str, Field(min_length=1)]
    as_of: Moment | None = None
    now: Day | None = None
    budget: Tokens | None = None

    @field_validator("query")
    @classmethod
    def _has_words(cls, query: str) -> str:
        if not query.strip():
            raise ValueError("query is empty")
        return query


# ---- responses ------------------------------------------------------------------------------


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CitationOut(BaseModel):
    id: str  # "fact:12", "summary:2024-Q3", "chunk:<id>"
    text: str
    time: str  # the cited item's valid time, e.g. "2024-Q2"
    source: str | None
    doc_id: str | None


class TraceStepOut(BaseModel):
    iteration: int
    action: str  # query, refine, answer
    query: str
    thought: str
    passages: list[str]  # ids of the passages first shown in this step


class TraceOut(BaseModel):
    iterations: int
    finish_reason: str  # answer, max_iter, no_new_evidence, abstained
    steps: list[TraceStepOut]
    usage: UsageOut


class TGRAGExtension(BaseModel):
    """The ``tgrag`` field of a completion (and of a stream's finishing chunk)."""

    citations: list[CitationOut]
    abstained: bool
    reason: str
    trace: TraceOut | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: str


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageOut
    tgrag: TGRAGExtension | None = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: None = None
    finish_reason: str


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageOut
    tgrag: TGRAGExtension | None = None


class EvidenceOut(BaseModel):
    id: str
    text: str
    time: str
    valid_from: str | None  # first day, ISO; None when unbounded
    valid_until: str | None  # the day after the last (half-open), ISO; None when unbounded
    score: float
    kind: str
    source: str | None
    doc_id: str | None
    subject: str | None
    tokens: int


class ScopeOut(BaseModel):
    time: str
    relation: str
    text: str


class RetrieveResponse(BaseModel):
    object: Literal["retrieval"] = "retrieval"
    query: str
    scope: ScopeOut
    evidence: list[EvidenceOut]
    abstained: bool
    reason: str
    entities: list[str]
    as_of: str | None


class SkippedOut(BaseModel):
    position: int
    doc_id: str | None
    source: str | None
    reason: str


class IngestResponse(BaseModel):
    object: Literal["ingest.report"] = "ingest.report"
    added: list[str]
    skipped: list[SkippedOut]
    chunks: int
    facts_created: int
    facts_merged: int
    entities_created: int
    dirty_nodes: int
    summaries_recomputed: int
    seconds: float


class DeleteResponse(BaseModel):
    id: str
    object: Literal["document.deleted"] = "document.deleted"
    deleted: bool = True
    facts_removed: int
    facts_kept: int
    entities_removed: int


class Health(BaseModel):
    status: Literal["ok"] = "ok"
