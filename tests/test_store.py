"""Tests for tgrag.store.sqlite.SQLiteStore, used directly (no SDK, no embedder)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from tgrag.errors import StoreCorruptedError, StoreError
from tgrag.hierarchy import attach_nodes, with_ancestors
from tgrag.model import (
    MAX_ORDINAL,
    MIN_ORDINAL,
    Chunk,
    Document,
    EntityType,
    Granularity,
    TimeInterval,
    TimeLevel,
)
from tgrag.store.base import NewFact
from tgrag.store.sqlite import DB_NAME, SCHEMA_VERSION, SQLiteStore, text_hash

T0 = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
Q = TimeInterval.quarter
Q1_2024 = Q(2024, 1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "store")
    yield s
    s.close()


def chunks_of(doc: Document, n: int = 2) -> list[Chunk]:
    words = doc.text.split(". ")
    assert len(words) >= n
    out, pos = [], 0
    for i in range(n):
        piece = words[i]
        start = doc.text.index(piece, pos)
        out.append(Chunk(f"{doc.id}:{i}", doc.id, i, piece, start, start + len(piece)))
        pos = start + len(piece)
    return out


def new_fact(
    key: str,
    subject_id: int,
    time: TimeInterval = Q1_2024,
    confidence: float = 0.5,
    entity_ids: tuple[int, ...] = (),
    text: str | None = None,
    projected: bool = False,
) -> NewFact:
    return NewFact(
        key=key,
        subject_id=subject_id,
        relation="revenue",
        object=f"object of {key}",
        start=time.start_ordinal,
        end=time.end_ordinal,
        granularity=time.granularity.value,
        time_label=time.label,
        text=text or f"Fact {key} was stated.",
        value=1.5,
        unit="USD",
        confidence=confidence,
        entity_ids=entity_ids,
        node_ids=tuple(n.id for n in attach_nodes(time)),
        projected=projected,
    )


def add_doc(
    store: SQLiteStore, text: str, at: datetime = T0, **kw: object
) -> tuple[Document, dict[str, int]]:
    doc = Document(text, **kw)  # type: ignore[arg-type]
    return doc, store.add_document(doc, chunks_of(doc), at)


def put_fact(
    store: SQLiteStore, fact: NewFact, doc_id: str, chunk_num: int, at: datetime = T0
) -> tuple[int, bool]:
    store.add_time_nodes(
        with_ancestors(
            attach_nodes(TimeInterval.from_ordinals(fact.start, fact.end, Granularity(fact.granularity)))
        )
    )
    return store.upsert_fact(fact, doc_id, chunk_num, at)


def source_count(store: SQLiteStore, fact_id: int) -> int:
    return len(store.facts([fact_id])[0].sources)


# ---- schema, transactions, generation ---------------------------------------------------------------
def test_schema_is_created_and_versioned(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s")
    s.close()
    db = sqlite3.connect(tmp_path / "s" / DB_NAME)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    meta = dict(db.execute("SELECT key, value FROM meta"))
    db.close()
    assert {
        "meta",
        "documents",
        "chunks",
        "entities",
        "entity_aliases",
        "facts",
        "fact_sources",
        "fact_entities",
        "time_nodes",
        "fact_nodes",
        "vectors",
    } <= tables
    assert meta == {"schema_version": SCHEMA_VERSION, "generation": "0"}
    # opening again keeps what is there
    s = SQLiteStore(tmp_path / "s")
    assert s.generation() == 0 and s.get_meta("schema_version") == SCHEMA_VERSION
    assert s.stats()["documents"] == 0
    s.close()


def test_other_schema_version_or_garbage_is_refused(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s")
    s.set_meta("schema_version", "999")
    s.close()
    with pytest.raises(StoreError, match="schema version 999"):
        SQLiteStore(tmp_path / "s")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / DB_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreCorruptedError):
        SQLiteStore(tmp_path / "bad")


def test_transaction_commits_and_moves_the_generation(store: SQLiteStore) -> None:
    assert store.generation() == 0
    with store.transaction():
        doc, _ = add_doc(store, "Alpha one. Beta two.")
    assert store.generation() == 1
    assert store.known_documents([doc.id, "nope"]) == {doc.id}
    with store.transaction():
        pass
    assert store.generation() == 2


def test_transaction_rolls_back_on_error(store: SQLiteStore) -> None:
    with store.transaction():
        add_doc(store, "Kept one. Kept two.")
    before = store.stats()
    with pytest.raises(RuntimeError), store.transaction():
        doc, nums = add_doc(store, "Lost one. Lost two.")
        eid = store.add_entity("Acme", EntityType.ORGANIZATION, ["ACME Corp"])
        put_fact(store, new_fact("k1", eid), doc.id, nums[f"{doc.id}:0"])
        store.put_vectors("fact", [1], np.ones((1, 4), np.float32), ["x"])
        store.set_meta("embedder", "x")
        raise RuntimeError("boom")
    assert store.stats() == before  # nothing written, generation unchanged
    assert store.known_documents([doc.id]) == set()
    assert store.entity_ids_for_keys(["acme"]) == {}
    assert store.get_meta("embedder") is None
    assert store.get_vectors("fact")[0].size == 0
    # the store is usable afterwards
    with store.transaction():
        add_doc(store, "Next one. Next two.")
    assert store.generation() == before["generation"] + 1


def test_nested_transactions_are_refused(store: SQLiteStore) -> None:
    with store.transaction():
        with pytest.raises(StoreError, match="nested"), store.transaction():
            pass
        add_doc(store, "Still one. Still two.")
    assert store.generation() == 1 and store.stats()["documents"] == 1


# ---- documents and entities ---------------------------------------------------------------------------
def test_documents_and_chunks_round_trip(store: SQLiteStore) -> None:
    with store.transaction():
        doc, nums = add_doc(
            store,
            "First part. Second part.",
            key="k-1",
            subject="Acme",
            source="a.txt",
            date=date(2024, 2, 1),
            period=Q(2023, 4),
        )
    assert store.document_id_for_key("k-1") == doc.id and store.document_id_for_key("k-2") is None
    assert store.document_text(doc.id) == doc.text
    [rec] = store.documents()
    assert (rec.id, rec.key, rec.subject, rec.source, rec.date, rec.period, rec.chunk_count) == (
        doc.id,
        "k-1",
        "Acme",
        "a.txt",
        "2024-02-01",
        "2023-Q4",
        2,
    )
    rows = store.chunk_rows()
    assert [c for _, c in rows] == chunks_of(doc)
    assert sorted(nums.values()) == [n for n, _ in rows]
    assert [c.text for _, c in store.chunk_rows([nums[f"{doc.id}:1"]])] == ["Second part."]


def test_entities_and_aliases(store: SQLiteStore) -> None:
    with store.transaction():
        eid = store.add_entity("Crocs, Inc.", EntityType.ORGANIZATION, ["CROX"])
        other = store.add_entity("Andrew Rees", EntityType.PERSON, [])
        store.add_aliases(eid, ["Crocs Incorporated", "Crocs"])  # same key as the name: ignored
        store.add_aliases(other, ["crocs"])  # a key is owned by the first entity that claims it
    assert store.entity_ids_for_keys(["crocs", "crox", "andrew rees", "zzz"]) == {
        "crocs": eid,
        "crox": eid,
        "andrew rees": other,
    }
    ents = {e.id: e for e in store.entities()}
    assert ents[eid].name == "Crocs, Inc." and ents[eid].type is EntityType.ORGANIZATION
    assert set(ents[eid].aliases) == {"CROX"}
    assert [e.name for e in store.entities([other])] == ["Andrew Rees"]


# ---- facts ------------------------------------------------------------------------------------------
def test_upsert_merges_provenance_with_noisy_or(store: SQLiteStore) -> None:
    later = T0 + timedelta(days=3)
    with store.transaction():
        doc, nums = add_doc(store, "Chunk zero here. Chunk one here.", source="call.txt")
        eid = store.add_entity("Acme", EntityType.ORGANIZATION, [])
        c0, c1 = nums[f"{doc.id}:0"], nums[f"{doc.id}:1"]
        fid, created = put_fact(store, new_fact("key", eid, confidence=0.6), doc.id, c0, later)
        assert created
        # the same chunk again adds nothing
        assert put_fact(store, new_fact("key", eid, confidence=0.9), doc.id, c0, later) == (fid, False)
        assert store.facts([fid])[0].confidence == pytest.approx(0.6)
        assert source_count(store, fid) == 1
        # another chunk adds a source and raises confidence: 1 - (1 - 0.6)(1 - 0.5) = 0.8
        assert put_fact(store, new_fact("key", eid, confidence=0.5), doc.id, c1, T0) == (fid, False)
    [fact] = store.facts([fid])
    assert fact.confidence == pytest.approx(0.8)
    assert [s.chunk_id for s in fact.sources] == [f"{doc.id}:1", f"{doc.id}:0"]  # earliest first
    assert fact.first_ingested_at == T0  # the earlier of the two learning times
    assert store.stats()["facts"] == 1 and store.stats()["fact_sources"] == 2
    # a third, independent source: 1 - 0.2 * 0.5 = 0.9
    with store.transaction():
        doc2, nums2 = add_doc(store, "Other zero here. Other one here.")
        put_fact(store, new_fact("key", eid, confidence=0.5), doc2.id, nums2[f"{doc2.id}:0"])
    assert store.facts([fid])[0].confidence == pytest.approx(0.9)


def test_projected_fact_becomes_observed_when_any_source_observes_it(store: SQLiteStore) -> None:
    with store.transaction():
        doc, nums = add_doc(store, "Forecast zero here. Actual one here.")
        eid = store.add_entity("Acme", EntityType.ORGANIZATION, [])
        fid, _ = put_fact(store, new_fact("k", eid, projected=True), doc.id, nums[f"{doc.id}:0"])
        assert next(store.fact_rows([fid])).projected
        put_fact(store, new_fact("k", eid, projected=True), doc.id, nums[f"{doc.id}:0"])  # same chunk
        assert next(store.fact_rows([fid])).projected
        put_fact(store, new_fact("k", eid, projected=False), doc.id, nums[f"{doc.id}:1"])
    assert not next(store.fact_rows([fid])).projected


@pytest.mark.parametrize(
    "time",
    [
        Q(2024, 3),
        TimeInterval.day(date(2021, 2, 28)),
        TimeInterval.always(),
        TimeInterval(None, date(1935, 1, 1)),
        TimeInterval(date(2021, 1, 1), None),
        TimeInterval.decade(1990),
    ],
)
def test_facts_and_fact_rows_round_trip(store: SQLiteStore, time: TimeInterval) -> None:
    with store.transaction():
        doc, nums = add_doc(store, "Alpha zero here. Alpha one here.", source="src.txt")
        subject = store.add_entity("Acme", EntityType.ORGANIZATION, [])
        other = store.add_entity("Globex", EntityType.ORGANIZATION, [])
        fact = new_fact(
            "k", subject, time=time, confidence=0.7, entity_ids=(other,), text="Acme beat Globex."
        )
        fid, _ = put_fact(store, fact, doc.id, nums[f"{doc.id}:1"])
    [f] = store.facts([fid])
    assert (f.id, f.subject_id, f.subject, f.relation, f.object, f.text) == (
        fid,
        subject,
        "Acme",
        "revenue",
        "object of k",
        "Acme beat Globex.",
    )
    assert (f.time.start, f.time.end, f.time.granularity, f.time.label) == (
        time.start,
        time.end,
        time.granularity,
        time.label,
    )
    assert (f.value, f.unit, f.confidence, f.first_ingested_at) == (1.5, "USD", pytest.approx(0.7), T0)
    assert [(s.doc_id, s.chunk_id, s.ingested_at, s.document_source) for s in f.sources] == [
        (doc.id, f"{doc.id}:1", T0, "src.txt")
    ]
    assert f.entity_ids == tuple(sorted((subject, other)))  # the subject is always an entity of its fact
    [row] = list(store.fact_rows())
    assert (row.id, row.subject_id, row.text, row.doc_id, row.chunk_num) == (
        fid,
        subject,
        "Acme beat Globex.",
        doc.id,
        nums[f"{doc.id}:1"],
    )
    assert (row.start, row.end) == (time.start_ordinal, time.end_ordinal)
    assert row.start == (MIN_ORDINAL if time.start is None else time.start.toordinal())
    assert row.end == (MAX_ORDINAL if time.end is None else time.end.toordinal())
    assert (row.granularity, row.time_label, row.first_ingested_at) == (
        time.granularity.value,
        time.label,
        T0.timestamp(),
    )
    assert row.entity_ids == f.entity_ids and not row.projected
    assert store.facts([]) == [] and store.facts([fid + 100]) == []


def test_fact_rows_name_the_earliest_source_and_facts_keep_the_order_asked(store: SQLiteStore) -> None:
    with store.transaction():
        d1, n1 = add_doc(store, "One zero here. One one here.", at=T0 + timedelta(days=5))
        d2, n2 = add_doc(store, "Two zero here. Two one here.", at=T0)
        eid = store.add_entity("Acme", EntityType.ORGANIZATION, [])
        a, _ = put_fact(store, new_fact("a", eid), d1.id, n1[f"{d1.id}:0"], T0 + timedelta(days=5))
        put_fact(store, new_fact("a", eid), d2.id, n2[f"{d2.id}:1"], T0)
        b, _ = put_fact(store, new_fact("b", eid), d1.id, n1[f"{d1.id}:1"], T0 + timedelta(days=5))
    rows = {r.id: r for r in store.fact_rows()}
    assert (rows[a].doc_id, rows[a].chunk_num) == (d2.id, n2[f"{d2.id}:1"])
    assert rows[a].first_ingested_at == T0.timestamp()
    assert (rows[b].doc_id, rows[b].chunk_num) == (d1.id, n1[f"{d1.id}:1"])
    assert [f.id for f in store.facts([b, a])] == [b, a]
    assert [r.id for r in store.fact_rows([b])] == [b]


# ---- delete -------------------------------------------------------------------------------------------
def test_delete_document(store: SQLiteStore) -> None:
    with store.transaction():
        da, na = add_doc(store, "Doc A zero. Doc A one.", key="a")
        db_, nb = add_doc(store, "Doc B zero. Doc B one.", key="b")
        acme = store.add_entity("Acme", EntityType.ORGANIZATION, ["ACME"])
        only_a = store.add_entity("Globex", EntityType.ORGANIZATION, ["GBX"])
        shared_ent = store.add_entity("Initech", EntityType.ORGANIZATION, [])
        f_a, _ = put_fact(
            store, new_fact("fa", acme, Q(2024, 1), 0.6, (only_a, shared_ent)), da.id, na[f"{da.id}:0"]
        )
        f_ab, _ = put_fact(store, new_fact("fab", acme, Q(2024, 2), 0.6), da.id, na[f"{da.id}:1"])
        put_fact(
            store, new_fact("fab", acme, Q(2024, 2), 0.5), db_.id, nb[f"{db_.id}:0"], T0 + timedelta(days=1)
        )
        f_b, _ = put_fact(
            store, new_fact("fb", acme, Q(2025, 1), 0.6, (shared_ent,)), db_.id, nb[f"{db_.id}:1"]
        )
        store.put_vectors("fact", [f_a, f_ab, f_b], np.eye(3, 4, dtype=np.float32))
        store.put_vectors("entity", [acme, only_a, shared_ent], np.eye(3, 4, dtype=np.float32))
        store.put_vectors("chunk", [*na.values(), *nb.values()], np.eye(4, 4, dtype=np.float32))
    # summaries computed: nothing dirty
    with store.transaction():
        store.set_summaries({n.id: ("summary", ()) for n in store.time_nodes()})
    assert store.time_nodes(dirty_only=True) == []
    generation = store.generation()

    with store.transaction():
        out = store.delete_document(da.id)
    assert out is not None and store.generation() == generation + 1
    assert out.doc_id == da.id
    assert out.facts_removed == (f_a,)
    assert out.facts_kept == (f_ab,)
    assert out.entities_removed == (only_a,)  # Acme and Initech still have facts
    assert sorted(out.chunks_removed) == sorted(na.values())
    # the nodes of its facts and their ancestors, whose summaries build on theirs; not 2025's
    assert set(out.nodes_dirtied) == {"2024-Q1", "2024-Q2", "2024"}
    assert {n.id for n in store.time_nodes(dirty_only=True)} == {"2024-Q1", "2024-Q2", "2024"}
    # the document, its chunks, its provenance, and the fact only it stated are gone
    assert store.known_documents([da.id]) == set() and store.document_id_for_key("a") is None
    assert {c.doc_id for _, c in store.chunk_rows()} == {db_.id}
    assert [f.id for f in store.facts([f_a, f_ab, f_b])] == [f_ab, f_b]
    [kept] = store.facts([f_ab])
    assert [s.doc_id for s in kept.sources] == [db_.id]
    assert kept.confidence == pytest.approx(0.5)  # only the remaining source's confidence
    assert kept.first_ingested_at == T0 + timedelta(days=1)
    assert store.node_fact_ids("2024-Q1") == [] and store.node_fact_ids("2024-Q2") == [f_ab]
    # the orphan entity goes with its aliases and vector; the rest stay
    assert {e.id for e in store.entities()} == {acme, shared_ent}
    assert store.entity_ids_for_keys(["globex", "gbx", "acme"]) == {"acme": acme}
    assert store.get_vectors("fact")[0].tolist() == sorted([f_ab, f_b])
    assert store.get_vectors("entity")[0].tolist() == sorted([acme, shared_ent])
    assert store.get_vectors("chunk")[0].tolist() == sorted(nb.values())
    # deleting again, or an unknown id, is a no-op
    with store.transaction():
        assert store.delete_document(da.id) is None


# ---- vectors --------------------------------------------------------------------------------------------
def test_vectors_put_get_by_text(store: SQLiteStore) -> None:
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((4, 8)).astype(np.float32)
    with store.transaction():
        store.put_vectors("fact", [7, 3, 9, 1], vecs, ["seven", "three", "nine", "one"])
        store.put_vectors("node", [3], vecs[:1])
    ids, got = store.get_vectors("fact")
    assert ids.tolist() == [1, 3, 7, 9] and got.dtype == np.float32
    np.testing.assert_array_equal(got, vecs[[3, 1, 0, 2]])
    ids, got = store.get_vectors("fact", [9, 3, 42])
    assert ids.tolist() == [3, 9]
    np.testing.assert_array_equal(got, vecs[[1, 2]])
    ids, got = store.get_vectors("node")
    assert ids.tolist() == [3]
    np.testing.assert_array_equal(got, vecs[:1])  # kinds are separate id spaces
    empty_ids, empty = store.get_vectors("chunk")
    assert empty_ids.shape == (0,) and empty.shape[0] == 0
    found = store.vectors_by_text("fact", [text_hash("nine"), text_hash("one"), text_hash("absent")])
    assert set(found) == {text_hash("nine"), text_hash("one")}
    np.testing.assert_array_equal(found[text_hash("nine")], vecs[2])
    assert store.vectors_by_text("node", [text_hash("seven")]) == {}
    # replace and delete
    with store.transaction():
        store.put_vectors("fact", [7], np.zeros((1, 8), np.float32), ["seven again"])
        store.delete_vectors("fact", [1, 1000])
    ids, got = store.get_vectors("fact")
    assert ids.tolist() == [3, 7, 9]
    assert not got[1].any()
    assert store.vectors_by_text("fact", [text_hash("seven")]) == {}


# ---- time nodes -------------------------------------------------------------------------------------------
def test_time_nodes_and_summaries(store: SQLiteStore) -> None:
    with store.transaction():
        doc, nums = add_doc(store, "Zero part here. One part here.")
        eid = store.add_entity("Acme", EntityType.ORGANIZATION, [])
        f1, _ = put_fact(store, new_fact("m", eid, TimeInterval.month(2024, 5)), doc.id, nums[f"{doc.id}:0"])
        f2, _ = put_fact(store, new_fact("q", eid, Q(2024, 2)), doc.id, nums[f"{doc.id}:1"])
        store.add_time_nodes(with_ancestors(attach_nodes(TimeInterval.month(2024, 5))))  # again: ignored
    nodes = {n.id: n for n in store.time_nodes()}
    assert set(nodes) == {"2024", "2024-Q2", "2024-05"}
    assert [n.id for n in store.time_nodes()] == ["2024", "2024-Q2", "2024-05"]  # by start, widest first
    assert nodes["2024-05"].parent == "2024-Q2" and nodes["2024-Q2"].parent == "2024"
    assert nodes["2024"].parent is None and nodes["2024-Q2"].level is TimeLevel.QUARTER
    assert (
        nodes["2024-Q2"].interval.start == Q(2024, 2).start
        and nodes["2024-Q2"].interval.end == Q(2024, 2).end
    )
    assert {i: n.fact_count for i, n in nodes.items()} == {"2024": 0, "2024-Q2": 1, "2024-05": 1}
    assert all(n.dirty and n.summary == "" for n in nodes.values())
    assert store.node_fact_ids("2024-05") == [f1] and store.node_fact_ids("2024-Q2") == [f2]
    assert [n.id for n in store.time_nodes(["2024-05", "1999"])] == ["2024-05"]
    nums_by_id = store.time_node_nums()
    assert set(nums_by_id) == set(nodes)

    with store.transaction():
        store.put_vectors("node", [nums_by_id["2024-05"]], np.ones((1, 4), np.float32))
        out = store.set_summaries({"2024-Q2": ("Q2 summary.", (f2, f1)), "2024": ("", ())})
    # a node with an empty summary but children stays, clean and empty
    assert out == {"2024-Q2": nums_by_id["2024-Q2"], "2024": nums_by_id["2024"]}
    nodes = {n.id: n for n in store.time_nodes()}
    assert (nodes["2024-Q2"].summary, nodes["2024-Q2"].summary_fact_ids, nodes["2024-Q2"].dirty) == (
        "Q2 summary.",
        (f2, f1),
        False,
    )
    assert (nodes["2024"].summary, nodes["2024"].dirty) == ("", False)
    assert [n.id for n in store.time_nodes(dirty_only=True)] == ["2024-05"]
    assert [n.id for n in store.time_nodes(["2024-05", "2024"], dirty_only=True)] == ["2024-05"]

    # a leaf with an empty summary goes away, with its vector
    with store.transaction():
        out = store.set_summaries({"2024-05": ("", ())})
    assert out == {}
    assert "2024-05" not in store.time_node_nums()
    assert store.get_vectors("node")[0].size == 0
    # marking dirty
    with store.transaction():
        store.mark_dirty(["2024", "no-such-node"])
    assert [n.id for n in store.time_nodes(dirty_only=True)] == ["2024"]
