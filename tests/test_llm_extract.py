"""The LLM extractor: reply validation, retries, times, grounding of sentences, the cache, and ingest.

Most tests use a scripted LLM (prepared JSON replies, counted calls): the parsing logic is what is
under test. One ingest runs the real tiny transformers model, whose output is noise.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from pathlib import Path

import pytest

from tgrag.chunking import chunk_document
from tgrag.config import Config, IngestConfig
from tgrag.extract import create_extractor
from tgrag.extract.llm import LLMExtractor, ReplyCache, ground_sentence, resolve_time
from tgrag.extract.llm_prompt import ReplyError, parse_reply
from tgrag.llm import LLM, Generation, GenerationParams, Message, Usage
from tgrag.llm.tiny import build_tiny_llama
from tgrag.model import Chunk, Document, EntityType, Extraction, FactDraft, TimeInterval
from tgrag.sdk import TemporalRAG
from tgrag.timex import TimeContext

Q = TimeInterval.quarter
S1 = "Asteria Labs reported revenue of $4.1 billion in Q2 2024."
S2 = "Helena Castellano joined Asteria Labs as chief executive officer last quarter."
S3 = "The company employs engineers in Lisbon."
TEXT = f"{S1} {S2} {S3}"
DATED = Document(TEXT, date=date(2024, 8, 1), subject="Asteria Labs", source="asteria-call.txt")


def fact(
    subject: str,
    relation: str,
    obj: str,
    time: str | None,
    sentence: str,
    value: float | None = None,
    unit: str | None = None,
) -> dict[str, object]:
    return {
        "subject": subject,
        "relation": relation,
        "object": obj,
        "time": time,
        "sentence": sentence,
        "value": value,
        "unit": unit,
    }


GOOD = json.dumps(
    {
        "entities": [
            {"name": "Asteria Labs", "type": "organization"},
            {"name": "Helena Castellano", "type": "person"},
            {"name": "Lisbon", "type": "place"},
        ],
        "facts": [
            fact("Asteria Labs", "reported revenue", "$4.1 billion", "Q2 2024", S1, 4.1, "USD billion"),
            fact("Helena Castellano", "joined as", "chief executive officer", "last quarter", S2),
            fact("we", "employs engineers in", "Lisbon", None, S3),
        ],
    }
)


class ScriptedLLM:
    """An ``LLM`` that answers from a script and counts what it was asked."""

    name = "scripted"
    generative = True

    def __init__(self, reply: Callable[[Sequence[Message]], str]) -> None:
        self.reply = reply
        self.calls = 0
        self.batch_sizes: list[int] = []  # conversations per chat() call
        self.conversations: list[list[Message]] = []
        self.closed = False

    def chat(
        self, conversations: Sequence[Sequence[Message]], params: GenerationParams | None = None
    ) -> list[Generation]:
        assert (
            params is not None and params.json_schema is not None
        )  # the extractor always asks for its schema
        self.calls += 1
        self.batch_sizes.append(len(conversations))
        out = []
        for conv in conversations:
            self.conversations.append(list(conv))
            text = self.reply(conv)
            out.append(
                Generation(
                    text,
                    Usage(sum(len(m.content.split()) for m in conv), len(text.split())),
                    "stop",
                    self.name,
                )
            )
        return out

    def complete(self, prompts: Sequence[str], params: GenerationParams | None = None) -> list[Generation]:
        return self.chat([[Message("user", p)] for p in prompts], params)

    def stream_chat(
        self, messages: Sequence[Message], params: GenerationParams | None = None
    ) -> Iterator[str]:
        yield self.chat([messages], params)[0].text

    def close(self) -> None:
        self.closed = True


def always(text: str) -> Callable[[Sequence[Message]], str]:
    return lambda conv: text


def chunk_of(doc: Document) -> list[Chunk]:
    return chunk_document(doc, 500)


def extract(ex: LLMExtractor, doc: Document) -> list[Extraction]:
    return ex.extract(doc, chunk_of(doc))


def by_relation(extraction: Extraction) -> dict[str, FactDraft]:
    return {f.relation: f for f in extraction.facts}


# ---- a good reply ------------------------------------------------------------------------------
def test_good_reply_becomes_facts_with_times_values_and_types() -> None:
    llm = ScriptedLLM(always(GOOD))
    (ext,) = extract(LLMExtractor(llm), DATED)
    facts = by_relation(ext)
    revenue, joined, employs = facts["reported revenue"], facts["joined as"], facts["employs engineers in"]
    assert revenue.time == Q(2024, 2) and revenue.time_explicit
    assert (revenue.value, revenue.unit) == (pytest.approx(4.1e9), "USD")  # as rules reads the sentence
    assert joined.time == Q(2024, 2)  # "last quarter" of a document dated 2024-08-01
    assert joined.subject == "Helena Castellano" and "Asteria Labs" in joined.mentions
    assert employs.subject == "Asteria Labs"  # "we" is the document's subject
    assert (
        employs.time == TimeInterval.day(date(2024, 8, 1)) and not employs.time_explicit
    )  # no time: the date
    assert all(f.text in TEXT for f in ext.facts)
    types = {m.text: m.type for m in ext.entities}
    assert types == {
        "Asteria Labs": EntityType.ORGANIZATION,
        "Helena Castellano": EntityType.PERSON,
        "Lisbon": EntityType.PLACE,
    }
    user = llm.conversations[0][-1].content
    assert "date: 2024-08-01" in user and TEXT in user


def test_relative_times_resolve_against_the_documents_period() -> None:
    doc = Document(TEXT, date=date(2024, 10, 30), period=Q(2024, 3), subject="Asteria Labs")
    llm = ScriptedLLM(always(GOOD))
    (ext,) = extract(LLMExtractor(llm), doc)
    facts = by_relation(ext)
    assert facts["joined as"].time == Q(2024, 2)  # the quarter before Q3 2024
    assert facts["employs engineers in"].time == Q(2024, 3)  # no time of its own: the period
    assert "reports on: 2024-Q3 (2024-07-01 to 2024-09-30)" in llm.conversations[0][-1].content


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("Q2 2024", Q(2024, 2)),
        ("2024-Q2", Q(2024, 2)),
        ("last quarter", Q(2024, 2)),
        ("May 7, 2024", TimeInterval.day(date(2024, 5, 7))),
        ("2019..2021", TimeInterval(date(2019, 1, 1), date(2022, 1, 1))),
        ("2024-04-01/2024-06-30", TimeInterval(date(2024, 4, 1), date(2024, 7, 1))),
        ("during the second quarter of 2024 compared with 2023", Q(2024, 2)),
        ("null", None),
        ("not stated", None),
        ("soon-ish", None),
    ],
)
def test_time_strings(written: str, expected: TimeInterval | None) -> None:
    got = resolve_time(written, TimeContext(TimeInterval.day(date(2024, 8, 1))))
    if expected is None:
        assert got is None
    else:
        assert got is not None and (got.start, got.end) == (expected.start, expected.end)


def test_unparseable_time_falls_back_to_the_document_time() -> None:
    reply = json.dumps(
        {
            "entities": [],
            "facts": [fact("Asteria Labs", "reported revenue", "$4.1 billion", "around then", S1)],
        }
    )
    doc = Document(TEXT, period=Q(2024, 2), subject="Asteria Labs")
    (ext,) = extract(LLMExtractor(ScriptedLLM(always(reply))), doc)
    assert ext.facts[0].time == Q(2024, 2) and not ext.facts[0].time_explicit


def test_all_chunks_of_a_document_are_one_batch_in_order() -> None:
    sentences = [
        f"Asteria Labs opened store number {i} in Lisbon during Q{i % 4 + 1} 2024." for i in range(12)
    ]
    doc = Document(" ".join(sentences), date=date(2024, 12, 31), subject="Asteria Labs")
    chunks = chunk_document(doc, 25)
    assert len(chunks) > 3

    def reply(conv: Sequence[Message]) -> str:
        text = conv[-1].content.split("<TEXT>\n", 1)[1].split("\n</TEXT>", 1)[0]
        first = next(s for s in sentences if s in text)
        return json.dumps({"entities": [], "facts": [fact("Asteria Labs", "opened", "a store", None, first)]})

    llm = ScriptedLLM(reply)
    out = LLMExtractor(llm).extract(doc, chunks)
    assert llm.calls == 1 and len(llm.conversations) == len(chunks)
    assert len(out) == len(chunks)
    for chunk, ext in zip(chunks, out, strict=True):
        assert [f.text for f in ext.facts] == [chunk.text.split(". ")[0] + "."]


# ---- malformed replies ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I found no facts.", "no JSON object"),
        ("[1, 2]", "not an object"),
        ('{"items": []}', "neither"),
        ('{"entities": {}, "facts": []}', '"entities" must be an array'),
        (
            '{"entities": [], "facts": [{"subject": "A", "relation": "r", "object": "o"}]}',
            'facts[0]."sentence"',
        ),
        (
            '{"facts": [{"subject": "A", "relation": "r", "object": "o", "sentence": "s", "value": "lots"}]}',
            "number",
        ),
        ('{"entities": [{"type": "person"}]}', 'entities[0]."name"'),
        ('{"entities": [{"name": "A", "type": "person"}, {"name": "B", "ty', "invalid or unfinished"),
    ],
)
def test_malformed_replies_are_rejected_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ReplyError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_reply(text)


def test_lenient_where_it_costs_nothing() -> None:
    reply = parse_reply(
        'Sure! ```json\n{"facts": [{"subject": "A", "relation": "r", "object": 4.1, "sentence": "s", "value": "1,200"}]}\n```'
    )
    (f,) = reply.facts
    assert (f.object, f.value, f.time, f.unit) == ("4.1", 1200.0, None, None)
    assert reply.entities == ()


def test_malformed_then_good_is_retried_and_used() -> None:
    def reply(conv: Sequence[Message]) -> str:
        return GOOD if len(conv) > 2 else '{"entities": [], "facts": [{"subject": "A"}]}'

    llm = ScriptedLLM(reply)
    ex = LLMExtractor(llm)
    (ext,) = extract(ex, DATED)
    assert llm.calls == 2 and len(ext.facts) == 3
    retry = llm.conversations[1]
    assert retry[-2].role == "assistant" and retry[-2].content.startswith('{"entities"')
    assert retry[-1].role == "user" and 'facts[0]."relation"' in retry[-1].content
    assert ex.stats.retried == 1 and ex.stats.skipped == 0


def test_always_malformed_is_skipped_with_a_logged_reason(caplog: pytest.LogCaptureFixture) -> None:
    llm = ScriptedLLM(always("no json here"))
    ex = LLMExtractor(llm, retries=2)
    with caplog.at_level(logging.WARNING, logger="tgrag.extract.llm"):
        (ext,) = extract(ex, DATED)
    assert ext == Extraction((), ())
    assert llm.calls == 3  # the first try and two retries
    (record,) = [r for r in caplog.records if "skipped" in r.getMessage()]
    message = record.getMessage()
    assert DATED.id[:12] in message and "chunk 0" in message and "no JSON object" in message
    assert ex.stats.skipped == 1
    # nothing is cached for a chunk given up on: a later run asks again
    extract(ex, DATED)
    assert llm.calls == 6


def test_a_cut_reply_says_so() -> None:
    class Cut(ScriptedLLM):
        def chat(
            self, conversations: Sequence[Sequence[Message]], params: GenerationParams | None = None
        ) -> list[Generation]:
            return [
                Generation(g.text, g.usage, "length", g.model) for g in super().chat(conversations, params)
            ]

    ex = LLMExtractor(Cut(always(GOOD[:100])), retries=0, max_tokens=50)
    extract(ex, DATED)
    assert "the reply was cut at max_tokens=50" in ex.stats.reasons[-1]


# ---- grounding: every fact's text is a sentence of the chunk --------------------------------------
def test_sentences_are_mapped_to_the_chunk_or_the_fact_dropped(caplog: pytest.LogCaptureFixture) -> None:
    reply = json.dumps(
        {
            "entities": [{"name": "Atlantis Corp", "type": "organization"}],
            "facts": [
                fact(
                    "Asteria Labs",
                    "reported revenue",
                    "$4.1 billion",
                    "Q2 2024",
                    "Asteria Labs reported revenues of 4.1 billion dollars in Q2 2024",
                ),
                fact(
                    "Helena Castellano",
                    "joined",
                    "Asteria Labs",
                    None,
                    "joined Asteria Labs as chief executive officer",
                ),
                fact(
                    "Asteria Labs",
                    "landed on",
                    "the moon",
                    "2030",
                    "Asteria Labs landed on the moon in 2030.",
                ),
            ],
        }
    )
    ex = LLMExtractor(ScriptedLLM(always(reply)))
    with caplog.at_level(logging.INFO, logger="tgrag.extract.llm"):
        (ext,) = extract(ex, DATED)
    assert [f.text for f in ext.facts] == [S1, S2]
    assert ex.stats.sentences_mapped == 2 and ex.stats.facts_dropped == 1
    assert any("not in the chunk" in r.getMessage() and "moon" in r.getMessage() for r in caplog.records)
    assert "Atlantis Corp" not in {m.text for m in ext.entities}  # a name the chunk never writes


def test_ground_sentence() -> None:
    sentences = [S1, S2, S3]
    assert ground_sentence(f"  {S2}  ", sentences) == S2
    assert ground_sentence("employs engineers in Lisbon", sentences) == S3
    assert ground_sentence("Revenue at Asteria Labs was $4.1 billion in Q2 2024", sentences) == S1
    assert ground_sentence("Completely unrelated words here", sentences) is None
    assert ground_sentence("", sentences) is None


# ---- the cache -----------------------------------------------------------------------------------
def test_cache_hit_makes_no_call() -> None:
    llm = ScriptedLLM(always(GOOD))
    ex = LLMExtractor(llm)
    first = extract(ex, DATED)
    assert extract(ex, DATED) == first
    assert llm.calls == 1 and ex.stats.cached == 1
    moved = Document(TEXT, date=date(2024, 11, 1), subject="Asteria Labs")  # another reference time
    extract(ex, moved)
    assert llm.calls == 2


def test_sqlite_cache_is_shared_between_runs(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "replies.sqlite"
    first_llm = ScriptedLLM(always(GOOD))
    first = LLMExtractor(first_llm, cache=path)
    expected = extract(first, DATED)
    first.close()
    second_llm = ScriptedLLM(always("unused"))
    second = LLMExtractor(second_llm, cache=path)
    assert extract(second, DATED) == expected
    assert second_llm.calls == 0 and len(second.cache) == 1
    second.close()
    assert not first_llm.closed  # an LLM passed in belongs to the caller
    other_model = ScriptedLLM(always(GOOD))
    extract(LLMExtractor(other_model, cache=path, model_id="another-model"), DATED)
    assert other_model.calls == 1  # the model is part of the key
    (tmp_path / "junk.sqlite").write_text("not a database at all, not even close" * 10)
    with pytest.raises(ValueError, match="not a usable SQLite file"):
        ReplyCache(tmp_path / "junk.sqlite").get("k")


# ---- the registry --------------------------------------------------------------------------------
def test_registered_as_llm_spec(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs an LLM spec"):
        create_extractor("llm")
    with pytest.raises(Exception, match="no model folder"):
        create_extractor(f"llm:transformers:{tmp_path / 'absent'}")


# ---- ingest end to end ---------------------------------------------------------------------------
def test_ingest_and_retrieve_with_a_scripted_llm(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = Document(
        "Borealis Freight reported nothing useful at all in 2023.",
        date=date(2024, 2, 1),
        subject="Borealis Freight",
    )

    def reply(conv: Sequence[Message]) -> str:
        return "garbage" if "Borealis" in conv[1].content else GOOD

    llm = ScriptedLLM(reply)
    with TemporalRAG.open(tmp_path / "store", extractor=LLMExtractor(llm, retries=1)) as rag:
        with caplog.at_level(logging.WARNING, logger="tgrag.extract.llm"):
            report = rag.ingest([DATED, broken])
        assert set(report.added) == {DATED.id, broken.id}  # the broken document is stored, without facts
        assert report.facts_created == 3
        assert any(broken.id[:12] in r.getMessage() for r in caplog.records)
        result = rag.retrieve("What was Asteria Labs' revenue in Q2 2024?", now=date(2024, 9, 1))
        assert not result.abstained
        assert result.evidence[0].text == S1 and result.evidence[0].time == Q(2024, 2)


def test_ingest_sends_each_batch_to_the_llm_in_one_call(tmp_path: Path) -> None:
    docs = [
        Document(
            " ".join(
                f"Asteria Labs opened store {d}-{i} in Lisbon during Q{i % 4 + 1} 2024." for i in range(6)
            ),
            date=date(2024, 12, 31),
            subject="Asteria Labs",
        )
        for d in range(6)
    ]
    config = Config(ingest=IngestConfig(chunk_words=25, batch_documents=3))
    chunks = [len(chunk_document(d, config.ingest.chunk_words)) for d in docs]
    assert min(chunks) > 1

    def reply(conv: Sequence[Message]) -> str:
        text = conv[-1].content.split("<TEXT>\n", 1)[1].split("\n</TEXT>", 1)[0]
        first = text.split(". ")[0].rstrip(".") + "."
        store = first.split(" in ")[0].removeprefix("Asteria Labs opened ")  # "store 2-3": one fact each
        return json.dumps({"entities": [], "facts": [fact("Asteria Labs", "opened", store, None, first)]})

    llm = ScriptedLLM(reply)
    ex = LLMExtractor(llm, cache=tmp_path / "replies.sqlite")
    # Batches are cut by input position: the empty document is skipped, its batch still one call.
    inputs = [docs[0], Document("   "), *docs[1:]]
    with TemporalRAG.open(tmp_path / "store", config, extractor=ex) as rag:
        report = rag.ingest(inputs)
    assert report.batches == 3 and set(report.added) == {d.id for d in docs}
    assert [s.reason for s in report.skipped] == ["empty document"]
    assert report.facts_created == sum(chunks)
    # [docs 0, 1], [docs 2, 3, 4], [doc 5]: one chat() call each, holding all of the batch's chunks.
    assert llm.batch_sizes == [chunks[0] + chunks[1], sum(chunks[2:5]), chunks[5]]
    assert ex.cache.path is None  # the SDK's close() closed the extractor and so its cache file


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """A tiny model runs faster on one thread: syncing two costs more than it saves."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_thread")
def test_ingest_through_the_real_tiny_model(
    tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ex = create_extractor(f"llm:transformers:{tiny_dir}", max_tokens=48, retries=1)
    assert isinstance(ex, LLMExtractor)
    llm: LLM = ex.llm
    docs = [
        DATED,
        Document(
            "Borealis Freight moved 13 new vehicles in May 2023.",
            date=date(2023, 6, 1),
            subject="Borealis Freight",
        ),
    ]
    with TemporalRAG.open(tmp_path / "store", extractor=ex) as rag:
        with caplog.at_level(logging.WARNING, logger="tgrag.extract.llm"):
            report = rag.ingest(docs)
        assert set(report.added) == {d.id for d in docs}
        # Noise weights: each chunk is either skipped with a reason or yields grounded facts only.
        skipped = [r.getMessage() for r in caplog.records if "skipped after 2 attempt(s)" in r.getMessage()]
        assert len(skipped) == ex.stats.skipped
        assert ex.stats.chunks == 2 and ex.stats.llm_calls >= 1 and ex.stats.requests >= 2
        store = rag.workspace.store
        assert store.integrity_check() == "ok"
        stats = rag.stats()
        assert stats["documents"] == 2 and stats["chunks"] == 2
        assert stats["facts"] == report.facts_created
        rows = list(store.fact_rows())
        assert all(r.text in TEXT or r.text in docs[1].text for r in rows)
    ex.close()
    assert llm.generative
