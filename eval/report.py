"""Write a run's results: ``results.json`` (schema in docs/evaluation.md), ``outcomes.jsonl`` (one line
per question and system), ``report.md`` (tables per system, per question type, per slice) and PNG
plots (metrics per slice, latency distribution)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tgrag.fsutil import atomic_write_bytes

SCHEMA = 1
MAIN_METRICS = (
    "evidence_recall",
    "answer_em",
    "answer_f1",
    "abstain_precision",
    "abstain_recall",
    "latency_ms_p50",
    "latency_ms_p95",
)


def write(results: dict[str, Any], out: Path) -> Path:
    """Write every artefact into ``out``; returns the path of results.json."""
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, system in results["systems"].items():
        for outcome in system.pop("outcomes", []):
            lines.append(json.dumps({"system": name, **outcome}))
    atomic_write_bytes(out / "outcomes.jsonl", ("\n".join(lines) + "\n").encode())
    plots = _plots(results, out)
    results["plots"] = [p.name for p in plots]
    path = out / "results.json"
    atomic_write_bytes(path, json.dumps(results, indent=2, default=str).encode())
    atomic_write_bytes(out / "report.md", markdown(results).encode())
    return path


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return out


def markdown(results: dict[str, Any]) -> str:
    ds = results["dataset"]
    systems = results["systems"]
    lines = [
        f"# Evaluation: {ds['name']}, protocol `{results['protocol']}`, budget {results['budget_tokens']} tokens",
        "",
        f"- command: `{results['command']}`",
        f"- date: {results['created']}; machine: {results['machine']}; tgrag {results['tgrag_version']}",
        f"- data: {ds.get('data', '-')}; {ds['documents']} documents, {ds['questions']} questions, "
        f"{len(ds['slices'])} slices",
        "",
        "## Overall",
        "",
    ]
    header = ["system", *MAIN_METRICS, "ingest_seconds", "update_seconds"]
    rows = [
        [name, *(s["overall"].get(m) for m in MAIN_METRICS), s.get("ingest_seconds"), s.get("update_seconds")]
        for name, s in systems.items()
    ]
    lines += _table(header, rows)
    if any("llm_judge" in s["overall"] for s in systems.values()):
        lines += [
            "",
            *_table(
                ["system", "llm_judge"], [[n, s["overall"].get("llm_judge")] for n, s in systems.items()]
            ),
        ]
    types = sorted({t for s in systems.values() for t in s["by_type"]})
    for metric in ("evidence_recall", "answer_f1", "abstain_recall"):
        rows = [[t, *(systems[n]["by_type"].get(t, {}).get(metric) for n in systems)] for t in types]
        if any(v is not None for row in rows for v in row[1:]):
            lines += ["", f"## {metric} by question type", "", *_table(["type", *systems], rows)]
    for name, s in systems.items():
        if s.get("slices"):
            lines += ["", f"## Slices: {name}", ""]
            rows = [
                [
                    sl["label"],
                    sl["documents"],
                    sl["update_seconds"],
                    sl["rebuild_seconds"],
                    sl["so_far"]["questions"],
                    sl["so_far"]["evidence_recall"],
                    sl["so_far"]["answer_f1"],
                    (sl["earlier"] or {}).get("evidence_recall"),
                    (sl["earlier"] or {}).get("answer_f1"),
                    (sl["earlier"] or {}).get("answers_changed"),
                ]
                for sl in s["slices"]
            ]
            header = [
                "slice",
                "documents",
                "update s",
                "rebuild s",
                "questions so far",
                "evidence_recall",
                "answer_f1",
                "earlier: evidence_recall",
                "earlier: answer_f1",
                "earlier: answers changed",
            ]
            lines += _table(header, rows)
    if any("before_publication" in s for s in systems.values()):
        lines += ["", "## Asked the day before the evidence was published", ""]
        rows = [
            [n, s["before_publication"].get("leakage"), s["before_publication"].get("abstained")]
            for n, s in systems.items()
        ]
        lines += _table(["system", "leakage (evidence found)", "abstained"], rows)
    if results.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in results["plots"]]
    return "\n".join(lines) + "\n"


def _plots(results: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    systems = results["systems"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    data = [s.get("latency_ms") or [0.0] for s in systems.values()]
    ax.boxplot(data, showfliers=True)
    ax.set_xticks(range(1, len(systems) + 1), list(systems))
    ax.set_ylabel("retrieval latency (ms)")
    ax.set_yscale("log")
    ax.set_title(f"{results['dataset']['name']}: latency per question")
    fig.tight_layout()
    written.append(_save(fig, out / "latency.png"))
    plt.close(fig)
    if any(s.get("slices") for s in systems.values()):
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
        for name, s in systems.items():
            slices = s.get("slices") or []
            x = list(range(1, len(slices) + 1))
            axes[0].plot(
                x, [sl["so_far"]["evidence_recall"] or 0 for sl in slices], marker="o", label=f"{name} so far"
            )
            axes[0].plot(
                x,
                [(sl["earlier"] or {}).get("evidence_recall") or float("nan") for sl in slices],
                marker="x",
                linestyle="--",
                label=f"{name} earlier slices",
            )
            axes[1].plot(x, [sl["so_far"]["answer_f1"] or 0 for sl in slices], marker="o", label=name)
            axes[2].plot(x, [sl["update_seconds"] for sl in slices], marker="o", label=f"{name} update")
            if slices and slices[0]["rebuild_seconds"] is not None:
                axes[2].plot(
                    x,
                    [sl["rebuild_seconds"] for sl in slices],
                    marker="x",
                    linestyle="--",
                    label=f"{name} rebuild",
                )
        ticks = list(range(1, max(len(s.get("slices") or []) for s in systems.values()) + 1))
        for ax, title in zip(axes, ("evidence_recall", "answer_f1", "seconds per slice"), strict=True):
            ax.set_xticks(ticks)
            ax.set_xlabel("slice")
            ax.set_title(title)
            ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(_save(fig, out / "metrics_per_slice.png"))
        plt.close(fig)
    return written


def _save(fig: Any, path: Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())
    return path
