"""Document readers for the formats ``tgrag ingest --format`` accepts.

- ``ectqa``: ECT-QA's ``corpus.jsonl.gz`` (earnings-call transcripts; the fiscal quarter is the
  document's period, the call date its date, the company its subject and the ticker an alias).
- ``timeqa``: TimeQA pages (a JSON list, optionally gzipped; the page title is the subject).
- ``jsonl``: one JSON object per line with ``text`` and optional ``date``, ``period``, ``subject``,
  ``aliases``, ``source``, ``key`` (or ``id``) and ``metadata``.
- ``text``: each file is one document; its path is its source and key.

Readers never raise on a bad record: they report it through ``on_skip`` (default: a log warning)
with the file and line, and carry on.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from .errors import InputError
from .model import Document, TimeInterval
from .registry import Registry
from .timex import parse_date, parse_time

log = logging.getLogger(__name__)

SkipHandler = Callable[[str, str], None]  # (where, reason)
Reader = Callable[[Path, SkipHandler], Iterator[Document]]
READERS: Registry[Reader] = Registry("reader")


def _log_skip(where: str, reason: str) -> None:
    log.warning("skipped %s: %s", where, reason)


def read_documents(fmt: str, paths: list[Path], on_skip: SkipHandler = _log_skip) -> Iterator[Document]:
    reader = READERS.create(fmt)
    for path in paths:
        if not path.exists():
            raise InputError(f"no such file: {path}")
        yield from reader(path, on_skip)


def _open_bytes(path: Path) -> BinaryIO:
    """A binary stream over a plain or gzipped file; the caller closes it."""
    if path.suffix == ".gz":
        return cast(BinaryIO, gzip.open(path, "rb"))
    return open(path, "rb")


def _open_text(path: Path) -> IO[str]:
    """A strict UTF-8 text stream over a plain or gzipped file; the caller closes it."""
    return io.TextIOWrapper(_open_bytes(path), encoding="utf-8", errors="strict")


def _lines(path: Path, on_skip: SkipHandler) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with _open_bytes(path) as fh:
            for n, data in enumerate(fh, 1):
                # Decode line by line: a bad byte costs its own line, not the lines around it.
                try:
                    line = data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    on_skip(f"{path}:{n}", f"not valid UTF-8 ({exc.reason} at byte {exc.start} of the line)")
                    continue
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    on_skip(f"{path}:{n}", f"not valid JSON ({exc.msg})")
                    continue
                if not isinstance(record, dict):
                    on_skip(f"{path}:{n}", "not a JSON object")
                    continue
                yield n, record
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        on_skip(str(path), f"unreadable ({exc})")


def document_from_record(record: dict[str, Any]) -> Document:
    """A jsonl record as a Document. Raises ValueError with a clear message for bad fields."""
    text = record.get("text", record.get("contents"))
    if not isinstance(text, str):
        raise ValueError("missing 'text' (a string)")
    doc_date = None
    if record.get("date") not in (None, ""):
        doc_date = parse_date(str(record["date"]))
    period = None
    if record.get("period") not in (None, ""):
        period = parse_time(str(record["period"]))
        if period is None:
            raise ValueError(f"cannot read period {record['period']!r} (try '2024-Q3', '2024-05' or '2024')")
    aliases = record.get("aliases") or ()
    if isinstance(aliases, str):
        aliases = (aliases,)
    if not isinstance(aliases, list | tuple) or not all(isinstance(a, str | int) for a in aliases):
        raise ValueError("'aliases' must be a string or a list of strings")
    key = record.get("key", record.get("id"))
    if key is not None and not isinstance(key, str | int):
        raise ValueError("'key' must be a string")
    subject = record.get("subject") or record.get("title")
    source = record.get("source")
    for name, value in (("subject", subject), ("source", source)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"'{name}' must be a string")
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError("'metadata' must be an object")
    return Document(
        text=text,
        date=doc_date,
        period=period,
        subject=subject,
        aliases=tuple(str(a) for a in aliases),
        source=source,
        key=None if key is None else str(key),
        metadata=metadata,
    )


@READERS.register("jsonl")
def _jsonl(arg: str | None, **_: object) -> Reader:
    def read(path: Path, on_skip: SkipHandler) -> Iterator[Document]:
        for n, record in _lines(path, on_skip):
            try:
                yield document_from_record(record)
            except ValueError as exc:
                on_skip(f"{path}:{n}", str(exc))

    return read


_CALL_DATE = re.compile(r"\b((?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.? \d{1,2}, \d{4})\b")


@READERS.register("ectqa")
def _ectqa(arg: str | None, **_: object) -> Reader:
    def read(path: Path, on_skip: SkipHandler) -> Iterator[Document]:
        for n, r in _lines(path, on_skip):
            try:
                yield ectqa_document(r)
            except (KeyError, ValueError, TypeError) as exc:
                on_skip(f"{path}:{n}", f"not an ECT-QA transcript record ({exc})")

    return read


def ectqa_document(r: dict[str, Any]) -> Document:
    year, quarter = int(r["year"]), str(r["quarter"]).lower()
    if not re.fullmatch(r"q[1-4]", quarter):
        raise ValueError(f"quarter {r['quarter']!r}")
    for name in ("cleaned_content", "company_name"):  # str() would turn a null into the text "None"
        if not isinstance(r[name], str):
            raise ValueError(f"{name} is not a string")
    ticker = str(r.get("stock_code", "")).strip()
    aliases = tuple(dict.fromkeys(a for a in (ticker, ticker.split(" ")[0]) if a))
    call_date = None
    match = _CALL_DATE.search(str(r.get("raw_content", ""))[:400])
    if match:
        try:
            call_date = parse_date(match.group(1))
        except ValueError:
            call_date = None
    filename = f"{r.get('sector', 'unknown')}-{ticker.replace(' ', '_')}-{year}-{quarter}.json"
    return Document(
        text=str(r["cleaned_content"]),
        date=call_date,
        period=TimeInterval.quarter(year, int(quarter[1])),
        subject=str(r["company_name"]),
        aliases=aliases,
        source=filename,
        key=filename,
        metadata={"sector": r.get("sector"), "url": r.get("URL"), "ticker": ticker},
    )


@READERS.register("timeqa")
def _timeqa(arg: str | None, **_: object) -> Reader:
    def read(path: Path, on_skip: SkipHandler) -> Iterator[Document]:
        try:
            with _open_text(path) as fh:
                pages = json.load(fh)
        except (UnicodeDecodeError, json.JSONDecodeError, OSError, EOFError, gzip.BadGzipFile) as exc:
            on_skip(str(path), f"not a TimeQA file ({exc})")
            return
        if not isinstance(pages, list):
            on_skip(str(path), "not a TimeQA file (expected a JSON list of pages)")
            return
        for n, page in enumerate(pages):
            try:
                yield timeqa_document(page)
            except (KeyError, TypeError, ValueError) as exc:
                on_skip(f"{path}[{n}]", f"not a TimeQA page ({exc})")

    return read


def timeqa_document(page: dict[str, Any]) -> Document:
    if not isinstance(page["paras"], list):  # a string would be read as one paragraph per character
        raise ValueError("paras is not a list")
    paras = [p for p in page["paras"] if isinstance(p, str)]
    if not paras:
        raise ValueError("no paragraphs")
    title = re.sub(r"\b([A-Z]) \.", r"\1.", paras[0].strip())
    link = str(page.get("link") or page.get("index") or "")
    return Document(
        text="\n".join(paras),
        subject=title,
        source=link or None,
        key=link or None,
        metadata={"index": page.get("index"), "type": page.get("type")},
    )


@READERS.register("text")
def _text(arg: str | None, **_: object) -> Reader:
    def read(path: Path, on_skip: SkipHandler) -> Iterator[Document]:
        try:
            data = path.read_bytes()
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            on_skip(str(path), f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
            return
        except OSError as exc:
            on_skip(str(path), f"unreadable ({exc})")
            return
        yield Document(text=text, source=str(path), key=str(path))

    return read
