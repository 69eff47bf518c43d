"""The ``tgrag`` command, in process through ``tgrag.cli.main`` and once as a real console script.

Errors are one ``error: ...`` line on stderr with exit status 2, never a traceback. The ECT-QA and
TimeQA samples are made up here in those formats."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tgrag.cli import main

from .world import World

INGESTED_AT = "2024-06-01"
TGRAG = Path(sys.executable).parent / "tgrag"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["-q", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for w in words:
        assert w in lines[0]


def revenue_question(world: World, i: int):
    """The revenue question answered by the i-th world document."""
    return next(q for q in world.questions if q.kind == "point" and q.evidence in world.documents[i].text)


def _record(d) -> dict:
    return {
        "text": d.text,
        "date": d.date.isoformat(),
        "period": d.period.label,
        "subject": d.subject,
        "aliases": list(d.aliases),
        "source": d.source,
        "key": d.key,
    }


@pytest.fixture(scope="module")
def corpus_file(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first company's eight quarters as jsonl, with a broken line 3."""
    path = tmp_path_factory.mktemp("cli") / "docs.jsonl"
    lines = [json.dumps(_record(d)) for d in world.documents[:8]]
    lines.insert(2, '{"text": "cut off in the mid')
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def cli_store(corpus_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("cli-store") / "store"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(
            ["-q", "ingest", "--store", str(store), "--ingested-at", INGESTED_AT, "--json", str(corpus_file)]
        )
    assert code == 0
    report = json.loads(out.getvalue())
    assert report["added"] == 8
    return store


def test_ingest_jsonl_reports_the_bad_line(
    capsys: pytest.CaptureFixture[str], corpus_file: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    code, out, err = run(capsys, "ingest", "--store", str(store), str(corpus_file))
    assert code == 0, err
    assert "Traceback" not in err
    assert out.startswith("added 8 documents (0 already stored, 1 skipped)")
    assert f"skipped {corpus_file}:3: not valid JSON" in out
    assert "store: 8 documents" in out
    # again: everything is already stored, the bad line is still reported
    code, out, _ = run(capsys, "ingest", "--store", str(store), "--json", str(corpus_file))
    assert code == 0
    report = json.loads(out)
    assert report["added"] == 0
    assert report["already_stored"] == 8
    assert report["skipped"] == 9
    assert [r for r in report["skip_reasons"] if r.startswith(f"{corpus_file}:3:")]
    assert report["store"]["documents"] == 8


def test_stats_json(capsys: pytest.CaptureFixture[str], cli_store: Path) -> None:
    code, out, _ = run(capsys, "stats", "--store", str(cli_store), "--json", "--check")
    assert code == 0
    stats = json.loads(out)
    assert stats["documents"] == 8
    assert stats["facts"] >= 24
    assert stats["dirty_nodes"] == 0
    assert stats["integrity"] == "ok"
    code, out, _ = run(capsys, "stats", "--store", str(cli_store))
    assert code == 0
    assert "documents: 8" in out


def test_query_json(capsys: pytest.CaptureFixture[str], cli_store: Path, world: World) -> None:
    q = revenue_question(world, 5)  # the first company's Q2 2024 revenue
    assert "Q2 2024" in q.text
    code, out, _ = run(capsys, "query", "--store", str(cli_store), "--json", *q.text.split())
    assert code == 0
    result = json.loads(out)
    assert result["question"] == q.text
    assert result["abstained"] is False
    assert result["scope"]["interval"]["label"] == "2024-Q2"
    evidence = result["evidence"]
    assert evidence and q.evidence in [e["text"] for e in evidence]
    gold = next(e for e in evidence if e["text"] == q.evidence)
    assert gold["time"]["label"] == "2024-Q2"
    assert gold["source"] == world.documents[5].source
    assert gold["kind"] == "fact"
    assert result["as_of"] is None
    code, out, _ = run(capsys, "query", "--store", str(cli_store), "--budget", "40", q.text)
    assert code == 0
    assert out.startswith("scope: 2024-Q2 (at)")
    assert "1. [" in out


def test_ask(capsys: pytest.CaptureFixture[str], cli_store: Path, world: World) -> None:
    q = revenue_question(world, 1)
    code, out, _ = run(capsys, "ask", "--store", str(cli_store), q.text)
    assert code == 0
    assert out.splitlines()[0] == f"answer: {q.answer}"
    assert f"({world.documents[1].source})" in out
    code, out, _ = run(capsys, "ask", "--store", str(cli_store), "--json", q.text)
    answer = json.loads(out)
    assert answer["text"] == q.answer
    assert answer["citations"][0]["source"] == world.documents[1].source


def test_ask_shows_the_loop_s_trace(
    capsys: pytest.CaptureFixture[str], cli_store: Path, world: World
) -> None:
    q = revenue_question(world, 1)
    code, out, _ = run(capsys, "ask", "--store", str(cli_store), "--trace", "--llm", "extractive", q.text)
    assert code == 0
    assert out.splitlines()[0] == f"answer: {q.answer}"
    assert "trace: 1 retrieval(s), finished by answer" in out
    assert f"1. query {q.text!r}" in out
    code, out, _ = run(capsys, "ask", "--store", str(cli_store), "--json", q.text)
    trace = json.loads(out)["trace"]
    assert trace["iterations"] == 1 and trace["steps"][0]["query"] == q.text


def test_ask_as_of_before_any_ingest_abstains(
    capsys: pytest.CaptureFixture[str], cli_store: Path, world: World
) -> None:
    q = revenue_question(world, 1)
    code, out, _ = run(capsys, "ask", "--store", str(cli_store), "--as-of", "2024-05-31", "--json", q.text)
    assert code == 0
    answer = json.loads(out)
    assert answer["abstained"] is True
    assert "as of 2024-05-31" in answer["reason"]
    assert answer["citations"] == []
    code, out, _ = run(capsys, "ask", "--store", str(cli_store), "--as-of", INGESTED_AT, q.text)
    assert code == 0
    assert out.splitlines()[0] == f"answer: {q.answer}", "everything ingested on the as-of day is visible"


def test_delete_by_key_then_unknown(
    capsys: pytest.CaptureFixture[str], cli_store: Path, tmp_path: Path, world: World
) -> None:
    store = tmp_path / "store"
    shutil.copytree(cli_store, store)
    key = world.documents[0].key
    assert key
    code, out, _ = run(capsys, "delete", "--store", str(store), key)
    assert code == 0
    assert out.startswith(f"deleted {world.documents[0].id}:")
    code, out, _ = run(capsys, "stats", "--store", str(store), "--json")
    assert json.loads(out)["documents"] == 7
    code, out, _ = run(capsys, "delete", "--store", str(store), key)
    assert code == 2
    assert out.strip() == f"not found: {key}"
    code, out, _ = run(
        capsys, "delete", "--store", str(store), "--json", "0123456789abcdef", world.documents[1].id
    )
    assert code == 2, "one id was not found"
    results = json.loads(out)
    assert results[0] == {"doc_id": "0123456789abcdef", "deleted": False, "reason": "no such document"}
    assert results[1]["deleted"] is True
    code, out, _ = run(capsys, "stats", "--store", str(store), "--json")
    assert json.loads(out)["documents"] == 6


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["query", "--store", "{missing}", "What was revenue?"], ["no store at", "tgrag ingest"]),
        (["ask", "--store", "{missing}", "What was revenue?"], ["no store at"]),
        (["stats", "--store", "{missing}"], ["no store at"]),
        (["delete", "--store", "{missing}", "abc"], ["no store at"]),
        (["ingest", "--store", "{new}", "{tmp}/absent.jsonl"], ["no such file", "absent.jsonl"]),
        (["ingest", "--store", "{new}", "--ingested-at", "May 45, 2024", "{tmp}"], ["--ingested-at"]),
        (
            ["ask", "--store", "{store}", "--as-of", "2024-13-45", "What was revenue?"],
            ["--as-of", "month 13"],
        ),
        (["query", "--store", "{store}", "--as-of", "yesterday-ish", "What was revenue?"], ["--as-of"]),
        (["ask", "--store", "{store}", "--now", "99999-01-01", "What was revenue?"], ["--now", "99999"]),
        (["ask", "--store", "{store}", "--budget", "0", "What was revenue?"], ["--budget"]),
        (["query", "--store", "{store}", "--budget", "-5", "What was revenue?"], ["--budget"]),
        (["ask", "--store", "{store}", ""], ["question is empty"]),
        (
            ["ask", "--store", "{store}", "--llm", "gpt9:x", "What was revenue?"],
            ["unknown llm", "extractive"],
        ),
        (["ask", "--store", "{store}", "--max-iter", "0", "What was revenue?"], ["--max-iter"]),
        (["query", "--store", "{store}", "   ", " "], ["question is empty"]),
    ],
)
def test_errors_are_one_line_with_status_2(
    capsys: pytest.CaptureFixture[str], cli_store: Path, tmp_path: Path, argv: list[str], words: list[str]
) -> None:
    missing = tmp_path / "nowhere"
    fill = {
        "missing": str(missing),
        "new": str(tmp_path / "new"),
        "store": str(cli_store),
        "tmp": str(tmp_path),
    }
    code, out, err = run(capsys, *[a.format(**fill) for a in argv])
    assert_one_line_error(code, err, *words)
    assert out == ""
    assert not missing.exists(), "a read command must not create a store"
    assert not (tmp_path / "new" / "store.sqlite").exists(), "a failed ingest must not create a store"


def test_corrupted_store_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "store.sqlite").write_bytes(b"\x13not a database\x00" * 512)
    code, _, err = run(capsys, "stats", "--store", str(tmp_path))
    assert_one_line_error(code, err, "store.sqlite", "not a readable tgrag store")


def test_damaged_database_pages_are_an_error(
    capsys: pytest.CaptureFixture[str], cli_store: Path, tmp_path: Path
) -> None:
    """Damage past the schema is found only when reading; it is still one line, not a crash."""
    store = tmp_path / "store"
    shutil.copytree(cli_store, store)
    shutil.rmtree(store / "index")  # so that opening reads every table to rebuild the indexes
    db = store / "store.sqlite"
    data = bytearray(db.read_bytes())
    middle = len(data) // 2 // 4096 * 4096
    data[middle : middle + 8192] = b"\xa5" * 8192
    db.write_bytes(bytes(data))
    for argv in (
        ["stats", "--check", "--store", str(store)],
        ["query", "--store", str(store), "What was revenue?"],
    ):
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, str(store), "damaged")
        assert "unexpected" not in err


def test_store_path_that_is_a_file_is_an_error(capsys: pytest.CaptureFixture[str], corpus_file: Path) -> None:
    code, _, err = run(capsys, "ingest", "--store", str(corpus_file), str(corpus_file))
    assert_one_line_error(code, err, "cannot use", str(corpus_file), "as a store folder")
    code, _, err = run(capsys, "ingest", "--store", str(corpus_file / "sub"), str(corpus_file))
    assert_one_line_error(code, err, "as a store folder")
    assert corpus_file.read_text().count("\n") == 9, "the file in the way is untouched"


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["ingest", "--store", str(tmp_path), "--format", "csv", "x.csv"])
    assert info.value.code == 2
    assert "invalid choice: 'csv'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["ask", "--store", str(tmp_path), "--budget", "many", "q"])
    assert info.value.code == 2


# ---- other formats ---------------------------------------------------------------------------------
ECTQA = [
    {
        "company_name": "Fernhollow Devices",
        "stock_code": "FHD US",
        "sector": "Technology",
        "year": "2024",
        "quarter": "q1",
        "URL": "https://example.invalid/fhd-q1",
        "raw_content": "Fernhollow Devices (FHD US) Q1 2024 Earnings Call\nApr 25, 2024\nOperator: Welcome.",
        "cleaned_content": "Operator: Welcome to the Fernhollow Devices call.\n"
        "Imara Voss: Revenue for the first quarter was $812 million, up 9% year over year.\n"
        "Imara Voss: Gross margin was 41.5% in the quarter.",
        "token_count": 40,
    },
    {
        "company_name": "Fernhollow Devices",
        "stock_code": "FHD US",
        "sector": "Technology",
        "year": "2024",
        "quarter": "q2",
        "URL": "https://example.invalid/fhd-q2",
        "raw_content": "Fernhollow Devices (FHD US) Q2 2024 Earnings Call\nJul 24, 2024\nOperator: Welcome.",
        "cleaned_content": "Operator: Welcome to the Fernhollow Devices call.\n"
        "Imara Voss: Revenue for the second quarter was $877 million, up 11% year over year.\n"
        "Imara Voss: Gross margin was 42.0% in the quarter.",
        "token_count": 40,
    },
]


def test_ingest_ectqa(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl.gz"
    lines = [json.dumps(r) for r in ECTQA] + [json.dumps({**ECTQA[0], "quarter": "q7"})]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    store = tmp_path / "store"
    code, out, err = run(capsys, "ingest", "--store", str(store), "--format", "ectqa", "--json", str(path))
    assert code == 0, err
    report = json.loads(out)
    assert report["added"] == 2
    assert report["skip_reasons"] == [f"{path}:3: not an ECT-QA transcript record (quarter 'q7')"]
    code, out, _ = run(capsys, "query", "--store", str(store), "--json", "What was FHD's revenue in Q2 2024?")
    assert code == 0
    result = json.loads(out)
    assert result["abstained"] is False
    assert "Fernhollow Devices" in result["entities"], "the ticker alias names the company"
    top = result["evidence"][0]
    assert "$877 million" in top["text"]
    assert top["source"] == "Technology-FHD_US-2024-q2.json"
    assert top["time"]["label"] == "2024-Q2"


TIMEQA = [
    {
        "index": "/wiki/Perpetua_Ashgrove#P108",
        "type": "P108",
        "link": "/wiki/Perpetua_Ashgrove",
        "paras": [
            "Perpetua L . Ashgrove",
            "Perpetua L. Ashgrove (born 1958) is a fictional chemist.",
            "From 1985 to 1992 Ashgrove worked for the Kestrel Institute. "
            "In 1993 she joined Orrin Polytechnic, where she stayed until 2004.",
        ],
        "questions": [["Which employer did Perpetua L. Ashgrove work for from 1986 to 1990?", []]],
    },
]


def test_ingest_timeqa(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "pages.json"
    path.write_text(json.dumps([*TIMEQA, {"index": "/wiki/Broken"}]))
    store = tmp_path / "store"
    code, out, err = run(capsys, "ingest", "--store", str(store), "--format", "timeqa", "--json", str(path))
    assert code == 0, err
    report = json.loads(out)
    assert report["added"] == 1
    assert len(report["skip_reasons"]) == 1 and report["skip_reasons"][0].startswith(
        f"{path}[1]: not a TimeQA page"
    )
    code, out, _ = run(
        capsys,
        "query",
        "--store",
        str(store),
        "--json",
        "Which employer did Perpetua L. Ashgrove work for in 1990?",
    )
    assert code == 0
    result = json.loads(out)
    assert result["abstained"] is False
    assert "Perpetua L. Ashgrove" in result["entities"]
    assert any("Kestrel Institute" in e["text"] for e in result["evidence"])
    assert {e["source"] for e in result["evidence"] if e["kind"] == "fact"} == {"/wiki/Perpetua_Ashgrove"}


# ---- the console script ------------------------------------------------------------------------------
def test_console_script(cli_store: Path, tmp_path: Path) -> None:
    assert TGRAG.exists(), f"{TGRAG} is not installed"
    done = subprocess.run(
        [str(TGRAG), "stats", "--store", str(cli_store), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["documents"] == 8
    done = subprocess.run(
        [str(TGRAG), "ask", "--store", str(tmp_path / "none"), "What was revenue in 2024?"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("error: no store at") and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
