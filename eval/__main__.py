"""``python -m eval`` (also ``tgrag eval``): run systems over a dataset under a protocol, write a report.

    python -m eval run --dataset ectqa --data ../shared/data/ect-qa-2024 --systems tgrag,dense,bm25 \
        --protocol incremental --budget 512 --out results/ectqa
    python -m eval world --scale small --seed 0 --out worlds/small      # generate and save a world
    python -m eval export --dataset timeqa --data FILE --out DIR        # FlashRAG jsonl (corpus + questions)

The last line ``run`` prints is the path of results.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from tgrag.errors import TGRAGError

from . import protocols, report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval", description="tgrag's evaluation harness")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run systems over a dataset and write a report")
    _dataset_args(run)
    run.add_argument(
        "--systems", default="tgrag,dense,bm25", help="comma-separated: tgrag, tgrag-agent[:LLM], dense, bm25"
    )
    run.add_argument("--protocol", default="static", choices=protocols.PROTOCOLS)
    run.add_argument(
        "--budget", type=int, default=512, help="evidence tokens per question, the same for every system"
    )
    run.add_argument(
        "--no-rebuild", action="store_true", help="incremental: skip the rebuild-from-scratch comparison"
    )
    run.add_argument(
        "--judge",
        metavar="LLM",
        help="also score answers with an LLM judge (llm_judge): an LLM spec, e.g. openai:URL#model",
    )
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    world = sub.add_parser("world", help="generate the evolving world and save it")
    world.add_argument("--scale", default="small")
    world.add_argument("--seed", type=int, default=0)
    world.add_argument("--out", type=Path, required=True)
    export = sub.add_parser(
        "export", help="write a dataset as FlashRAG jsonl (corpus.jsonl, questions.jsonl)"
    )
    _dataset_args(export)
    export.add_argument("--out", type=Path, required=True)
    return p


def _dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=["ectqa", "timeqa", "world", "flashrag"])
    p.add_argument(
        "--data", type=Path, help="the dataset's folder or file (world: a saved world, else generated)"
    )
    p.add_argument("--questions", type=Path, help="another questions file over the same corpus")
    p.add_argument("--scale", default="small", help="world: tiny, small, medium, large, xl")
    p.add_argument("--seed", type=int, default=0, help="world: the generator's seed")
    p.add_argument("--every", type=int, default=1, help="timeqa: keep every k-th page")
    p.add_argument("--parts", type=int, default=4, help="timeqa: slices for the incremental protocol")


def _load(args: argparse.Namespace) -> Any:
    from .datasets import load_dataset

    if args.dataset != "world" and args.data is None:
        raise SystemExit(f"error: --data is required for --dataset {args.dataset}")
    if args.data is not None and args.dataset != "world" and not args.data.exists():
        raise SystemExit(f"error: no such file or folder: {args.data}")
    return load_dataset(
        args.dataset,
        data=args.data,
        questions=args.questions,
        scale=args.scale,
        seed=args.seed,
        every=args.every,
        parts=args.parts,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.command == "world":
        from .datasets import world

        generated = world.generate(_world_config(args.scale, args.seed))
        world.save(generated, args.out)
        print(
            f"{len(generated.documents)} documents, {len(generated.questions)} questions, "
            f"{generated.fact_count()} facts -> {args.out}"
        )
        return 0
    try:  # bad input is one line on stderr, not a traceback
        dataset = _load(args)
        if args.command == "run":
            systems = _systems(args.systems)
            judge = llm_judge(args.judge) if args.judge else None
    except (ValueError, OSError, TGRAGError) as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.command == "export":
        from .datasets import flashrag

        args.out.mkdir(parents=True, exist_ok=True)
        flashrag.save_corpus(dataset.documents, args.out / "corpus.jsonl")
        flashrag.save_questions(dataset.items, args.out / "questions.jsonl")
        print(args.out / "questions.jsonl")
        return 0
    results = run(
        dataset,
        systems,
        args.protocol,
        args.budget,
        rebuild=not args.no_rebuild,
        quiet=args.quiet,
        judge=judge,
    )
    results["command"] = "python -m eval " + shlex.join(argv)
    path = report.write(results, args.out)
    print(path)
    return 0


def _world_config(scale: str, seed: int) -> Any:
    from dataclasses import replace

    from .datasets import world

    if scale not in world.SCALES:
        raise SystemExit(f"error: unknown --scale {scale!r}; known: {', '.join(world.SCALES)}")
    return replace(world.SCALES[scale], seed=seed)


def _systems(spec: str) -> list[str]:
    from .systems import SYSTEMS

    names = [s.strip() for s in spec.split(",") if s.strip()]
    for name in names:
        if name.partition(":")[0] not in SYSTEMS.names():
            raise ValueError(f"unknown system {name!r}; known: {', '.join(SYSTEMS.names())}")
    if not names:
        raise ValueError("--systems names no system")
    return names


def llm_judge(spec: str) -> Callable[[str], str]:
    """A judge (prompt -> reply) over any LLM backend; greedy and short, the reply is one word."""
    from tgrag.llm import GenerationParams, Message, chat_one, create_llm

    llm = create_llm(spec)
    params = GenerationParams(max_tokens=8, temperature=0.0)
    return lambda prompt: chat_one(llm, [Message("user", prompt)], params).text


def run(
    dataset: Any,
    systems: list[str],
    protocol: str,
    budget: int,
    rebuild: bool = True,
    quiet: bool = False,
    judge: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """Every system under one protocol over one dataset; the dict ``report.write`` turns into files."""
    from tqdm import tqdm

    from tgrag import __version__
    from tgrag.embed import create_embedder

    from .systems import SYSTEMS

    create_embedder("minilm").embed(["warm up"])  # loading the model is not ingest time
    results: dict[str, Any] = {
        "schema": report.SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "tgrag_version": __version__,
        "dataset": {
            "name": dataset.name,
            "documents": len(dataset.documents),
            "questions": len(dataset.items),
            "slices": [label for label, _ in dataset.slices],
            **dataset.source,
        },
        "protocol": protocol,
        "budget_tokens": budget,
        "systems": {},
    }
    for name in systems:
        asked = (
            len(dataset.items)
            * (len(dataset.slices) if protocol == "incremental" else 1)
            * (2 if protocol == "as-of" else 1)
        )
        with tqdm(total=asked, desc=name, unit=" questions", disable=quiet, file=sys.stderr) as bar:
            if protocol == "incremental":
                results["systems"][name] = protocols.incremental(
                    partial(SYSTEMS.create, name),
                    dataset,
                    budget,
                    judge=judge,
                    rebuild=rebuild,
                    progress=bar.update,
                )
            else:
                system = SYSTEMS.create(name)
                try:
                    fn = protocols.static if protocol == "static" else protocols.as_of
                    results["systems"][name] = fn(system, dataset, budget, judge=judge, progress=bar.update)
                finally:
                    system.close()
    return results


if __name__ == "__main__":
    sys.exit(main())
