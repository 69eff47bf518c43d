"""Times every op in kernels/ against its baselines in one run and prints a table and the device.

    python benchmarks/kernels.py            # full shapes (the issue's targets; needs a GPU)
    python benchmarks/kernels.py --quick    # under 3 minutes; last line: one JSON object

Each op's cases live in benchmarks/kernel_ops/<op>.py (``bench(quick) -> OpResult``). Without
CUDA the Triton kernels cannot run at speed: the script still times the references and reports
``null`` for the kernel figures.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The repository root goes first: this script's own name would otherwise shadow the package.
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from kernel_ops.timing import OpResult, device_name, fmt_rows  # noqa: E402
from report import emit, run_info  # noqa: E402

OPS = ("pq_scan", "prefix_linear_attention", "headwise_rnn", "attention_scan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, few repetitions")
    parser.add_argument("--ops", default=",".join(OPS), help="comma-separated subset of " + ",".join(OPS))
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args(argv)
    ops = [o for o in args.ops.split(",") if o]
    unknown = sorted(set(ops) - set(OPS))
    if unknown:
        parser.error(f"unknown ops: {', '.join(unknown)}")
    result: dict[str, Any] = {**run_info(args.quick), "device": device_name()}
    print(f"device: {result['device']}")
    for op in ops:
        module = importlib.import_module(f"kernel_ops.{op}")
        res: OpResult = module.bench(args.quick)
        print(fmt_rows(res.rows))
        for note in res.notes:
            print(f"  note: {note}")
        result[f"speedup_{op}"] = res.speedup
        result[f"baseline_{op}"] = res.baseline
        result[f"achieved_fraction_of_floor_{op}"] = res.achieved_fraction_of_floor
    emit(result, args.out)


if __name__ == "__main__":
    main()
