"""The ``tgrag`` command: ingest, query, ask, stats, delete, serve, demo.

Errors print as one line (``error: ...``) with exit status 2; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from .errors import InputError, TGRAGError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tgrag", description="Temporal RAG over knowledge that changes with time."
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    sub = p.add_subparsers(dest="command", required=True)

    ing = sub.add_parser("ingest", help="add documents to a store")
    ing.add_argument("--store", required=True, type=Path)
    ing.add_argument("--format", default="jsonl", choices=["jsonl", "ectqa", "timeqa", "text"])
    ing.add_argument(
        "--ingested-at", help="record this as the ingest time (for as-of replays), e.g. 2024-05-07"
    )
    ing.add_argument("--json", action="store_true", help="print the report as JSON")
    ing.add_argument(
        "--vector-index",
        help="vector index to build and keep: faiss-flat (exact) or codebook[:OPTIONS] (compressed, "
        "about 1%% of float32; e.g. codebook:m=16,rerank=100). Later commands use the store's choice.",
    )
    ing.add_argument("paths", nargs="+", type=Path)

    for name, helptext in (("query", "show the evidence for a question"), ("ask", "answer a question")):
        q = sub.add_parser(name, help=helptext)
        q.add_argument("--store", required=True, type=Path)
        q.add_argument("--as-of", help="only what had been ingested by this date")
        q.add_argument("--now", help="the date that 'last quarter' is relative to (default: today)")
        q.add_argument("--budget", type=int, help="evidence token budget")
        q.add_argument("--json", action="store_true")
        if name == "ask":
            q.add_argument(
                "--llm", help="LLM spec: extractive (default), openai:URL#model, vllm:PATH, transformers:PATH"
            )
            q.add_argument("--max-iter", type=int, help="retrieval rounds of the Auto-RAG loop (default 4)")
            q.add_argument("--trace", action="store_true", help="also print the loop's queries and passages")
        q.add_argument("question", nargs="+")

    st = sub.add_parser("stats", help="counts of documents, facts, entities, time nodes")
    st.add_argument("--store", required=True, type=Path)
    st.add_argument("--check", action="store_true", help="also run SQLite's integrity check")
    st.add_argument("--json", action="store_true")

    de = sub.add_parser("delete", help="remove a document (by id or key) and the facts only it stated")
    de.add_argument("--store", required=True, type=Path)
    de.add_argument("--json", action="store_true")
    de.add_argument("doc_ids", nargs="+")

    sv = sub.add_parser("serve", help="an OpenAI-compatible HTTP API over a store (docs/server.md)")
    sv.add_argument("--store", required=True, type=Path)
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--llm", help="upstream LLM spec: other model names pass through to it, and RAG uses it")
    sv.add_argument(
        "--api-key-file", type=Path, help="bearer keys, one a line (also: the TGRAG_API_KEY variable)"
    )
    sv.add_argument("--max-iter", type=int, help="Auto-RAG iterations when a request names none")
    sv.add_argument("--budget", type=int, help="evidence token budget when a request names none")
    sv.add_argument("--max-request-bytes", type=int, default=8 * 1024 * 1024, help="larger bodies get 413")
    sv.add_argument("--no-access-log", action="store_true", help="do not log each request (benchmarks)")

    ev = sub.add_parser(
        "eval", help="the evaluation harness (python -m eval): tgrag eval run --help", add_help=False
    )
    ev.add_argument("rest", nargs=argparse.REMAINDER)

    demo = sub.add_parser(
        "demo", help="ingest a small corpus in time slices and answer time-sensitive questions"
    )
    demo.add_argument("--store", type=Path, help="keep the demo store here (default: a temporary folder)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.DEBUG if args.debug else (logging.ERROR if args.quiet else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(_COMMANDS[args.command](args) or 0)
    except TGRAGError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; committed batches are kept, run the command again to finish", file=sys.stderr)
        return 130
    except sqlite3.DatabaseError as exc:  # damage inside the database that opening did not reach
        if args.debug:
            raise
        print(
            f"error: the database of store {getattr(args, 'store', None)} is damaged ({exc}). Restore it from "
            "a backup, or move it aside and ingest the documents again.",
            file=sys.stderr,
        )
        return 2
    except Exception as exc:  # a bug: say so in one line, keep the traceback for --debug
        if args.debug:
            raise
        print(
            f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr
        )
        return 1


def _open(store: Path, must_exist: bool = True, vector_index: str | None = None):
    from .config import Config
    from .sdk import TemporalRAG

    if must_exist and not (store / "store.sqlite").exists():
        raise InputError(f"no store at {store} (create one with: tgrag ingest --store {store} FILES)")
    return TemporalRAG.open(store, Config(vector_index=vector_index))


def _date_arg(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    from .timex import parse_date

    try:
        return parse_date(value)
    except ValueError as exc:
        raise InputError(f"{name}: {exc}") from None


def _cmd_ingest(args: argparse.Namespace) -> int:
    from .readers import read_documents

    skipped: list[tuple[str, str]] = []

    def on_skip(where: str, reason: str) -> None:
        skipped.append((where, reason))
        logging.getLogger("tgrag.readers").warning("skipped %s: %s", where, reason)

    for path in args.paths:
        if not path.exists():
            raise InputError(f"no such file: {path}")
    ingested = _date_arg(args.ingested_at, "--ingested-at")
    at = datetime(ingested.year, ingested.month, ingested.day) if ingested else None
    with _open(args.store, must_exist=False, vector_index=args.vector_index) as rag:
        bar = _progress(args, "documents")
        try:
            report = rag.ingest(
                read_documents(args.format, args.paths, on_skip),
                ingested_at=at,
                progress=bar.update if bar else None,
            )
        finally:
            if bar:
                bar.close()
        stats = rag.stats()
    out = {
        "added": len(report.added),
        "skipped": len(report.skipped) + len(skipped),
        "skip_reasons": [
            f"{s.doc_id or s.position}: {s.reason}"
            for s in report.skipped
            if s.reason != "already in the store"
        ]
        + [f"{w}: {r}" for w, r in skipped],
        "already_stored": sum(1 for s in report.skipped if s.reason == "already in the store"),
        "facts_created": report.facts_created,
        "facts_merged": report.facts_merged,
        "entities_created": report.entities_created,
        "summaries_recomputed": report.summaries_recomputed,
        "seconds": round(report.seconds, 2),
        "store": stats,
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"added {out['added']} documents ({out['already_stored']} already stored, "
            f"{out['skipped'] - out['already_stored']} skipped) in {out['seconds']} s: "
            f"{report.facts_created} new facts, {report.facts_merged} merged, {report.entities_created} new entities, "
            f"{report.summaries_recomputed} summaries recomputed"
        )
        for line in out["skip_reasons"][:20]:
            print(f"  skipped {line}")
        print(
            f"store: {stats['documents']} documents, {stats['facts']} facts, {stats['entities']} entities, "
            f"{stats['time_nodes']} time nodes"
        )
    return 0


def _progress(args: argparse.Namespace, unit: str):
    if args.quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(unit=f" {unit}", file=sys.stderr)


def _cmd_query(args: argparse.Namespace, answer: bool = False) -> int:
    question = " ".join(args.question).strip()
    if not question:
        raise InputError("the question is empty")
    as_of = _date_arg(args.as_of, "--as-of")
    now = _date_arg(args.now, "--now")
    if args.budget is not None and args.budget <= 0:
        raise InputError("--budget must be a positive number of tokens")
    if answer and args.max_iter is not None and args.max_iter < 1:
        raise InputError("--max-iter must be at least 1")
    with _open(args.store) as rag:
        if answer:
            asked = rag.ask(
                question, as_of=as_of, budget=args.budget, now=now, llm=args.llm, max_iter=args.max_iter
            )
        else:
            result = rag.retrieve(question, as_of=as_of, budget=args.budget, now=now)
    if answer:
        if args.json:
            print(json.dumps({**_plain(asked.answer), "trace": _plain(asked.trace)}, indent=2))
        else:
            print(format_answer(asked.answer))
            if args.trace:
                print(format_trace(asked.trace))
    elif args.json:
        print(json.dumps(_plain(result), indent=2))
    else:
        print(format_retrieval(result))
    return 0


def format_retrieval(result: Any) -> str:
    lines = [f"scope: {result.scope.interval.label} ({result.scope.relation})"]
    if result.abstained:
        lines.append(f"abstained: {result.reason}")
    for i, ev in enumerate(result.evidence, 1):
        lines.append(f"{i:2d}. [{ev.time.label}] {ev.text}  ({ev.source or ev.doc_id}, score {ev.score:.3f})")
    return "\n".join(lines)


def format_answer(answer: Any) -> str:
    lines = [f"answer: {answer.text}"]
    for c in answer.citations:
        lines.append(f"  - [{c.time}] {c.text}  ({c.source or c.doc_id})")
    return "\n".join(lines)


def format_trace(trace: Any) -> str:
    lines = [f"trace: {trace.iterations} retrieval(s), finished by {trace.finish_reason}"]
    for step in trace.steps:
        lines.append(
            f"  {step.iteration}. {step.action} {step.query!r}"
            if step.query
            else f"  {step.iteration}. answer"
        )
        lines += [f"       [{ev.time.label}] {ev.text}" for ev in step.passages]
    return "\n".join(lines)


def _plain(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return {k: _plain(v) for k, v in asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, (date, datetime)):
        return obj.isoformat()
    return obj


def _cmd_ask(args: argparse.Namespace) -> int:
    return _cmd_query(args, answer=True)


def _cmd_stats(args: argparse.Namespace) -> int:
    with _open(args.store) as rag:
        stats: dict[str, Any] = dict(rag.stats())
        if args.check:
            stats["integrity"] = rag.workspace.store.integrity_check()
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        for k, v in stats.items():
            print(f"{k:>14}: {v}")
    return 0 if stats.get("integrity", "ok") == "ok" else 2  # a failed check fails the command


def _cmd_delete(args: argparse.Namespace) -> int:
    results = []
    with _open(args.store) as rag:
        for doc_id in args.doc_ids:
            outcome = rag.delete(doc_id)
            if outcome is None:
                results.append({"doc_id": doc_id, "deleted": False, "reason": "no such document"})
            else:
                results.append(
                    {
                        "doc_id": outcome.doc_id,
                        "deleted": True,
                        "facts_removed": len(outcome.facts_removed),
                        "facts_kept": len(outcome.facts_kept),
                        "entities_removed": len(outcome.entities_removed),
                    }
                )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if r["deleted"]:
                print(
                    f"deleted {r['doc_id']}: {r['facts_removed']} facts removed, {r['facts_kept']} kept "
                    "(stated elsewhere too)"
                )
            else:
                print(f"not found: {r['doc_id']}")
    return 0 if all(r["deleted"] for r in results) else 2


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .server import ServerSettings, create_app, load_api_keys
    except ImportError as exc:
        raise InputError(
            f"tgrag serve needs the server extra ({exc.name} is missing): pip install 'tgrag[server]'"
        ) from None
    if not 0 <= args.port <= 65535:
        raise InputError("--port must be in 0..65535")
    try:
        settings = ServerSettings(
            host=args.host,
            port=args.port,
            api_keys=load_api_keys(args.api_key_file),  # read now, at startup, never at import
            max_request_bytes=args.max_request_bytes,
            llm=args.llm,
            default_budget=args.budget,
            max_iter=args.max_iter,
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    with _open(args.store) as rag:
        app = create_app(rag, settings)
        auth = f"{len(settings.api_keys)} API key(s)" if settings.auth_enabled else "no API keys"
        print(f"serving {args.store} on http://{args.host}:{args.port}/v1 ({auth})", file=sys.stderr)
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            # uvicorn's access log is one line a request, without headers: keys are never logged
            log_level="debug" if args.debug else ("warning" if args.quiet else "info"),
            access_log=not args.no_access_log,
        )
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    # The command line is the top of the stack, so it may reach the harness; the library never does.
    from eval.__main__ import main as eval_main

    return eval_main(args.rest)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.store)


_COMMANDS = {
    "ingest": _cmd_ingest,
    "query": _cmd_query,
    "ask": _cmd_ask,
    "stats": _cmd_stats,
    "delete": _cmd_delete,
    "demo": _cmd_demo,
    "serve": _cmd_serve,
    "eval": _cmd_eval,
}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
