"""A whole store on the compressed memory bank (``vector_index="codebook"``): same answers as the
exact default, about 1% of the vector bytes, remembered by the store, rebuilt when damaged."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from tgrag.config import Config
from tgrag.errors import InputError
from tgrag.index.compressed import CodebookIndex, parse_options
from tgrag.sdk import TemporalRAG

from .world import World


def _ingest(rag: TemporalRAG, world: World) -> None:
    for docs in world.slices():
        day = max(d.date for d in docs if d.date is not None)
        rag.ingest(docs, ingested_at=datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc))


@pytest.fixture(scope="module")
def compressed_store(tmp_path_factory: pytest.TempPathFactory, world: World) -> Path:
    path = tmp_path_factory.mktemp("compressed") / "store"
    with TemporalRAG.open(path, Config(vector_index="codebook")) as rag:
        _ingest(rag, world)
    return path


def test_compressed_store_answers_like_the_exact_one(
    world: World, world_store: TemporalRAG, compressed_store: Path
) -> None:
    with TemporalRAG.open(compressed_store) as rag:
        assert isinstance(rag.workspace.indexes.vectors["fact"], CodebookIndex)
        same_answer = same_evidence = 0
        for q in world.questions:
            exact, compressed = world_store.answer(q.text), rag.answer(q.text)
            same_answer += exact.text == compressed.text and exact.abstained == compressed.abstained
            ids = [e.item_id for e in (compressed.retrieval.evidence if compressed.retrieval else ())]
            gold = [e.item_id for e in (exact.retrieval.evidence if exact.retrieval else ())]
            same_evidence += ids[:1] == gold[:1]
    # Candidates come from codes, scores from exact vectors: small differences only.
    n = len(world.questions)
    assert same_answer >= 0.95 * n, (same_answer, n)
    assert same_evidence >= 0.9 * n, (same_evidence, n)


def test_the_store_keeps_its_choice_and_its_vectors_compressed(compressed_store: Path) -> None:
    index_dir = compressed_store / "index"
    assert (index_dir / "fact.codebook").is_dir() and not (index_dir / "fact.faiss").exists()
    with TemporalRAG.open(compressed_store) as rag:  # no config: the store's recorded choice
        ws = rag.workspace
        assert ws.indexes.vector_spec == "codebook"
        fact = ws.indexes.vectors["fact"]
        assert isinstance(fact, CodebookIndex)
        stats = fact.bank.stats()
        assert stats.count == len(fact) > 100
        assert stats.bytes_per_vector_ratio <= 0.011
        ids = ws.indexes.catalog.ids[ws.indexes.catalog.alive][:50]
        exact = fact.vectors(ids)  # retrieval rescores with these: they must be the stored floats
        stored_ids, stored = ws.store.get_vectors("fact")
        by_id = dict(zip(stored_ids.tolist(), stored, strict=True))
        np.testing.assert_array_equal(exact, np.stack([by_id[int(i)] for i in ids]))


def test_switching_a_store_rebuilds_and_deletes_work(world: World, tmp_path: Path) -> None:
    path = tmp_path / "store"
    docs = [d for s in world.slices()[:3] for d in s]
    with TemporalRAG.open(path) as rag:
        rag.ingest(docs)
        q = world.questions[0].text
        flat_ids = [e.item_id for e in rag.retrieve(q).evidence]
    with TemporalRAG.open(path, Config(vector_index="codebook:m=8,rerank=200")) as rag:
        assert [e.item_id for e in rag.retrieve(q).evidence][:1] == flat_ids[:1]
        before = rag.stats()["facts"]
        rag.delete(docs[0].id)
        assert rag.stats()["facts"] < before
        assert len(rag.workspace.indexes.vectors["fact"]) == rag.stats()["facts"]
    with TemporalRAG.open(path) as rag:
        assert rag.workspace.indexes.vector_spec == "codebook:m=8,rerank=200"
        assert rag.workspace.indexes.vectors["fact"].bank.config.m == 8  # type: ignore[attr-defined]


def test_a_damaged_bank_is_rebuilt_from_the_store(world: World, tmp_path: Path) -> None:
    path = tmp_path / "store"
    with TemporalRAG.open(path, Config(vector_index="codebook")) as rag:
        rag.ingest([d for s in world.slices()[:2] for d in s])
        q = world.questions[0].text
        first = [e.item_id for e in rag.retrieve(q).evidence]
    for name in ("bank.state", "vectors.f32"):  # the codes and the exact vectors, each checksummed
        file = path / "index" / "fact.codebook" / name
        data = bytearray(file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        file.write_bytes(bytes(data))
    with TemporalRAG.open(path) as rag:
        assert [e.item_id for e in rag.retrieve(q).evidence] == first


def test_bad_codebook_options_are_clear_errors(tmp_path: Path) -> None:
    assert parse_options("m=8,stages=2,rotation=true,learning=ema", 384).stages == 2
    for bad in ("m=7", "nope=1", "m", "rerank=x", "rotation=maybe"):
        with pytest.raises(ValueError):
            parse_options(bad, 384)
    with pytest.raises(InputError, match="codebook"):
        TemporalRAG.open(tmp_path / "s", Config(vector_index="codebook:m=7"))
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"text": "Revenue was $5 million.", "subject": "Acme"}) + "\n")
    cli = [str(Path(sys.executable).parent / "tgrag"), "ingest", "--store", str(tmp_path / "t"), str(docs)]
    done = subprocess.run([*cli, "--vector-index", "codebook:m=7"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("error:") and "Traceback" not in done.stderr
