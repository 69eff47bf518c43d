"""Bad input through the SDK and the readers: every bad document is a logged skip with a reason,
every bad record a ValueError that says what is wrong, and a damaged store folder is either a
clear error (the database) or a silent rebuild (the derived indexes). All texts are made up here."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tgrag.config import Config, IngestConfig
from tgrag.errors import StoreCorruptedError
from tgrag.model import Document, TimeInterval
from tgrag.readers import document_from_record, read_documents
from tgrag.sdk import TemporalRAG

MAX_CHARS = 400
CONFIG = Config(ingest=IngestConfig(max_document_chars=MAX_CHARS))


def doc(company: str, quarter: int, revenue: int, key: str | None = None) -> Document:
    return Document(
        f"{company} reported revenue of ${revenue} million in the quarter.\n"
        f"The operating margin of {company} was {10 + quarter}.5% in the quarter.",
        date=date(2024, 3 * quarter, 20),
        period=TimeInterval.quarter(2024, quarter),
        subject=company,
        source=f"{company.split()[0].lower()}-2024-q{quarter}.txt",
        key=key,
    )


GOOD_A = doc("Quillfeather Analytics", 1, 211)
GOOD_B = doc("Quillfeather Analytics", 2, 245)


@pytest.fixture
def rag(store_path: Path):
    with TemporalRAG.open(store_path, CONFIG) as r:
        yield r


BAD_DOCUMENTS: list[tuple[str, object, str]] = [
    ("empty", Document(""), "empty document"),
    ("whitespace", Document("   \n\t  \n"), "empty document"),
    ("nul-bytes", Document("PK\x03\x04\x00\x00binary\x00payload"), "binary content"),
    ("control-chars", Document("\x01\x02\x03\x04\x05\x06 ab"), "binary content"),
    ("replacement-chars", Document("Revenue was \ufffd\ufffd million " * 8), "not valid UTF-8"),
    ("too-large", Document("Revenue grew again. " * 30), f"limit {MAX_CHARS}"),
    ("int", 42, "not a Document but int"),
    ("none", None, "not a Document but NoneType"),
    ("bytes", b"Revenue was $4 million.", "not a Document but bytes"),
    ("list", ["Revenue was $4 million."], "not a Document but list"),
    ("source-list", Document("Revenue was $4 million in 2024.", source=["a.txt"]), "source is not a string"),  # type: ignore[arg-type]
    ("subject-int", Document("Revenue was $5 million in 2024.", subject=5), "subject is not a string"),  # type: ignore[arg-type]
    ("date-str", Document("Revenue was $6 million in 2024.", date="2024-01-02"), "date is not"),  # type: ignore[arg-type]
    ("aliases-int", Document("Revenue was $7 million in 2024.", aliases=(1, 2)), "aliases"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("bad", "reason"), [b[1:] for b in BAD_DOCUMENTS], ids=[b[0] for b in BAD_DOCUMENTS])
def test_bad_document_is_skipped_with_reason_and_the_rest_ingested(
    rag: TemporalRAG, bad: object, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tgrag.ingest"):
        report = rag.ingest([GOOD_A, bad, GOOD_B])  # type: ignore[list-item]
    assert report.added == [GOOD_A.id, GOOD_B.id]
    assert len(report.skipped) == 1
    skip = report.skipped[0]
    assert skip.position == 1
    assert reason in skip.reason
    assert any(reason in r.getMessage() for r in caplog.records), "the skip must be logged"
    stats = rag.stats()
    assert stats["documents"] == 2
    assert stats["facts"] >= 4
    assert {d.id for d in rag.documents()} == {GOOD_A.id, GOOD_B.id}


def test_too_large_limit_comes_from_config(store_path: Path) -> None:
    big = Document("Revenue grew again. " * 30)  # 600 characters
    with TemporalRAG.open(store_path, Config(ingest=IngestConfig(max_document_chars=1000))) as rag:
        report = rag.ingest([big])
    assert report.added == [big.id]
    assert report.skipped == []


def test_same_content_twice_in_one_input(rag: TemporalRAG) -> None:
    copy = Document(GOOD_A.text, source="copy.txt")  # a different object, the same text
    report = rag.ingest([GOOD_A, copy, GOOD_B])
    assert report.added == [GOOD_A.id, GOOD_B.id]
    assert [(s.position, s.doc_id) for s in report.skipped] == [(1, GOOD_A.id)]
    assert "duplicate" in report.skipped[0].reason
    assert "same content" in report.skipped[0].reason
    assert rag.stats()["documents"] == 2


def test_same_content_twice_across_batches(store_path: Path) -> None:
    config = Config(ingest=IngestConfig(batch_documents=1))
    with TemporalRAG.open(store_path, config) as rag:
        report = rag.ingest([GOOD_A, GOOD_B, GOOD_A])
        assert report.added == [GOOD_A.id, GOOD_B.id]
        assert [s.position for s in report.skipped] == [2]
        assert rag.stats()["documents"] == 2


def test_same_key_different_content_in_one_input(rag: TemporalRAG) -> None:
    first = doc("Quillfeather Analytics", 1, 211, key="qfa-2024-q1")
    second = doc("Quillfeather Analytics", 1, 999, key="qfa-2024-q1")
    report = rag.ingest([first, second])
    assert report.added == [first.id]
    assert len(report.skipped) == 1
    assert report.skipped[0].position == 1
    assert "'qfa-2024-q1'" in report.skipped[0].reason
    assert "duplicate key" in report.skipped[0].reason
    assert rag.workspace.store.document_id_for_key("qfa-2024-q1") == first.id


def test_key_already_in_store_names_the_key(rag: TemporalRAG) -> None:
    first = doc("Quillfeather Analytics", 1, 211, key="qfa-2024-q1")
    rag.ingest([first])
    before = rag.stats()
    second = doc("Quillfeather Analytics", 1, 999, key="qfa-2024-q1")
    report = rag.ingest([GOOD_B, second])
    assert report.added == [GOOD_B.id]
    assert [s.position for s in report.skipped] == [1]
    reason = report.skipped[0].reason
    assert "'qfa-2024-q1'" in reason
    assert first.id in reason
    assert rag.workspace.store.document_id_for_key("qfa-2024-q1") == first.id
    assert rag.stats()["documents"] == before["documents"] + 1


def test_reingesting_is_a_skip_and_leaves_the_store_unchanged(rag: TemporalRAG) -> None:
    rag.ingest([GOOD_A, GOOD_B])
    before = rag.stats()
    question = "What was Quillfeather Analytics' revenue in Q2 2024?"
    evidence_before = [e.text for e in rag.retrieve(question).evidence]
    report = rag.ingest([GOOD_B, GOOD_A])
    assert report.added == []
    assert [(s.position, s.doc_id) for s in report.skipped] == [(0, GOOD_B.id), (1, GOOD_A.id)]
    assert all(s.reason == "already in the store" for s in report.skipped)
    assert report.facts_created == report.facts_merged == 0
    assert rag.stats() == before  # generation included: nothing was written
    assert [e.text for e in rag.retrieve(question).evidence] == evidence_before


def test_everything_bad_writes_nothing(rag: TemporalRAG) -> None:
    report = rag.ingest([Document(""), 7, Document("\x00")])  # type: ignore[list-item]
    assert report.added == []
    assert [s.position for s in report.skipped] == [0, 1, 2]
    assert rag.stats()["documents"] == 0
    assert rag.stats()["generation"] == 0


def test_strings_are_documents(rag: TemporalRAG) -> None:
    report = rag.ingest(["Quillfeather Analytics reported revenue of $3 million in 2023.", "  "])
    assert len(report.added) == 1
    assert [s.reason for s in report.skipped] == ["empty document"]


def test_bad_dict_record_through_sdk_is_a_skip(rag: TemporalRAG) -> None:
    good = {"text": GOOD_A.text, "subject": "Quillfeather Analytics", "period": "2024-Q1"}
    bad = {"text": "Revenue was $3 million.", "date": "2024-13-45"}
    report = rag.ingest([good, bad])
    assert report.added == [GOOD_A.id]
    assert "2024-13-45" in report.skipped[0].reason


# ---- jsonl records --------------------------------------------------------------------------------
BAD_RECORDS: list[tuple[str, dict[str, Any], str]] = [
    ("no-text", {"subject": "Quillfeather Analytics"}, "missing 'text'"),
    ("text-not-str", {"text": 12}, "missing 'text'"),
    ("text-null", {"text": None}, "missing 'text'"),
    ("date-words", {"text": "x", "date": "last tuesday-ish"}, "cannot read 'last tuesday-ish' as a date"),
    ("date-month-13", {"text": "x", "date": "2024-13-45"}, "month 13 is outside 1..12"),
    ("date-day-45", {"text": "x", "date": "2024-02-30"}, "has days 1..29, not 30"),
    ("date-year-99999", {"text": "x", "date": "99999-01-01"}, "year 99999 is outside 1..9999"),
    ("date-year-0", {"text": "x", "date": "0000-01-01"}, "year 0 is outside"),
    ("period-words", {"text": "x", "period": "sometime"}, "cannot read period 'sometime'"),
    ("period-month-13", {"text": "x", "period": "2024-13"}, "cannot read period '2024-13'"),
    ("period-year-99999", {"text": "x", "period": "99999"}, "cannot read period"),
    ("metadata-list", {"text": "x", "metadata": [1, 2]}, "'metadata' must be an object"),
    ("aliases-int", {"text": "x", "aliases": 5}, "'aliases'"),
    ("aliases-nested", {"text": "x", "aliases": [["a"]]}, "'aliases'"),
    ("subject-int", {"text": "x", "subject": 7}, "'subject' must be a string"),
    ("source-list", {"text": "x", "source": ["a", "b"]}, "'source' must be a string"),
    ("key-object", {"text": "x", "key": {"a": 1}}, "'key' must be a string"),
]


@pytest.mark.parametrize(("record", "message"), [b[1:] for b in BAD_RECORDS], ids=[b[0] for b in BAD_RECORDS])
def test_document_from_record_rejects_bad_fields(record: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        document_from_record(record)
    assert message in str(info.value)


def test_document_from_record_reads_good_fields() -> None:
    d = document_from_record(
        {
            "text": "Revenue rose.",
            "date": "2024-05-07",
            "period": "2024-Q1",
            "subject": "Quillfeather",
            "id": 17,
        }
    )
    assert d.date == date(2024, 5, 7)
    assert d.period == TimeInterval.quarter(2024, 1)
    assert d.key == "17"


def test_jsonl_bad_records_become_skips_with_file_and_line(tmp_path: Path, rag: TemporalRAG) -> None:
    path = tmp_path / "docs.jsonl"
    good = {"text": GOOD_A.text, "subject": "Quillfeather Analytics", "period": "2024-Q1", "key": "a"}
    lines = [
        json.dumps(good),
        json.dumps({"text": "Revenue was $3 million.", "date": "2024-13-45"}),
        "{not json",
        "",
        json.dumps(["a list"]),
        json.dumps({"text": "Revenue was $3 million.", "aliases": 5}),
        json.dumps({"subject": "no text"}),
        json.dumps({**good, "text": GOOD_B.text, "period": "2024-Q2", "key": "b"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    skips: list[tuple[str, str]] = []
    docs = list(read_documents("jsonl", [path], lambda where, why: skips.append((where, why))))
    assert [d.key for d in docs] == ["a", "b"]
    assert [w for w, _ in skips] == [f"{path}:{n}" for n in (2, 3, 5, 6, 7)]
    reasons = [r for _, r in skips]
    assert "month 13" in reasons[0]
    assert "not valid JSON" in reasons[1]
    assert "not a JSON object" in reasons[2]
    assert "'aliases'" in reasons[3]
    assert "missing 'text'" in reasons[4]
    report = rag.ingest(docs)
    assert len(report.added) == 2 and report.skipped == []


# ---- a damaged store folder -----------------------------------------------------------------------
def test_garbage_database_is_a_clear_error_and_the_file_is_kept(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    garbage = bytes(range(256)) * 64
    (folder / "store.sqlite").write_bytes(garbage)
    with pytest.raises(StoreCorruptedError) as info:
        TemporalRAG.open(folder)
    message = str(info.value)
    assert str(folder / "store.sqlite") in message
    assert "\n" not in message
    assert (folder / "store.sqlite").read_bytes() == garbage, "a corrupted store must not be overwritten"


def test_garbage_database_with_sqlite_header_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "store.sqlite").write_bytes(b"SQLite format 3\x00" + b"\xff" * 8192)
    with pytest.raises(StoreCorruptedError, match=r"store\.sqlite"):
        TemporalRAG.open(folder)


QUESTIONS = [
    "What was Quillfeather Analytics' revenue in Q2 2024?",
    "What was the operating margin of Quillfeather Analytics in Q1 2024?",
    "What was Marrowgate Foods' revenue in Q3 2024?",
]


@pytest.fixture(scope="module")
def built_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[tuple[str, float]]]]:
    path = tmp_path_factory.mktemp("indexed") / "store"
    docs = [doc("Quillfeather Analytics", q, 200 + 17 * q) for q in (1, 2, 3)]
    docs += [doc("Marrowgate Foods", q, 500 + 11 * q) for q in (1, 2, 3)]
    with TemporalRAG.open(path) as rag:
        rag.ingest(docs)
        answers = [[(e.text, e.score) for e in rag.retrieve(q).evidence] for q in QUESTIONS]
    assert all(answers), "every question has evidence in the intact store"
    return path, answers


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00garbage\xff" * 100)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("fact.faiss", _garbage),
        ("fact.faiss", _truncate),
        ("chunk.faiss", _empty),
        ("node.faiss", _truncate),
        ("lexical.npz", _truncate),
        ("rows.npz", _garbage),
        ("manifest.json", _garbage),
    ],
)
def test_damaged_index_file_is_rebuilt_from_sqlite(
    tmp_path: Path,
    built_store: tuple[Path, list[list[tuple[str, float]]]],
    name: str,
    damage: Any,
) -> None:
    source, expected = built_store
    path = tmp_path / "store"
    shutil.copytree(source, path)
    assert (path / "index" / name).exists()
    damage(path / "index" / name)
    with TemporalRAG.open(path) as rag:
        got = [[(e.text, e.score) for e in rag.retrieve(q).evidence] for q in QUESTIONS]
        assert rag.workspace.store.integrity_check() == "ok"  # type: ignore[attr-defined]
    for want, have in zip(expected, got, strict=True):
        assert [t for t, _ in have] == [t for t, _ in want]
        assert [s for _, s in have] == pytest.approx([s for _, s in want], abs=1e-4)


def test_missing_index_folder_is_rebuilt(
    tmp_path: Path, built_store: tuple[Path, list[list[tuple[str, float]]]]
) -> None:
    source, expected = built_store
    path = tmp_path / "store"
    shutil.copytree(source, path)
    shutil.rmtree(path / "index")
    with TemporalRAG.open(path) as rag:
        got = [[e.text for e in rag.retrieve(q).evidence] for q in QUESTIONS]
    assert got == [[t for t, _ in want] for want in expected]
