"""tgrag.readers: ECT-QA transcripts, TimeQA pages, jsonl and text files, plain or gzipped.
Every record here is made up for these tests; bad records are skips with file and line."""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tgrag.errors import InputError, UnknownBackendError
from tgrag.model import Document, TimeInterval
from tgrag.readers import document_from_record, ectqa_document, read_documents, timeqa_document

Skips = list[tuple[str, str]]


def read(fmt: str, *paths: Path) -> tuple[list[Document], Skips]:
    skips: Skips = []
    docs = list(read_documents(fmt, list(paths), lambda where, why: skips.append((where, why))))
    return docs, skips


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


# ---- ECT-QA ------------------------------------------------------------------------------------
def transcript(**over: Any) -> dict[str, Any]:
    record = {
        "company_name": "Lanternfish Retail Group",
        "stock_code": "LFR US",
        "sector": "Consumer",
        "year": "2024",
        "quarter": "q4",
        "URL": "https://example.invalid/lfr-2024-q4",
        "raw_content": "Lanternfish Retail Group (LFR US) Q4 2024 Earnings Call Transcript\n"
        "Mar 6, 2025 8:00 AM ET\nOperator: Good morning.",
        "cleaned_content": "Operator: Good morning.\nFull-year revenue was $3.2 billion.",
        "token_count": 12,
    }
    record.update(over)
    return record


def test_ectqa_record_fields() -> None:
    d = ectqa_document(transcript())
    assert d.subject == "Lanternfish Retail Group"
    assert d.period == TimeInterval.quarter(2024, 4)
    assert d.date == date(2025, 3, 6), "the call date, not the fiscal quarter"
    assert d.aliases == ("LFR US", "LFR")
    assert d.source == d.key == "Consumer-LFR_US-2024-q4.json"
    assert d.text == "Operator: Good morning.\nFull-year revenue was $3.2 billion."
    assert d.metadata == {
        "sector": "Consumer",
        "url": "https://example.invalid/lfr-2024-q4",
        "ticker": "LFR US",
    }


def test_ectqa_jd_us_ticker_gets_both_aliases() -> None:
    d = ectqa_document(transcript(company_name="JD.com", stock_code="JD US", quarter="q1"))
    assert d.aliases == ("JD US", "JD")
    assert d.source == "Consumer-JD_US-2024-q1.json"
    assert d.period == TimeInterval.quarter(2024, 1)


def test_ectqa_single_word_ticker_and_upper_case_quarter() -> None:
    d = ectqa_document(transcript(stock_code="LFRG", quarter="Q2", sector="Retail"))
    assert d.aliases == ("LFRG",)
    assert d.period == TimeInterval.quarter(2024, 2)
    assert d.source == "Retail-LFRG-2024-q2.json"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Call held on July 30, 2024 at 5 PM", date(2024, 7, 30)),
        ("Sept. 4, 2024 transcript", date(2024, 9, 4)),
        ("No date in this header at all", None),
        ("Feb 30, 2024 is not a day", None),
        ("x" * 450 + " Jan 5, 2024", None),  # only the header is searched
    ],
)
def test_ectqa_call_date_from_raw_content(raw: str, expected: date | None) -> None:
    assert ectqa_document(transcript(raw_content=raw)).date == expected


def test_ectqa_without_raw_content_has_no_date() -> None:
    record = transcript()
    del record["raw_content"]
    assert ectqa_document(record).date is None


def test_ectqa_reader_gzip_and_bad_records(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "corpus.jsonl.gz",
        [
            transcript(),
            transcript(quarter="q5"),
            "{broken",
            {k: v for k, v in transcript().items() if k != "cleaned_content"},
            transcript(year="twenty"),
            transcript(year=None),
            transcript(quarter="q3", stock_code="JD US", company_name="JD.com"),
        ],
    )
    docs, skips = read("ectqa", path)
    assert [d.key for d in docs] == ["Consumer-LFR_US-2024-q4.json", "Consumer-JD_US-2024-q3.json"]
    assert [w for w, _ in skips] == [f"{path}:{n}" for n in (2, 3, 4, 5, 6)]
    assert "quarter 'q5'" in skips[0][1]
    assert "not valid JSON" in skips[1][1]
    assert "cleaned_content" in skips[2][1]
    assert all("not an ECT-QA transcript record" in r for _, r in skips[2:])


@pytest.mark.parametrize(
    ("field", "value"),
    [("cleaned_content", None), ("cleaned_content", {"a": 1}), ("company_name", None), ("company_name", 7)],
)
def test_ectqa_wrong_types_are_skips(tmp_path: Path, field: str, value: Any) -> None:
    path = write_jsonl(tmp_path / "corpus.jsonl", [transcript(**{field: value}), transcript()])
    docs, skips = read("ectqa", path)
    assert len(docs) == 1
    assert [w for w, _ in skips] == [f"{path}:1"]
    assert field in skips[0][1]


# ---- TimeQA ------------------------------------------------------------------------------------
def page(**over: Any) -> dict[str, Any]:
    record = {
        "index": "/wiki/Oswin_Galloway#P54",
        "type": "P54",
        "link": "/wiki/Oswin_Galloway",
        "paras": [
            "Oswin T . Galloway",
            "Oswin T. Galloway (born 1961) is a retired footballer who played for Harrowgate Rovers.",
            "From 1984 to 1989 he played for Eastmere United.",
        ],
        "questions": [
            ["Which team did Oswin T. Galloway play for in 1986?", [{"para": 2, "from": 32, "end": 47}]]
        ],
    }
    record.update(over)
    return record


def test_timeqa_page_fields() -> None:
    p = page()
    d = timeqa_document(p)
    assert d.subject == "Oswin T. Galloway", "initials are cleaned: 'T .' -> 'T.'"
    assert d.text == "\n".join(p["paras"])
    assert d.source == d.key == "/wiki/Oswin_Galloway"
    assert d.metadata == {"index": "/wiki/Oswin_Galloway#P54", "type": "P54"}
    assert d.date is None and d.period is None


def test_timeqa_initials_several_and_index_as_fallback_key() -> None:
    d = timeqa_document(page(paras=["J . R . Q . Halloway", "Text."], link=None))
    assert d.subject == "J. R. Q. Halloway"
    assert d.key == "/wiki/Oswin_Galloway#P54"


def test_timeqa_non_string_paragraphs_are_dropped() -> None:
    d = timeqa_document(page(paras=["Mira Oakhurst", None, 5, "She sang."]))
    assert d.text == "Mira Oakhurst\nShe sang."


@pytest.mark.parametrize("paras", [[], [None, 3], "Mira Oakhurst sang.", None])
def test_timeqa_page_without_paragraphs_is_rejected(paras: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        timeqa_document(page(paras=paras))


def test_timeqa_reader_gzip_and_bad_pages(tmp_path: Path) -> None:
    pages = [
        page(),
        {"index": "x"},
        "not a page",
        page(paras="a string"),
        page(link="/wiki/Other", paras=["B", "b"]),
    ]
    path = tmp_path / "pages.json.gz"
    path.write_bytes(gzip.compress(json.dumps(pages).encode()))
    docs, skips = read("timeqa", path)
    assert [d.key for d in docs] == ["/wiki/Oswin_Galloway", "/wiki/Other"]
    assert [w for w, _ in skips] == [f"{path}[1]", f"{path}[2]", f"{path}[3]"]
    assert all("not a TimeQA page" in r for _, r in skips)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"paras": []}', "expected a JSON list"),
        (b"[{", "not a TimeQA file"),
        (b"\xff\xfe[]", "not a TimeQA file"),
        (b"", "not a TimeQA file"),
    ],
)
def test_timeqa_bad_file_is_one_skip(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "pages.json"
    path.write_bytes(content)
    docs, skips = read("timeqa", path)
    assert docs == []
    assert len(skips) == 1 and skips[0][0] == str(path)
    assert reason in skips[0][1]


# ---- jsonl -------------------------------------------------------------------------------------
def test_jsonl_all_fields(tmp_path: Path) -> None:
    record = {
        "text": "Revenue was $5 million.",
        "date": "2024-05-07",
        "period": "2024-Q1",
        "subject": "Pellucid Instruments",
        "aliases": ["PLCD", "Pellucid"],
        "source": "pellucid.txt",
        "key": "pellucid-q1",
        "metadata": {"page": 3},
    }
    docs, skips = read("jsonl", write_jsonl(tmp_path / "d.jsonl", [record]))
    assert skips == []
    (d,) = docs
    assert d == Document(
        "Revenue was $5 million.",
        date=date(2024, 5, 7),
        period=TimeInterval.quarter(2024, 1),
        subject="Pellucid Instruments",
        aliases=("PLCD", "Pellucid"),
        source="pellucid.txt",
        key="pellucid-q1",
    )
    assert d.metadata == {"page": 3}


def test_jsonl_alternative_field_names() -> None:
    d = document_from_record({"contents": "Revenue rose.", "title": "Pellucid", "id": 12, "aliases": "PLCD"})
    assert (d.text, d.subject, d.key, d.aliases) == ("Revenue rose.", "Pellucid", "12", ("PLCD",))
    empty = document_from_record({"text": "Revenue rose.", "date": "", "period": None, "aliases": None})
    assert (empty.date, empty.period, empty.aliases) == (None, None, ())


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        ("2024-Q3", TimeInterval.quarter(2024, 3)),
        ("2024-05", TimeInterval.month(2024, 5)),
        ("2024", TimeInterval.year(2024)),
        (2023, TimeInterval.year(2023)),
    ],
)
def test_jsonl_periods(period: Any, expected: TimeInterval) -> None:
    assert document_from_record({"text": "x", "period": period}).period == expected


def test_jsonl_gzip_blank_lines_bad_json_and_wrong_types(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "d.jsonl.gz",
        [
            {"text": "one"},
            "",
            "   ",
            "{'single': 'quotes'}",
            "[1, 2]",
            "42",
            '"a string"',
            "null",
            {"text": ["a", "list"]},
            {"text": "two", "metadata": "not an object"},
            {"text": "three", "aliases": {"a": 1}},
            {"text": "four"},
        ],
    )
    docs, skips = read("jsonl", path)
    assert [d.text for d in docs] == ["one", "four"]
    assert [w for w, _ in skips] == [f"{path}:{n}" for n in range(4, 12)]
    reasons = [r for _, r in skips]
    assert "not valid JSON" in reasons[0]
    assert all(r == "not a JSON object" for r in reasons[1:5])
    assert "missing 'text'" in reasons[5]
    assert "'metadata'" in reasons[6]
    assert "'aliases'" in reasons[7]


def test_jsonl_invalid_utf8_line_is_one_skip(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "one"}\n{"text": "caf\xe9"}\n{"text": "three"}\n')
    docs, skips = read("jsonl", path)
    assert [d.text for d in docs] == ["one", "three"], "the lines around a bad byte are kept"
    assert [w for w, _ in skips] == [f"{path}:2"]
    assert "not valid UTF-8" in skips[0][1]


def test_truncated_gzip_is_a_skip_after_the_lines_read(tmp_path: Path) -> None:
    full = gzip.compress(b"".join(json.dumps({"text": f"line {i}"}).encode() + b"\n" for i in range(2000)))
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(full[: len(full) // 2])
    docs, skips = read("jsonl", path)
    assert 0 < len(docs) < 2000
    assert [d.text for d in docs] == [f"line {i}" for i in range(len(docs))]
    assert len(skips) == 1 and "unreadable" in skips[0][1]


def test_gz_suffix_that_is_not_gzip_is_a_skip(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl.gz"
    path.write_text('{"text": "plain"}\n')
    docs, skips = read("jsonl", path)
    assert docs == []
    assert len(skips) == 1 and "unreadable" in skips[0][1]


# ---- text --------------------------------------------------------------------------------------
def test_text_files_and_a_non_utf8_one(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("Pellucid Instruments reported revenue of $5 million in 2023.\n", encoding="utf-8")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Revenue at the café was €5 million.".encode("latin-1", errors="replace"))
    utf8 = tmp_path / "utf8.txt"
    utf8.write_text("Revenue at the café was €5 million.", encoding="utf-8")
    docs, skips = read("text", good, latin, utf8)
    assert [(d.source, d.key) for d in docs] == [(str(good), str(good)), (str(utf8), str(utf8))]
    assert docs[0].text == good.read_text()
    assert "café" in docs[1].text
    assert len(skips) == 1
    assert skips[0][0] == str(latin)
    assert "not valid UTF-8" in skips[0][1]


def test_text_reader_on_a_folder_is_a_skip(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    docs, skips = read("text", folder)
    assert docs == []
    assert len(skips) == 1 and "unreadable" in skips[0][1]


# ---- paths and formats ---------------------------------------------------------------------------
def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read("jsonl", tmp_path / "absent.jsonl")


def test_unknown_format_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnknownBackendError, match="known: ectqa, jsonl, text, timeqa"):
        read("csv", write_jsonl(tmp_path / "d.jsonl", [{"text": "x"}]))


def test_several_files_in_order(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": "a1"}, {"text": "a2"}])
    b = write_jsonl(tmp_path / "b.jsonl.gz", [{"text": "b1"}])
    docs, skips = read("jsonl", a, b)
    assert [d.text for d in docs] == ["a1", "a2", "b1"] and skips == []
