"""tgrag's own routes: add and remove documents, and retrieve evidence without an answer."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import FastAPI, Response

from .convert import delete_out, ingest_out, retrieval_out
from .errors import NOT_FOUND, APIError
from .schemas import DeleteResponse, IngestRequest, IngestResponse, RetrieveRequest, RetrieveResponse
from .state import State


async def add_documents(body: IngestRequest, state: State) -> IngestResponse:
    limit = state.settings.max_documents_per_request
    if len(body.documents) > limit:
        raise APIError(
            413,
            f"{len(body.documents)} documents in one request; the limit is {limit}: send them in batches",
            param="documents",
            code="too_many_documents",
        )
    if not body.documents:
        raise APIError(400, "documents must hold at least one document", param="documents")
    at = body.ingested_at
    if at is not None and not isinstance(at, datetime):
        at = datetime(at.year, at.month, at.day, tzinfo=timezone.utc)
    report = await state.store.call(state.rag.ingest, body.documents, at)
    return ingest_out(report)


async def delete_document(doc_id: str, state: State) -> DeleteResponse:
    outcome = await state.store.call(state.rag.delete, doc_id)
    if outcome is None:
        raise APIError(
            404, f"no document {doc_id!r} (give its id or key)", NOT_FOUND, "doc_id", "document_not_found"
        )
    return delete_out(outcome)


async def retrieve(body: RetrieveRequest, state: State, response: Response) -> RetrieveResponse:
    if body.budget is not None and body.budget > state.settings.max_budget:
        raise APIError(400, f"budget must be at most {state.settings.max_budget} tokens", param="budget")
    result, timing = await state.store.call_timed(
        state.rag.retrieve,
        body.query,
        as_of=body.as_of,
        budget=body.budget or state.settings.default_budget,
        now=body.now,
    )
    response.headers["Server-Timing"] = timing.header()
    return retrieval_out(result)


def install(app: FastAPI) -> None:
    app.add_api_route("/v1/documents", add_documents, methods=["POST"], response_model=IngestResponse)
    app.add_api_route(
        "/v1/documents/{doc_id:path}", delete_document, methods=["DELETE"], response_model=DeleteResponse
    )
    app.add_api_route("/v1/retrieve", retrieve, methods=["POST"], response_model=RetrieveResponse)
