"""What every benchmark records about its run, and how it reports: one place for the header
(machine, date, mode) and for the ending (the JSON file, written atomically, and the JSON line
printed last, which scripts and docs read)."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tgrag.fsutil import atomic_write_bytes


def run_info(quick: bool) -> dict[str, Any]:
    """The machine and date of this run, and whether it is the quick mode."""
    return {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "mode": "quick" if quick else "full",
    }


def emit(result: dict[str, Any], out: Path | None) -> None:
    """Write ``result`` to ``out`` (whole or not at all) when given; print it as the last line."""
    if out is not None:
        atomic_write_bytes(out, json.dumps(result, indent=2).encode())
    print(json.dumps(result), flush=True)
