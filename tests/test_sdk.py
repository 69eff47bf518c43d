"""End to end through the SDK on the generated world: scoped answers, as-of, abstention, updates."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from tgrag.model import Document, EvidenceKind, TimeInterval
from tgrag.sdk import TemporalRAG

from .world import World


def test_every_generated_question_is_answered_from_its_gold_evidence(
    world: World, world_store: TemporalRAG
) -> None:
    wrong = []
    for q in world.questions:
        answer = world_store.answer(q.text)
        if not q.answer:
            if not answer.abstained:
                wrong.append((q.text, answer.text))
            continue
        texts = [e.text for e in answer.retrieval.evidence] if answer.retrieval else []
        if answer.text != q.answer or q.evidence not in texts:
            wrong.append((q.text, answer.text))
    assert not wrong, wrong


def test_same_question_at_different_times_gets_that_time_s_answer(
    world: World, world_store: TemporalRAG
) -> None:
    company = "Asteria Labs"
    answers = {
        (y, q): world_store.answer(f"What was {company}'s revenue in Q{q} {y}?").text
        for y in (2023, 2024)
        for q in (1, 4)
    }
    for (y, q), text in answers.items():
        assert text == f"${world.revenue[(company, y, q)]} million"
    # evidence stays inside the asked quarter
    result = world_store.retrieve(f"What was {company}'s revenue in Q3 2024?")
    assert result.scope.interval == TimeInterval.quarter(2024, 3)
    for ev in result.evidence:
        if ev.kind is EvidenceKind.FACT:
            assert ev.time.overlaps(TimeInterval.quarter(2024, 3))


def test_relative_question_resolves_against_now(world: World, world_store: TemporalRAG) -> None:
    answer = world_store.answer("What was Borealis Shipping's revenue last quarter?", now=date(2024, 5, 20))
    assert answer.text == f"${world.revenue[('Borealis Shipping', 2024, 1)]} million"


def test_ranges_before_and_after(world_store: TemporalRAG) -> None:
    between = world_store.retrieve(
        "What revenue did Asteria Labs report between Q2 2023 and Q3 2023?", budget=2000
    )
    labels = {e.time.label for e in between.evidence if e.kind is EvidenceKind.FACT}
    assert labels and labels <= {"2023-Q2", "2023-Q3"}
    after = world_store.retrieve("What revenue did Asteria Labs report after Q2 2024?", budget=2000)
    assert {e.time.label for e in after.evidence if e.kind is EvidenceKind.FACT} <= {"2024-Q3", "2024-Q4"}


def test_as_of_sees_only_what_was_ingested_by_then(world: World, world_store: TemporalRAG) -> None:
    q = "What was Cobalt Ridge Mining's revenue in Q4 2024?"
    before = world_store.answer(q, as_of=date(2024, 6, 1))
    assert before.abstained
    after = world_store.answer(q, as_of=date(2025, 3, 1))
    assert after.text == f"${world.revenue[('Cobalt Ridge Mining', 2024, 4)]} million"
    early = world_store.retrieve(
        "What was Cobalt Ridge Mining's revenue?", as_of=date(2023, 6, 15), budget=4000
    )
    # reports come out a month after their quarter: by mid-June 2023 only Q1 2023 had been published
    assert {e.time.label for e in early.evidence if e.kind is EvidenceKind.FACT} == {"2023-Q1"}


def test_abstains_with_a_reason_for_unknown_entities_and_empty_periods(world_store: TemporalRAG) -> None:
    unknown = world_store.retrieve("What was Zephyr Dynamics' revenue in Q1 2024?")
    assert unknown.abstained and "Zephyr Dynamics" in unknown.reason and not unknown.evidence
    empty = world_store.retrieve("What was Asteria Labs' revenue in 2031?")
    assert empty.abstained and "in scope" in empty.reason
    answer = world_store.answer("What was Asteria Labs' revenue in 2031?")
    assert answer.abstained and answer.text.startswith("No answer")


def test_evidence_fits_the_budget_and_cites_sources(world_store: TemporalRAG) -> None:
    for budget in (20, 60, 400):
        result = world_store.retrieve("How did Dunmore Textiles or Asteria Labs do in 2024?", budget=budget)
        assert sum(e.tokens for e in result.evidence) <= budget
        for e in result.evidence:
            assert e.tokens > 0
            if e.kind is EvidenceKind.FACT:
                assert e.source and e.doc_id
    answer = world_store.answer("Who was the chief executive officer of Asteria Labs in 2023?")
    assert answer.citations and all(c.source for c in answer.citations)


def test_identical_facts_at_different_times_stay_distinct_and_repeats_merge_provenance(
    store_path: Path,
) -> None:
    said = "Acme Rockets shipped 40 engines."
    docs = [
        Document(said, period=TimeInterval.quarter(2024, 1), subject="Acme Rockets", source="q1.txt"),
        Document(
            said, period=TimeInterval.quarter(2024, 2), subject="Acme Rockets", source="q2.txt", key="b"
        ),
        # the same statement about the same quarter from another source: one fact, two sources
        Document(
            said + "\nThanks everyone.",
            period=TimeInterval.quarter(2024, 1),
            subject="Acme Rockets",
            source="wire.txt",
        ),
    ]
    with TemporalRAG.open(store_path) as rag:
        report = rag.ingest(docs)
        assert len(report.added) == 2 and report.skipped[0].reason.startswith("duplicate")
        # the first two have identical text, so the second is a duplicate document: ingest it alone
        report2 = rag.ingest(
            [
                Document(
                    said + " ", period=TimeInterval.quarter(2024, 2), subject="Acme Rockets", source="q2.txt"
                )
            ]
        )
        assert report2.facts_created == 1
        facts = {f.time.label: f for f in rag.facts(list(range(1, 10)))}
        assert set(facts) == {"2024-Q1", "2024-Q2"}
        q1 = facts["2024-Q1"]
        assert len(q1.sources) == 2 and {s.document_source for s in q1.sources} == {"q1.txt", "wire.txt"}
        assert q1.confidence > facts["2024-Q2"].confidence  # two independent sources


def test_delete_removes_provenance_and_orphaned_facts_only(store_path: Path) -> None:
    a = Document(
        "Kestrel Air carried 2.1 million passengers in March 2024.",
        date=date(2024, 4, 2),
        subject="Kestrel Air",
    )
    b = Document(
        "Kestrel Air carried 2.1 million passengers in March 2024.\nKestrel Air added 3 routes in March 2024.",
        date=date(2024, 4, 3),
        subject="Kestrel Air",
        key="b",
    )
    with TemporalRAG.open(store_path) as rag:
        rag.ingest([a, b])
        before = rag.stats()
        outcome = rag.delete("b")
        assert outcome is not None and len(outcome.facts_removed) == 1 and len(outcome.facts_kept) == 1
        after = rag.stats()
        assert after["documents"] == before["documents"] - 1 and after["facts"] == before["facts"] - 1
        texts = [e.text for e in rag.retrieve("What did Kestrel Air do in March 2024?", budget=500).evidence]
        assert not any("routes" in t for t in texts) and any("passengers" in t for t in texts)
        assert rag.delete("no-such-document") is None
        rag.delete(a.id)
        assert rag.stats()["facts"] == 0 and rag.stats()["entities"] == 0
        assert rag.retrieve("What did Kestrel Air do?").abstained


def test_reopening_a_store_gives_the_same_results(world_store: TemporalRAG) -> None:
    path = world_store.workspace.path
    q = "What was Dunmore Textiles' revenue in Q2 2023?"
    first = [e.item_id for e in world_store.retrieve(q).evidence]
    with TemporalRAG.open(path) as again:
        assert [e.item_id for e in again.retrieve(q).evidence] == first


def test_ingested_at_defaults_to_now(store_path: Path) -> None:
    with TemporalRAG.open(store_path) as rag:
        start = datetime.now(timezone.utc)
        rag.ingest([Document("Quill Bank opened 5 branches in 2024.", subject="Quill Bank")])
        fact = rag.facts([1])[0]
        assert fact.first_ingested_at >= start.replace(microsecond=0)
        assert rag.retrieve("Quill Bank branches in 2024?", as_of=date(2000, 1, 1)).abstained


def test_langchain_retriever_round_trip(world_store: TemporalRAG) -> None:
    pytest.importorskip("langchain_core")
    from tgrag.integrations.langchain import TemporalRAGRetriever

    retriever = TemporalRAGRetriever(rag=world_store, budget=200)
    docs = retriever.invoke("What was Asteria Labs' revenue in Q1 2024?")
    assert docs and docs[0].metadata["time"] == "2024-Q1" and docs[0].metadata["source"]
    assert retriever.invoke("What was Zephyr Dynamics' revenue in Q1 2024?") == []


def test_demo_runs_and_answers(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from tgrag.demo import run_demo

    assert run_demo(tmp_path / "demo") == 0
    out = capsys.readouterr().out
    assert "A: $449 million" in out  # Q2 2024 revenue as restated in November
    assert "A: $455 million" in out  # ... and as it was known on 2024-09-01, before the restatement
    assert "A: Maria Okafor" in out and "A: Daniel Reyes" in out
    assert "A: Q2 2024" in out  # the quarter with the highest operating margin
    assert out.count("A: No answer") == 2


def test_bad_arguments_are_clear_errors(world_store: TemporalRAG) -> None:
    from tgrag.errors import InputError

    for kwargs in (
        {"question": ""},
        {"question": None},
        {"question": "q?", "as_of": "2024-13-45"},
        {"question": "q?", "as_of": 20240101},
        {"question": "q?", "budget": 0},
        {"question": "q?", "now": "soon"},
    ):
        with pytest.raises(InputError):
            world_store.retrieve(**kwargs)  # type: ignore[arg-type]
    # a date given as text is accepted
    assert world_store.retrieve("What was Asteria Labs' revenue in Q1 2024?", as_of="2025-01-01").evidence
    with pytest.raises(TypeError, match="must be str"):
        Document(b"bytes are not text")  # type: ignore[arg-type]


def test_a_damaged_database_is_reported_as_such(tmp_path: Path) -> None:
    from tgrag.errors import StoreCorruptedError, StoreError

    path = tmp_path / "store"
    with TemporalRAG.open(path) as rag:
        rag.ingest(
            [
                Document(f"Orion Freight moved {n} containers in March 2024.", subject="Orion Freight")
                for n in range(60)
            ]
        )
    db = path / "store.sqlite"
    data = bytearray(db.read_bytes())
    page = 4096
    for offset in range(2 * page, len(data), page):  # keep page 1; give every later page an invalid type
        data[offset : offset + 8] = b"\xff" * 8
    db.write_bytes(bytes(data))
    for wal in path.glob("store.sqlite-*"):
        wal.unlink()
    with pytest.raises(StoreCorruptedError, match=r"store\.sqlite"):
        TemporalRAG.open(path).retrieve("How many containers did Orion Freight move?")

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    import sqlite3

    con = sqlite3.connect(foreign / "store.sqlite")
    con.execute("CREATE TABLE invoices(id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="another program"):
        TemporalRAG.open(foreign)


def test_tickers_become_aliases_and_resolution_is_deterministic(tmp_path: Path) -> None:
    docs = [
        Document(
            "Apple Inc. (NASDAQ: AAPL) reported revenue of $90 billion in Q1 2024.\n"
            "Tim Cook, chief executive officer of Apple Inc., spoke about services.",
            source="wire-1.txt",
        ),
        Document("Microsoft Corp. (MSFT) reported revenue of $62 billion in Q1 2024.", source="wire-2.txt"),
    ]
    entity_tables = []
    for n in range(2):
        with TemporalRAG.open(tmp_path / f"s{n}") as rag:
            rag.ingest(docs)
            entities = rag.workspace.store.entities()
            entity_tables.append([(e.id, e.name, e.type, sorted(e.aliases)) for e in entities])
            apple = next(e for e in entities if e.name == "Apple Inc.")
            assert "AAPL" in apple.aliases and not any(e.name == "AAPL" for e in entities)
            result = rag.retrieve("What was AAPL's revenue in Q1 2024?")
            assert result.entities == ("Apple Inc.",) and "$90 billion" in result.evidence[0].text
    assert entity_tables[0] == entity_tables[1]  # same input, same entities and ids


def test_unexpected_failures_are_diagnosed_as_damage_or_reraised(
    world_store: TemporalRAG, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tgrag.errors import StoreCorruptedError

    def broken(*args: object, **kwargs: object) -> None:
        raise TypeError("garbage from a damaged page")

    monkeypatch.setattr(world_store._retriever, "retrieve", broken)
    store = world_store.workspace.store
    monkeypatch.setattr(
        store, "integrity_check", lambda: "*** in database main ***\nPage 7: btreeInitPage() returns error"
    )
    with pytest.raises(StoreCorruptedError, match="damaged"):
        world_store.retrieve("anything?")
    monkeypatch.setattr(store, "integrity_check", lambda: "ok")
    with pytest.raises(TypeError, match="garbage"):  # a sound store: it is a bug, so it propagates
        world_store.retrieve("anything?")
