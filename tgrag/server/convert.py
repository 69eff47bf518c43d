"""tgrag's results as response bodies: answers with citations and traces, evidence, ingest reports."""

from __future__ import annotations

from ..agent import AgentResult, AgentTrace
from ..ingest import IngestReport
from ..llm.base import Usage
from ..model import Answer, Evidence, RetrievalResult
from ..store.base import DeleteOutcome
from .schemas import (
    CitationOut,
    DeleteResponse,
    EvidenceOut,
    IngestResponse,
    RetrieveResponse,
    ScopeOut,
    SkippedOut,
    TGRAGExtension,
    TraceOut,
    TraceStepOut,
    UsageOut,
)


def usage_out(usage: Usage) -> UsageOut:
    return UsageOut(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def citations_out(answer: Answer) -> list[CitationOut]:
    return [
        CitationOut(id=c.item_id, text=c.text, time=c.time, source=c.source, doc_id=c.doc_id)
        for c in answer.citations
    ]


def trace_out(trace: AgentTrace) -> TraceOut:
    return TraceOut(
        iterations=trace.iterations,
        finish_reason=trace.finish_reason,
        steps=[
            TraceStepOut(
                iteration=s.iteration,
                action=s.action,
                query=s.query,
                thought=s.thought,
                passages=[p.item_id for p in s.passages],
            )
            for s in trace.steps
        ],
        usage=usage_out(trace.usage),
    )


def extension(result: AgentResult) -> TGRAGExtension:
    answer = result.answer
    return TGRAGExtension(
        citations=citations_out(answer),
        abstained=answer.abstained,
        reason=answer.reason,
        trace=trace_out(result.trace),
    )


def evidence_out(ev: Evidence) -> EvidenceOut:
    return EvidenceOut(
        id=ev.item_id,
        text=ev.text,
        time=ev.time.label,
        valid_from=ev.time.start.isoformat() if ev.time.start else None,
        valid_until=ev.time.end.isoformat() if ev.time.end else None,
        score=float(ev.score),
        kind=ev.kind.value,
        source=ev.source,
        doc_id=ev.doc_id,
        subject=ev.subject,
        tokens=ev.tokens,
    )


def retrieval_out(result: RetrievalResult) -> RetrieveResponse:
    scope = result.scope
    return RetrieveResponse(
        query=result.question,
        scope=ScopeOut(time=scope.interval.label, relation=scope.relation, text=scope.text),
        evidence=[evidence_out(ev) for ev in result.evidence],
        abstained=result.abstained,
        reason=result.reason,
        entities=list(result.entities),
        as_of=result.as_of.isoformat() if result.as_of else None,
    )


def ingest_out(report: IngestReport) -> IngestResponse:
    return IngestResponse(
        added=list(report.added),
        skipped=[
            SkippedOut(position=s.position, doc_id=s.doc_id, source=s.source, reason=s.reason)
            for s in report.skipped
        ],
        chunks=report.chunks,
        facts_created=report.facts_created,
        facts_merged=report.facts_merged,
        entities_created=report.entities_created,
        dirty_nodes=report.dirty_nodes,
        summaries_recomputed=report.summaries_recomputed,
        seconds=round(report.seconds, 3),
    )


def delete_out(outcome: DeleteOutcome) -> DeleteResponse:
    return DeleteResponse(
        id=outcome.doc_id,
        facts_removed=len(outcome.facts_removed),
        facts_kept=len(outcome.facts_kept),
        entities_removed=len(outcome.entities_removed),
    )
