"""benchmarks/memory_bank.py runs end to end (its --tiny mode: synthetic drifting vectors, no model
or data) and reports the keys issue 7 asks for, with sane values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = (
    "bytes_per_vector_ratio",
    "recall_at_10",
    "recall_at_10_frozen",
    "recall_at_10_retrained",
    "upkeep_seconds",
    "retrain_seconds",
)


def test_memory_benchmark_tiny_reports_issue_keys(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "memory_bank.py"), "--tiny", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    last = json.loads(run.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == last
    for key in KEYS:
        assert isinstance(last[key], (int, float)), key
    assert abs(last["bytes_per_vector_ratio"] - 16 / 1536) < 1e-4  # 16 one-byte codes of 384 float32
    for key in ("recall_at_10", "recall_at_10_frozen", "recall_at_10_retrained"):
        assert 0.5 <= last[key] <= 1.0, (key, last[key])
    assert last["upkeep_seconds"] > 0 and last["retrain_seconds"] > 0
    rows = last["streams"]["synthetic"]["slices"]
    assert [r["n"] for r in rows] == sorted(r["n"] for r in rows) and len(rows) == 3
    for row in rows:  # every method measured on every slice, the re-rank never hurting recall much
        assert set(row["recall_at_10"]) == {"ours", "ours_stream", "pq_frozen", "pq_retrained"}
        for method, value in row["recall_at_10"].items():
            assert value >= row["recall_at_10_no_rerank"][method] - 0.05
    assert set(last["targets"]) >= {"bytes_at_most_1.1pct", "upkeep_share_of_retrain"}
