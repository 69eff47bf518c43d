"""The extraction prompt paired with its reply (graphiti-style): what is asked of the model, the
JSON schema its reply must follow, the reply's typed form, and the validation that turns text into it.

``ExtractionPrompt`` bundles the four (version, messages, schema, parser); the version goes into the
extractor's cache key, so a change of wording or schema is a change of version. ``FACTS_PROMPT`` is
the built-in one: the entities named in one chunk and its temporal facts (subject, relation,
object, the time as written, the sentence that states it, an optional value and unit).

Nothing here calls a model or reads a time: ``tgrag.extract.llm`` does that with what this returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..llm.base import Message, StructuredOutputError, parse_json
from ..model import EntityType, TimeInterval

PROMPT_VERSION = "facts-v1"


# ---- the reply: its schema and its typed form ---------------------------------------------------
@dataclass(frozen=True)
class EntityReply:
    name: str
    type: str


@dataclass(frozen=True)
class FactReply:
    subject: str
    relation: str
    object: str
    time: str | None
    sentence: str
    value: float | None = None
    unit: str | None = None


@dataclass(frozen=True)
class ChunkReply:
    """A validated reply for one chunk."""

    entities: tuple[EntityReply, ...]
    facts: tuple[FactReply, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "entities": [{"name": e.name, "type": e.type} for e in self.entities],
            "facts": [
                {
                    "subject": f.subject,
                    "relation": f.relation,
                    "object": f.object,
                    "time": f.time,
                    "sentence": f.sentence,
                    "value": f.value,
                    "unit": f.unit,
                }
                for f in self.facts
            ],
        }


def _text(limit: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": limit}


def _nullable(limit: int) -> dict[str, Any]:
    return {"type": ["string", "null"], "maxLength": limit}


# Bounds keep a constrained decoder from running past max_tokens inside one string or list (a
# small model can wander); they are far above what a chunk of ~180 words needs.
MAX_ITEMS = 48
# Every property required and no others: what OpenAI's strict mode and vLLM's guided decoding accept.
REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "entities": {
            "type": "array",
            "maxItems": MAX_ITEMS,
            "items": {
                "type": "object",
                "properties": {
                    "name": _text(120),
                    "type": {"type": "string", "enum": [t.value for t in EntityType]},
                },
                "required": ["name", "type"],
                "additionalProperties": False,
            },
        },
        "facts": {
            "type": "array",
            "maxItems": MAX_ITEMS,
            "items": {
                "type": "object",
                "properties": {
                    "subject": _text(120),
                    "relation": _text(80),
                    "object": _text(200),
                    "time": _nullable(60),
                    "sentence": _text(600),
                    "value": {"type": ["number", "null"]},
                    "unit": _nullable(24),
                },
                "required": ["subject", "relation", "object", "time", "sentence", "value", "unit"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["entities", "facts"],
    "additionalProperties": False,
}


class ReplyError(ValueError):
    """A reply that does not follow the schema; the message says what is wrong, for the retry."""


def parse_reply(text: str) -> ChunkReply:
    """The reply's JSON, checked against ``REPLY_SCHEMA``. Lenient where it costs nothing: optional
    fields may be missing, a number may be written as a string, an unknown entity type is "other"."""
    return reply_from_json(_first_object(text))


def _first_object(text: str) -> Any:
    """The reply's JSON: the value it starts with, or a later object with our keys."""
    try:
        return parse_json(text, wanted=lambda v: isinstance(v, dict) and ("entities" in v or "facts" in v))
    except StructuredOutputError as exc:
        if "no JSON value" in str(exc):
            raise ReplyError("the reply holds no JSON object") from None
        raise ReplyError(str(exc).replace("the JSON", "the reply's JSON object", 1)) from None


def reply_from_json(data: Any) -> ChunkReply:
    if not isinstance(data, dict):
        raise ReplyError(f"the reply is a JSON {type(data).__name__}, not an object")
    if "entities" not in data and "facts" not in data:
        raise ReplyError('the reply has neither "entities" nor "facts"')
    entities = [_entity(e, i) for i, e in enumerate(_array(data, "entities"))]
    facts = [_fact(f, i) for i, f in enumerate(_array(data, "facts"))]
    return ChunkReply(tuple(entities), tuple(facts))


def _array(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise ReplyError(f'"{key}" must be an array, not {type(value).__name__}')
    return value


def _entity(item: Any, i: int) -> EntityReply:
    where = f"entities[{i}]"
    if not isinstance(item, dict):
        raise ReplyError(f"{where} must be an object")
    name = _string(item, "name", where)
    kind = item.get("type")
    return EntityReply(name, kind.strip().lower() if isinstance(kind, str) else EntityType.OTHER.value)


def _fact(item: Any, i: int) -> FactReply:
    where = f"facts[{i}]"
    if not isinstance(item, dict):
        raise ReplyError(f"{where} must be an object")
    obj = item.get("object")
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        obj = f"{obj:g}"  # "object": 4.1 is an answer, not a schema violation worth a retry
    return FactReply(
        subject=_string(item, "subject", where),
        relation=_string(item, "relation", where),
        object=_string({"object": obj}, "object", where),
        time=_optional_string(item, "time", where),
        sentence=_string(item, "sentence", where),
        value=_optional_number(item, "value", where),
        unit=_optional_string(item, "unit", where),
    )


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        what = "missing" if value is None else f"a {type(value).__name__}"
        raise ReplyError(f'{where}."{key}" must be a string, is {what}')
    return " ".join(value.split())


def _optional_string(item: dict[str, Any], key: str, where: str) -> str | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}"  # "time": 2024
    if not isinstance(value, str):
        raise ReplyError(f'{where}."{key}" must be a string or null, is a {type(value).__name__}')
    return " ".join(value.split()) or None


def _optional_number(item: dict[str, Any], key: str, where: str) -> float | None:
    value = item.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        written = value
        try:
            value = float(written.replace(",", "").strip())
        except ValueError:
            raise ReplyError(
                f'{where}."{key}" must be a number or null, is the string {written[:40]!r}'
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ReplyError(f'{where}."{key}" must be a finite number or null')
    return float(value)


# Type words a model may use instead of the schema's enum (it is not enforced by every backend).
_TYPE_WORDS = {
    "organization": EntityType.ORGANIZATION,
    "organisation": EntityType.ORGANIZATION,
    "company": EntityType.ORGANIZATION,
    "org": EntityType.ORGANIZATION,
    "corporation": EntityType.ORGANIZATION,
    "person": EntityType.PERSON,
    "people": EntityType.PERSON,
    "product": EntityType.PRODUCT,
    "place": EntityType.PLACE,
    "location": EntityType.PLACE,
    "country": EntityType.PLACE,
    "city": EntityType.PLACE,
}


def entity_type(kind: str, default: EntityType = EntityType.OTHER) -> EntityType:
    """An entity reply's ``type`` as an ``EntityType``; ``default`` for a word we do not know."""
    return _TYPE_WORDS.get(kind.strip().lower(), default)


# ---- the prompt ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptContext:
    """What the prompt is built from: the chunk and what the document says about its time."""

    text: str
    subject: str | None
    date: str | None  # ISO date of the document
    period: TimeInterval | None  # the time it reports on, when given


@dataclass(frozen=True)
class ExtractionPrompt:
    """A prompt paired with its reply: the messages it sends and how its reply is validated."""

    version: str
    build: Callable[[PromptContext], list[Message]]
    schema: dict[str, Any]
    parse: Callable[[str], ChunkReply]


_SYSTEM = (
    "You extract entities and dated facts from text for a temporal knowledge graph. "
    "You copy sentences exactly and never invent facts. You reply with one JSON object only."
)


def facts_prompt(ctx: PromptContext) -> list[Message]:
    """Entities and temporal facts of one chunk; the document's time is the reference for relative times."""
    about = []
    if ctx.subject:
        about.append(f'subject: {ctx.subject} (the entity meant by "we", "our", "the company")')
    if ctx.date:
        about.append(f"date: {ctx.date}")
    if ctx.period is not None:
        p = ctx.period
        span = f" ({p.start.isoformat() if p.start else '...'} to {_last_day(p)})"
        about.append(f"reports on: {p.label}{span if p.granularity.value != 'range' else ''}")
    reference = "the period it reports on" if ctx.period is not None else "its date"
    header = "\n".join(about) or "no date known"
    user = f"""<DOCUMENT>
{header}
</DOCUMENT>
<TEXT>
{ctx.text}
</TEXT>

1. "entities": every organization, person, product and place named in TEXT, with "type" one of: {", ".join(t.value for t in EntityType)}.
2. "facts": every statement in TEXT about an entity at a time: an event, a figure, a role, a change. For each:
   - "subject": the entity it is about (the document's subject for "we" or "our");
   - "relation": a short lower-case verb phrase ("reported revenue", "joined", "acquired");
   - "object": what the relation leads to (an amount as written, an entity, a title);
   - "time": when it holds, as written in TEXT ("Q2 2024", "last quarter", "May 7, 2024", "from 2019 to 2021"), or null if the sentence names no time; relative times are read against {reference};
   - "sentence": the one sentence of TEXT that states it, copied exactly;
   - "value" and "unit": its main figure as a number and the figure's unit ("4.1" and "USD billion", "12.5" and "%"), else null.
Reply with JSON only, in this form:
{{"entities": [{{"name": "...", "type": "organization"}}], "facts": [{{"subject": "...", "relation": "...", "object": "...", "time": "...", "sentence": "...", "value": null, "unit": null}}]}}"""
    return [Message("system", _SYSTEM), Message("user", user)]


def reminder(reason: str) -> Message:
    """The message that asks again after a malformed reply."""
    return Message(
        "user",
        f"That reply could not be used: {reason}. Reply again with only one JSON object with the keys "
        '"entities" and "facts", in the form given above, and nothing else.',
    )


FACTS_PROMPT = ExtractionPrompt(PROMPT_VERSION, facts_prompt, REPLY_SCHEMA, parse_reply)


def _last_day(t: TimeInterval) -> str:
    return "..." if t.end is None else (t.end - timedelta(days=1)).isoformat()


__all__ = [
    "FACTS_PROMPT",
    "PROMPT_VERSION",
    "REPLY_SCHEMA",
    "ChunkReply",
    "EntityReply",
    "ExtractionPrompt",
    "FactReply",
    "PromptContext",
    "ReplyError",
    "entity_type",
    "facts_prompt",
    "parse_reply",
    "reminder",
    "reply_from_json",
]
