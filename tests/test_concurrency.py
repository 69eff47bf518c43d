"""Two writers, one store: the second waits for the writer lock or fails with a clear error;
readers are never blocked and see what another process committed."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tgrag.config import Config
from tgrag.errors import StoreLockedError
from tgrag.sdk import TemporalRAG
from tgrag.store.lock import WriterLock

from .world import World

ROOT = Path(__file__).resolve().parents[1]
SHORT = Config(lock_timeout_s=0.5)
WAIT_S = 120.0

# Holds the writer lock until the parent creates the "go" file, then ingests more documents while
# still holding it, then releases it and exits.
CHILD = r"""
import sys, time
from pathlib import Path
from tgrag.sdk import TemporalRAG
from tests.world import generate

store, go = sys.argv[1], Path(sys.argv[2])
first, last = int(sys.argv[3]), int(sys.argv[4])
with TemporalRAG.open(store) as rag:
    with rag.workspace.lock:
        print("locked", flush=True)
        deadline = time.monotonic() + 60
        while not go.exists():
            if time.monotonic() > deadline:
                sys.exit("no go file")
            time.sleep(0.02)
        report = rag.ingest(generate(seed=7).documents[first:last])
        print(f"ingested {len(report.added)}", flush=True)
print("released", flush=True)
"""


def _reader(stream, out: queue.Queue[str]) -> None:
    for line in stream:
        out.put(line.strip())
    out.put("<eof>")


def _expect(lines: queue.Queue[str], prefix: str, timeout: float = WAIT_S) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.05, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"no {prefix!r} from the child within {timeout} s")
        if line.startswith(prefix):
            return line
        if line == "<eof>":
            pytest.fail(f"the child ended before printing {prefix!r}")


def _gold(rag: TemporalRAG, question: str) -> list[str]:
    return [e.text for e in rag.retrieve(question).evidence]


def test_second_process_writer_is_locked_out_readers_are_not(tmp_path: Path, world: World) -> None:
    store = tmp_path / "store"
    old_q = next(q for q in world.questions if q.evidence in world.documents[0].text)
    new_q = next(q for q in world.questions if q.evidence in world.documents[5].text)
    assert "2023" in old_q.text and "2024" in new_q.text
    rag = TemporalRAG.open(store, SHORT)
    try:
        rag.ingest(world.documents[:4])  # the first company's 2023
        assert old_q.evidence in _gold(rag, old_q.text)
        assert rag.retrieve(new_q.text).abstained, "2024 is not in the store yet"

        go = tmp_path / "go"
        stderr = (tmp_path / "child.stderr").open("w")
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(store), str(go), "4", "8"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_reader, args=(child.stdout, lines), daemon=True).start()
        try:
            _expect(lines, "locked")

            # a second writer gives up after its timeout, with a message that says why
            started = time.monotonic()
            with pytest.raises(StoreLockedError) as info:
                rag.ingest(world.documents[8:10])
            waited = time.monotonic() - started
            assert 0.4 <= waited < 10.0
            message = str(info.value)
            assert "another process" in message
            assert f"pid {child.pid}" in message
            assert str(store) in message
            assert "waited 0.5 s" in message
            assert "\n" not in message
            with pytest.raises(StoreLockedError):
                rag.delete(world.documents[0].key or "")
            assert rag.stats()["documents"] == 4, "nothing was written by the locked-out writer"

            # readers are not blocked by the lock, nor is opening the store
            started = time.monotonic()
            assert old_q.evidence in _gold(rag, old_q.text)
            with TemporalRAG.open(store, SHORT) as another:
                assert old_q.evidence in _gold(another, old_q.text)
            assert time.monotonic() - started < 20.0, "a reader waited for the writer lock"

            # ... nor by the other process's write transactions: keep reading while it ingests
            go.touch()
            reads = 0
            deadline = time.monotonic() + WAIT_S
            while child.poll() is None and time.monotonic() < deadline:
                assert old_q.evidence in _gold(rag, old_q.text)
                reads += 1
                time.sleep(0.1)  # leave the CPU to the child, which loads its model meanwhile
            assert child.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, (
                tmp_path / "child.stderr"
            ).read_text()[-3000:]
            assert _expect(lines, "ingested", 5) == "ingested 4"
            assert reads > 0
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=30)
            stderr.close()

        # the reader opened before the other process wrote sees its documents (stale indexes refresh)
        assert new_q.evidence in _gold(rag, new_q.text)
        assert rag.stats()["documents"] == 8

        # the lock is free again: the second writer succeeds, on top of the other process's work
        report = rag.ingest(world.documents[8:10])
        assert len(report.added) == 2
        assert rag.stats()["documents"] == 10
    finally:
        rag.close()
    with TemporalRAG.open(store) as fresh:
        stats = fresh.stats()
        assert len(fresh.workspace.indexes.vectors["fact"]) == stats["facts"], "saved indexes lost facts"
        assert new_q.evidence in _gold(fresh, new_q.text)
        assert old_q.evidence in _gold(fresh, old_q.text)


def test_two_handles_in_one_process_exclude_each_other(store_path: Path, world: World) -> None:
    """flock is per open file: even a second handle in the same process is another writer."""
    with TemporalRAG.open(store_path, SHORT) as first, TemporalRAG.open(store_path, SHORT) as second:
        with first.workspace.lock:
            with pytest.raises(StoreLockedError, match="another process"):
                second.ingest(world.documents[:1])
            assert second.stats()["documents"] == 0
        report = second.ingest(world.documents[:1])
        assert len(report.added) == 1
        # the first handle's indexes are stale; retrieve refreshes them
        q = next(q for q in world.questions if q.evidence in world.documents[0].text)
        assert q.evidence in _gold(first, q.text)


def test_waiting_writer_gets_the_lock_when_it_is_released(tmp_path: Path) -> None:
    holder = WriterLock(tmp_path / "write.lock", timeout_s=0.5)
    waiter = WriterLock(tmp_path / "write.lock", timeout_s=10.0)
    holder.acquire()
    assert (tmp_path / "write.lock").read_text() == str(os.getpid())
    timer = threading.Timer(0.3, holder.release)
    timer.start()
    try:
        started = time.monotonic()
        waiter.acquire()
        waited = time.monotonic() - started
    finally:
        timer.cancel()
    assert 0.2 <= waited < 10.0
    # held by the waiter now: the former holder is the one locked out
    with pytest.raises(StoreLockedError, match="another process"):
        holder.acquire()
    waiter.release()
    holder.acquire()
    holder.release()


def test_lock_is_reentrant_in_one_handle(tmp_path: Path) -> None:
    lock = WriterLock(tmp_path / "write.lock", timeout_s=0.2)
    other = WriterLock(tmp_path / "write.lock", timeout_s=0.2)
    with lock:
        with lock:  # ingest inside a caller's ``with rag.workspace.lock`` nests like this
            pass
        with pytest.raises(StoreLockedError):
            other.acquire()  # the inner release did not drop the lock
    other.acquire()
    other.release()
