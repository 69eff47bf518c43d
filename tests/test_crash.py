"""Crash safety: a writer killed with SIGKILL leaves the store at its last committed batch.

A child process ingests the generated world in batches of two and is made to stall at a chosen
point (inside a batch's transaction, or half-way through saving the index files); the parent
kills it there, so the test is deterministic. The parent then reopens the store and checks it
against a reference store ingested without interruption.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tgrag.config import Config, IngestConfig
from tgrag.model import Document
from tgrag.readers import read_documents
from tgrag.sdk import TemporalRAG

from .world import World

BATCH = 2
PRESEEDED = 4  # documents the parent ingests first, so index files with a manifest exist
CORPUS = 12  # documents in all: six batches
CONFIG = Config(ingest=IngestConfig(batch_documents=BATCH))
WAIT_S = 120.0  # upper bound on any wait for the child (model loading included)

CHILD = r"""
import sys, time
from pathlib import Path
from tgrag.config import Config, IngestConfig
from tgrag.index.vector import FaissIndex
from tgrag.readers import read_documents
from tgrag.sdk import TemporalRAG
from tgrag.store.sqlite import SQLiteStore

store, docs, mode, stall_after = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
batches = 0

def stall(where):
    print(f"stalled {where}", flush=True)
    time.sleep(600)  # the parent kills us here

if mode == "transaction":  # stall after the first fact of batch number stall_after + 1
    upsert = SQLiteStore.upsert_fact
    def upsert_fact(self, *args, **kwargs):
        result = upsert(self, *args, **kwargs)
        if batches >= stall_after:
            stall("in-transaction")
        return result
    SQLiteStore.upsert_fact = upsert_fact
elif mode == "save":  # stall once the first index file of the final save has been replaced
    save = FaissIndex.save
    def save_index(self, path):
        save(self, path)
        stall(f"after-saving-{path.name}")
    FaissIndex.save = save_index

def progress(n):
    global batches
    batches += 1
    print(f"committed {batches}", flush=True)

rag = TemporalRAG.open(store, Config(ingest=IngestConfig(batch_documents=2)))
rag.ingest(read_documents("jsonl", [docs]), progress=progress)
print("finished", flush=True)
"""


def _write_jsonl(docs: list[Document], path: Path) -> None:
    with path.open("w") as fh:
        for d in docs:
            record = {
                "text": d.text,
                "date": d.date.isoformat() if d.date else None,
                "period": d.period.label if d.period else None,
                "subject": d.subject,
                "aliases": list(d.aliases),
                "source": d.source,
                "key": d.key,
            }
            fh.write(json.dumps(record) + "\n")


def _lines(stream, out: queue.Queue[str]) -> None:
    for line in stream:
        out.put(line.strip())
    out.put("<eof>")


def _run_until_stalled(tmp_path: Path, store: Path, docs_file: Path, mode: str, stall_after: int) -> int:
    """Start the child, wait for it to stall, SIGKILL it; returns how many batches it reported."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    stderr = (tmp_path / "child.stderr").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(store), str(docs_file), mode, str(stall_after)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    committed = 0
    stalled = ""
    deadline = time.monotonic() + WAIT_S
    try:
        while not stalled:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"child did not stall within {WAIT_S} s")
            if line.startswith("committed"):
                committed += 1
            elif line.startswith("stalled"):
                stalled = line
            elif line in ("finished", "<eof>"):
                err = (tmp_path / "child.stderr").read_text()[-3000:]
                pytest.fail(f"child ended before the kill ({line}):\n{err}")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return committed


def _per_document(store: Path) -> dict[str, tuple[int, int]]:
    """document id -> (chunks, fact sources), read straight from SQLite."""
    db = sqlite3.connect(f"file:{store / 'store.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT d.id, (SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.id),"
            " (SELECT COUNT(*) FROM fact_sources s WHERE s.doc_id = d.id) FROM documents d"
        ).fetchall()
    finally:
        db.close()
    return {r[0]: (r[1], r[2]) for r in rows}


def _store_generation(store: Path) -> int:
    db = sqlite3.connect(f"file:{store / 'store.sqlite'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
    finally:
        db.close()


def _manifest_generation(store: Path) -> int | None:
    try:
        return json.loads((store / "index" / "manifest.json").read_text())["generation"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="module")
def corpus(world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Document], Path]:
    """The world as a jsonl file, the documents read back from it, and a reference store."""
    folder = tmp_path_factory.mktemp("crash-corpus")
    docs_file = folder / "docs.jsonl"
    _write_jsonl(world.documents[:CORPUS], docs_file)
    docs = list(read_documents("jsonl", [docs_file]))
    assert len(docs) == CORPUS
    reference = folder / "reference"
    with TemporalRAG.open(reference, CONFIG) as rag:
        report = rag.ingest(docs)
        assert len(report.added) == len(docs)
    return docs_file, docs, reference


def _stats(store: Path) -> dict[str, int]:
    with TemporalRAG.open(store, CONFIG) as rag:
        return rag.stats()


@pytest.mark.parametrize(("mode", "stall_after"), [("transaction", 4), ("save", 0)])
def test_killed_writer_leaves_committed_batches_and_rerun_completes(
    tmp_path: Path, world: World, corpus: tuple[Path, list[Document], Path], mode: str, stall_after: int
) -> None:
    docs_file, docs, reference = corpus
    store = tmp_path / "store"
    with TemporalRAG.open(store, CONFIG) as rag:
        rag.ingest(docs[:PRESEEDED])
    manifest_before = _manifest_generation(store)
    assert manifest_before is not None

    committed = _run_until_stalled(tmp_path, store, docs_file, mode, stall_after)
    # the store as the killed writer left it: only committed batches, no half of one
    assert _manifest_generation(store) == manifest_before, "the killed writer never wrote its manifest"
    assert _store_generation(store) > manifest_before, "so the index files on disk are stale"
    expected_docs = BATCH * committed if mode == "transaction" else len(docs)
    if mode == "transaction":
        assert committed == stall_after, "the child stalled inside the batch after the last one it reported"
    assert committed * BATCH > PRESEEDED or mode == "save", "the child itself committed at least one batch"

    reference_docs = _per_document(reference)
    with TemporalRAG.open(store, CONFIG) as rag:
        ws = rag.workspace
        assert ws.store.integrity_check() == "ok"  # type: ignore[attr-defined]
        stats = rag.stats()
        assert stats["documents"] == expected_docs
        assert stats["documents"] % BATCH == 0
        stored = {d.id for d in rag.documents()}
        assert stored == {d.id for d in docs[:expected_docs]}
        # every stored document is whole: its chunks and facts, as in the uninterrupted store
        crashed_docs = _per_document(store)
        for doc_id in stored:
            assert crashed_docs[doc_id] == reference_docs[doc_id]
            assert crashed_docs[doc_id][1] > 0, "every world document states facts"
        assert stats["facts"] > 0
        # open rebuilt the derived indexes from SQLite (the manifest on disk was stale)
        assert ws.indexes.generation == stats["generation"]
        assert len(ws.indexes.vectors["fact"]) == stats["facts"]
        assert len(ws.indexes.catalog) == stats["facts"]
        # ... and they answer questions about what the killed child committed
        child_docs = docs[PRESEEDED:expected_docs]
        asked = 0
        for q in world.questions:
            if q.kind == "point" and any(q.evidence in d.text for d in child_docs):
                evidence = [e.text for e in rag.retrieve(q.text).evidence]
                assert q.evidence in evidence, q.text
                asked += 1
        assert asked > 0
        if mode == "transaction":
            assert stats["dirty_nodes"] > 0, "summaries are refreshed after the last batch, which never came"

    # running the same ingest again completes the rest; the OS released the dead writer's lock,
    # so a writer that waits only briefly gets in
    with TemporalRAG.open(
        store, Config(ingest=IngestConfig(batch_documents=BATCH), lock_timeout_s=0.5)
    ) as rag:
        report = rag.ingest(read_documents("jsonl", [docs_file]))
        assert len(report.added) == len(docs) - expected_docs
        assert [s.reason for s in report.skipped] == ["already in the store"] * expected_docs
        assert len(report.added) + len(report.skipped) == len(docs)
        final = rag.stats()
        assert final["dirty_nodes"] == 0
        for q in world.questions[:6]:
            assert q.evidence in [e.text for e in rag.retrieve(q.text).evidence], q.text
    want = _stats(reference)
    for key in ("documents", "chunks", "facts", "fact_sources", "entities", "time_nodes"):
        assert final[key] == want[key], key
    assert _per_document(store) == reference_docs
    assert _manifest_generation(store) == final["generation"]
