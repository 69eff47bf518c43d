"""The evaluation harness: metrics against hand-computed cases, loaders on tiny samples, the
protocols and the report on a small generated corpus."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from eval import protocols, report
from eval.datasets import Dataset, by_period, flashrag, in_parts, load_dataset, timeqa
from eval.datasets.base import QAItem
from eval.judge import judge_answer
from eval.metrics import (
    abstain_scores,
    answer_em,
    answer_f1,
    evidence_found,
    evidence_recall,
    normalize_answer,
)
from eval.systems import SYSTEMS

from .world import World, generate


# ---- metrics ------------------------------------------------------------------------------------
def test_squad_normalisation_and_em() -> None:
    assert normalize_answer("The  Bank of England.") == "bank of england"
    assert answer_em("the Bank of England", ["Bank of England"]) == 1.0
    assert answer_em("Bank", ["Bank of England", "BoE"]) == 0.0


def test_f1_by_hand() -> None:
    # prediction "new york city" vs gold "new york": common 2, precision 2/3, recall 1 -> F1 0.8
    assert answer_f1("New York City", ["New York"]) == pytest.approx(0.8)
    # best over golds; no overlap -> 0
    assert answer_f1("Paris", ["London", "Paris, France"]) == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert answer_f1("Rome", ["Paris"]) == 0.0
    assert answer_f1("", ["Paris"]) == 0.0


def test_evidence_recall_by_hand() -> None:
    golds = ["Revenue was $4.1 billion in the quarter.", "Margins rose to 12%."]
    context = ["Acme: Revenue was $4.1 billion in the quarter. Costs fell.", "Unrelated text."]
    assert evidence_found(golds[0], context)
    assert not evidence_found(golds[1], context)
    assert evidence_recall(golds, context) == 0.5
    # a context piece that is most of the gold sentence counts (splitters differ at the edges)
    assert evidence_found(
        "Revenue was $4.1 billion in the quarter, up 3%.", ["Revenue was $4.1 billion in the quarter"]
    )
    assert evidence_recall([], context) == 0.0


def test_abstain_scores_by_hand() -> None:
    abstained = [True, True, False, False, True]
    unanswerable = [True, False, True, False, True]
    precision, recall = abstain_scores(abstained, unanswerable)
    assert precision == pytest.approx(2 / 3) and recall == pytest.approx(2 / 3)
    assert abstain_scores([False], [False]) == (0.0, 0.0)


def test_judge_parses_yes_and_no_and_gives_none_otherwise() -> None:
    prompts: list[str] = []

    def judge(prompt: str) -> str:
        prompts.append(prompt)
        return "Yes." if "Paris" in prompt.split("Predicted answer:")[1] else "no"

    assert judge_answer(judge, "Capital of France?", ["Paris"], "Paris") == 1.0
    assert judge_answer(judge, "Capital of France?", ["Paris"], "Lyon") == 0.0
    assert judge_answer(lambda p: "maybe", "q", ["a"], "b") is None
    assert "Capital of France?" in prompts[0] and "Paris" in prompts[0]


# ---- loaders on tiny samples ----------------------------------------------------------------------
def _ectqa_sample(folder: Path) -> Path:
    folder.mkdir()
    records = [
        {
            "company_name": "Orbit Tiles Inc.",
            "stock_code": "ORBT",
            "sector": "industrials",
            "year": "2024",
            "quarter": f"q{q}",
            "URL": "",
            "raw_content": f"Orbit Tiles\nQ{q} 2024 Earnings Call\nMay 0{q}, 2024\n",
            "cleaned_content": f"Revenue was ${100 + q} million in the quarter. Gross margin was {30 + q}%.",
            "token_count": 20,
        }
        for q in (1, 2)
    ]
    with gzip.open(folder / "corpus.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    questions = [
        {
            "question": "What was Orbit Tiles Inc.'s revenue in 2024-Q2?",
            "answer": "$102 million",
            "reasoning_type": "enumeration",
            "question_type": "single-time query",
            "num_hops": 1,
            "evidence_list": [
                {
                    "company_name": "Orbit Tiles Inc.",
                    "year": "2024",
                    "quarter": "q2",
                    "evidence": "Revenue was $102 million in the quarter.",
                    "ect_filename": "industrials-ORBT-2024-q2.json",
                }
            ],
        },
        {
            "question": "What was Orbit Tiles Inc.'s revenue in 2026-Q1?",
            "answer": "unanswerable",
            "reasoning_type": "unanswerable|out-of-scope",
            "question_type": "single-time query",
            "num_hops": 1,
            "evidence_list": [],
        },
    ]
    (folder / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    return folder


def test_ectqa_loader_and_slices(tmp_path: Path) -> None:
    dataset = load_dataset("ectqa", data=_ectqa_sample(tmp_path / "ect"))
    assert [label for label, _ in dataset.slices] == ["2024-Q1", "2024-Q2"]
    answerable, unanswerable = dataset.items
    assert answerable.golden_answers == ("$102 million",) and answerable.metadata["type"] == "enumeration"
    assert answerable.metadata["evidence_docs"] == ["industrials-ORBT-2024-q2.json"]
    assert dataset.slice_of(answerable) == 1 and dataset.slice_of(unanswerable) == 0
    assert not unanswerable.answerable and unanswerable.metadata["type"] == "unanswerable"


def test_timeqa_loader(tmp_path: Path) -> None:
    pages = [
        {
            "index": "/wiki/Vela_Club#P54",
            "type": "P54",
            "link": "/wiki/Vela_Club",
            "paras": ["Vela Club", "In 1990 , Ana Ruiz coached the club . She left in 1994 ."],
            "questions": [
                [
                    "Who coached Vela Club from 1990 to 1993?",
                    [{"para": 1, "from": 10, "end": 18, "answer": "Ana Ruiz"}],
                ],
                [
                    "Who coached Vela Club from 2001 to 2002?",
                    [{"para": 1, "from": 0, "end": 0, "answer": ""}],
                ],
            ],
        }
    ]
    path = tmp_path / "pages.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump(pages, fh)
    docs, items = timeqa.load(path)
    assert len(docs) == 1 and docs[0].subject == "Vela Club"
    assert items[0].golden_answers == ("Ana Ruiz",) and items[0].evidence == (
        "In 1990 , Ana Ruiz coached the club .",
    )
    assert not items[1].answerable and items[1].metadata["type"] == "unanswerable"


def test_flashrag_round_trip_and_other_questions_file(tmp_path: Path) -> None:
    items = [
        QAItem("a", "Who?", ("Ana",), ("Ana came.",), {"type": "point"}),
        QAItem("b", "When?", (), (), {}),
    ]
    flashrag.save_questions(items, tmp_path / "q.jsonl")
    assert flashrag.load_questions(tmp_path / "q.jsonl") == items
    world = generate(seed=3)
    flashrag.save_corpus(world.documents[:3], tmp_path / "corpus.jsonl")
    docs = flashrag.load_corpus(tmp_path / "corpus.jsonl")
    assert [d.text for d in docs] == [d.text for d in world.documents[:3]]
    assert [d.subject for d in docs] == [d.subject for d in world.documents[:3]]
    # --questions FILE: another questions file over the same corpus
    dataset = load_dataset("ectqa", data=_ectqa_sample(tmp_path / "ect"), questions=tmp_path / "q.jsonl")
    assert [i.id for i in dataset.items] == ["a", "b"]
    (tmp_path / "q.jsonl").write_text('{"no question": 1}\n')
    with pytest.raises(ValueError, match=r"q\.jsonl:1"):
        flashrag.load_questions(tmp_path / "q.jsonl")


def test_in_parts_and_by_period_partition_the_documents() -> None:
    parts = in_parts(10, 3)
    assert [ix for _, ix in parts] == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]
    world = generate(seed=3)
    slices = by_period(world.documents)
    assert sorted(i for _, ix in slices for i in ix) == list(range(len(world.documents)))
    assert [label for label, _ in slices] == sorted(label for label, _ in slices)


# ---- protocols and report -------------------------------------------------------------------------
def _small_dataset() -> Dataset:
    world: World = generate(seed=11, years=(2024,), companies=2)
    items = []
    for n, q in enumerate(world.questions):
        # the document that first stated the evidence (documents are in publication order)
        keys = [d.key for d in world.documents if q.evidence and q.evidence in d.text][:1]
        items.append(
            QAItem(
                f"w{n}",
                q.text,
                (q.answer,) if q.answer else (),
                (q.evidence,) if q.evidence else (),
                {"type": q.kind, "evidence_docs": keys},
            )
        )
    return Dataset("tests-world", world.documents, items, by_period(world.documents))


@pytest.fixture(scope="module")
def small() -> Dataset:
    return _small_dataset()


def test_static_protocol_metrics_and_types(small: Dataset) -> None:
    system = SYSTEMS.create("tgrag")
    try:
        result = protocols.static(system, small, budget=256)
    finally:
        system.close()
    overall = result["overall"]
    assert overall["questions"] == len(small.items)
    assert overall["answer_em"] == 1.0 and overall["evidence_recall"] == 1.0  # the small world is easy
    assert overall["abstain_recall"] == 1.0
    assert set(result["by_type"]) == {"point", "role", "out_of_time", "unknown_entity"}
    assert len(result["latency_ms"]) == len(small.items) and all(ms > 0 for ms in result["latency_ms"])


def test_incremental_protocol_tracks_slices_and_stability(small: Dataset) -> None:
    result = protocols.incremental(lambda: SYSTEMS.create("tgrag"), small, budget=256)
    slices = result["slices"]
    assert [s["label"] for s in slices] == [label for label, _ in small.slices]
    asked = [s["so_far"]["questions"] for s in slices]
    assert asked == sorted(asked) and asked[-1] == len(small.items)  # more questions as more is known
    assert slices[0]["earlier"] is None and slices[-1]["earlier"]["answers_changed"] == 0
    assert all(s["so_far"]["evidence_recall"] == 1.0 for s in slices)
    assert result["update_seconds"] > 0 and result["rebuild_seconds"] > result["update_seconds"] / len(slices)


def test_as_of_protocol_shows_leakage_of_timeless_baselines(small: Dataset) -> None:
    outcomes = {}
    for name in ("tgrag", "bm25"):
        system = SYSTEMS.create(name)
        try:
            outcomes[name] = protocols.as_of(system, small, budget=256)
        finally:
            system.close()
    assert outcomes["tgrag"]["before_publication"]["leakage"] == 0.0
    assert outcomes["bm25"]["before_publication"]["leakage"] > 0.5
    assert outcomes["tgrag"]["overall"]["evidence_recall"] == 1.0


def test_report_files(small: Dataset, tmp_path: Path) -> None:
    from eval.__main__ import run

    results = run(small, ["tgrag", "bm25"], "incremental", 256, quiet=True)
    results["command"] = "python -m eval run (test)"
    path = report.write(results, tmp_path / "out")
    data = json.loads(path.read_text())
    assert data["schema"] == report.SCHEMA and set(data["systems"]) == {"tgrag", "bm25"}
    for key in (
        "evidence_recall",
        "answer_em",
        "answer_f1",
        "abstain_precision",
        "abstain_recall",
        "latency_ms_p50",
        "latency_ms_p95",
    ):
        assert key in data["systems"]["tgrag"]["overall"]
    assert "update_seconds" in data["systems"]["tgrag"] and "ingest_seconds" in data["systems"]["tgrag"]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Overall" in text and "## Slices: tgrag" in text and "by question type" in text
    for png in ("latency.png", "metrics_per_slice.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (tmp_path / "out" / "outcomes.jsonl").read_text().splitlines()
    assert len(lines) == 2 * len(small.items)


def test_command_line_run_world_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from eval.__main__ import main
    from tgrag.cli import main as tgrag_main

    assert main(["world", "--scale", "tiny", "--seed", "2", "--out", str(tmp_path / "w")]) == 0
    assert (tmp_path / "w" / "documents.jsonl").exists()
    out = tmp_path / "run"
    args = [
        "run",
        "--dataset",
        "world",
        "--data",
        str(tmp_path / "w"),
        "--systems",
        "tgrag,bm25",
        "--protocol",
        "static",
        "--budget",
        "128",
        "--out",
        str(out),
        "-q",
    ]
    assert tgrag_main(["eval", *args]) == 0  # the same harness through the tgrag command
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == str(out / "results.json")
    data = json.loads((out / "results.json").read_text())
    assert data["dataset"]["name"] == "world" and data["command"].startswith("python -m eval run")
    assert data["systems"]["tgrag"]["overall"]["questions"] == data["dataset"]["questions"]
    assert (
        main(["export", "--dataset", "world", "--data", str(tmp_path / "w"), "--out", str(tmp_path / "fr")])
        == 0
    )
    exported = flashrag.load_questions(tmp_path / "fr" / "questions.jsonl")
    assert len(exported) == data["dataset"]["questions"] and any(q.evidence for q in exported)
    with pytest.raises(SystemExit):
        main(["run", "--dataset", "ectqa", "--out", str(tmp_path / "x")])  # --data is required


def test_llm_judge_through_any_llm_backend_and_the_agent_system(tmp_path: Path) -> None:
    """``--judge SPEC`` scores answers with an LLM from the registry; ``tgrag-agent`` runs ``ask``."""
    from eval.__main__ import main
    from tgrag.llm import LLMS, Generation, Usage

    prompts: list[str] = []

    class ExactJudge:
        """Says yes exactly when the predicted answer is one of the gold answers."""

        name = "exact-judge"
        generative = True

        def chat(self, conversations, params=None):  # type: ignore[no-untyped-def]
            out = []
            for conv in conversations:
                prompt = conv[-1].content
                prompts.append(prompt)
                golds = prompt.split("Correct answers (any one is enough): ")[1].split("\n")[0].split(" | ")
                predicted = prompt.split("Predicted answer: ")[1].split("\n")[0]
                out.append(Generation("yes" if predicted in golds else "no", Usage(), "stop", self.name))
            return out

    if "exact-judge" not in LLMS.names():
        LLMS.register("exact-judge")(lambda arg, **kw: ExactJudge())
    assert main(["world", "--scale", "tiny", "--seed", "3", "--out", str(tmp_path / "w")]) == 0
    out = tmp_path / "run"
    argv = ["run", "--dataset", "world", "--data", str(tmp_path / "w"), "--systems", "tgrag,tgrag-agent"]
    assert main([*argv, "--budget", "256", "--judge", "exact-judge", "--out", str(out), "-q"]) == 0
    data = json.loads((out / "results.json").read_text())
    outcomes = [json.loads(line) for line in (out / "outcomes.jsonl").read_text().splitlines()]
    assert len(prompts) == sum(o["answerable"] for o in outcomes)  # one judgement per answerable question
    for name in ("tgrag", "tgrag-agent"):
        mine = [o for o in outcomes if o["system"] == name]
        judged = [o["llm_judge"] for o in mine if o["answerable"]]
        assert all(o["llm_judge"] is None for o in mine if not o["answerable"])
        # an exact string match is an exact match after normalisation too
        assert all(o["answer_em"] == 1.0 for o in mine if o["llm_judge"] == 1.0)
        assert data["systems"][name]["overall"]["llm_judge"] == pytest.approx(sum(judged) / len(judged))
        assert 0 < sum(judged) < len(judged), "the judge said yes to some answers and no to others"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["run", "--dataset", "world", "--scale", "huge", "--out", "{out}"], ["scale", "huge"]),
        (
            ["run", "--dataset", "world", "--scale", "tiny", "--systems", "tgrag,colbert", "--out", "{out}"],
            ["colbert"],
        ),
        (
            ["run", "--dataset", "world", "--scale", "tiny", "--judge", "gpt9", "--out", "{out}"],
            ["unknown llm"],
        ),
        (["run", "--dataset", "flashrag", "--data", "{bad}", "--out", "{out}"], ["FlashRAG"]),
        (["world", "--scale", "huge", "--out", "{out}"], ["--scale", "huge"]),
    ],
)
def test_harness_bad_input_is_one_line(tmp_path: Path, argv: list[str], words: list[str]) -> None:
    from eval.__main__ import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "no answers field is fine"}\n{"id": 2}\n')
    with pytest.raises(SystemExit) as exc:
        main([a.format(out=tmp_path / "out", bad=bad) for a in argv])
    message = str(exc.value.code)
    assert message.startswith("error: ") and "\n" not in message
    assert all(w in message for w in words), message
    assert not (tmp_path / "out" / "results.json").exists()
