"""Time-scoped retrieval: question -> scope -> candidates -> graph ranking -> evidence in a budget.

1. The question's time scope (at / before / after / between / relative to ``now``; none = all).
2. Facts visible to the query: stored by ``as_of`` (bi-temporal) and overlapping the scope.
3. Abstain, with a reason, when the question names only entities the store does not know, or
   nothing was observed in the scope and the scope lies outside the span the asked entities'
   documents cover.
4. Candidates: dense (faiss, filtered to the scope) plus BM25, fused.
5. Personalised PageRank over the scoped fact-entity graph, seeded by the question's entities and
   the best candidates; each fact's score is weighted by how much of its time lies in the scope.
6. Questions about several entities get each entity's best facts in turn, then the rest by score;
   evidence is packed greedily into the token budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

import numpy as np

from .config import RetrievalConfig
from .errors import InputError
from .extract.mentions import find_mentions
from .graph import personalized_pagerank, subgraph
from .model import Evidence, EvidenceKind, QueryScope, RetrievalResult
from .text import name_key
from .timex import parse_date, parse_query_scope
from .tokens import count_tokens_batch
from .workspace import Workspace

MAX_HUB_DEGREE = 500  # entities in more facts than this do not widen the graph around the candidates


@dataclass(frozen=True)
class _Ranked:
    rows: np.ndarray  # catalog rows, best first
    scores: np.ndarray
    relevance: np.ndarray  # relevance before graph and time weights, aligned with rows


def as_timestamp(as_of: datetime | date | None) -> float | None:
    """An as-of date means the end of that day: everything ingested on it is visible."""
    if as_of is None:
        return None
    if isinstance(as_of, datetime):
        return (as_of if as_of.tzinfo else as_of.replace(tzinfo=timezone.utc)).timestamp()
    end = datetime(as_of.year, as_of.month, as_of.day, tzinfo=timezone.utc).timestamp() + 86400.0
    return end - 1e-3


class TemporalRetriever:
    def __init__(self, ws: Workspace, config: RetrievalConfig | None = None) -> None:
        self.ws = ws
        self.config = config or ws.config.retrieval

    def retrieve(
        self,
        question: str,
        as_of: datetime | date | None = None,
        budget: int | None = None,
        now: date | None = None,
        scope: QueryScope | None = None,
    ) -> RetrievalResult:
        if not isinstance(question, str) or not question.strip():
            raise InputError("the question must be a non-empty string")
        as_of = _coerce_date(as_of, "as_of")
        now = _coerce_date(now, "now")
        if budget is not None and (not isinstance(budget, int) or budget <= 0):
            raise InputError(f"budget must be a positive number of tokens, not {budget!r}")
        self.ws.refresh_if_stale()
        cfg = self.config
        idx = self.ws.indexes
        scope = scope or parse_query_scope(question, now)
        as_of_dt = _as_datetime(as_of)
        budget = cfg.budget_tokens if budget is None else budget

        def abstain(reason: str, entities: tuple[str, ...] = ()) -> RetrievalResult:
            return RetrievalResult(question, scope, (), True, reason, entities, as_of_dt)

        catalog = idx.catalog
        visible = catalog.visible(as_timestamp(as_of))
        if not visible.any():
            when = f" as of {as_of_dt:%Y-%m-%d}" if as_of_dt else ""
            return abstain(f"the store holds no facts{when}")
        in_scope = visible & catalog.in_scope(scope.interval)

        mentions = [m.text for m in find_mentions(question)]
        query_vec, mention_vecs = self._embed(question, mentions)
        entity_ids, unknown = self._question_entities(question, mentions, mention_vecs)
        entity_names = tuple(idx.entity_names[e] for e in entity_ids if e in idx.entity_names)
        if mentions and not entity_ids:
            return abstain(f"the store knows nothing about {_join(unknown)}")
        reason = self._out_of_scope(scope, visible, in_scope, entity_ids, entity_names)
        if reason:
            return abstain(reason, entity_names)

        ranked = self._rank(question, scope, query_vec, in_scope, entity_ids)
        if len(ranked.rows) == 0 or ranked.relevance.max(initial=0.0) < cfg.min_score:
            return abstain(f"nothing relevant {_describe(scope)}", entity_names)
        order = self._diversify(ranked, entity_ids)
        evidence = self._pack(order, ranked, scope, query_vec, budget)
        if not evidence:
            return abstain("no evidence fits the token budget", entity_names)
        return RetrievalResult(question, scope, tuple(evidence), False, "", entity_names, as_of_dt)

    # ---- steps ----------------------------------------------------------------------------------
    def _embed(self, question: str, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        vecs = self.ws.embedder.embed([question, *names])
        return vecs[0], vecs[1:]

    def _question_entities(
        self, question: str, mentions: list[str], mention_vecs: np.ndarray
    ) -> tuple[list[int], list[str]]:
        """Store entities the question names (by alias, or by a close embedding), and names it does not know."""
        idx = self.ws.indexes
        known = dict(idx.entities_in(question))
        unknown: list[str] = []
        for name, vec in zip(mentions, mention_vecs, strict=True):
            eid = idx.alias_keys.get(name_key(name))
            if eid is None:
                eid = self._similar_entity(vec)
            if eid is None:
                unknown.append(name)
            else:
                known.setdefault(eid, name)
        return list(known), unknown

    def _out_of_scope(
        self,
        scope: QueryScope,
        visible: np.ndarray,
        in_scope: np.ndarray,
        entity_ids: list[int],
        entity_names: tuple[str, ...],
    ) -> str:
        """Why the asked time has no data, or "" when it has some.

        Nothing observed (not forecast) in the asked time, and the asked time outside the span that
        the asked entities' documents cover at all. Inside that span a state that began earlier may
        still hold ("joined the league in 1954" answers "in 1997"), and documents name their subject
        in many ways ("Zé Pedro", "he"), hence documents rather than the entity's own facts.
        """
        if scope.unbounded:
            return ""
        catalog = self.ws.indexes.catalog
        observed = visible & catalog.observed()
        if entity_ids:
            observed &= catalog.same_documents(self._touches(entity_ids) & visible)
        if (observed & in_scope).any():
            return ""
        span = catalog.hull(observed)
        if span is not None and span.overlaps(scope.interval):
            return ""
        about = f" about {_join(entity_names)}" if entity_names else ""
        covers = f" (the store covers {span.label})" if span is not None and span.bounded else ""
        return f"no evidence in scope: nothing{about} observed {_describe(scope)}{covers}"

    def _similar_entity(self, vec: np.ndarray) -> int | None:
        index = self.ws.indexes.vectors["entity"]
        if len(index) == 0:
            return None
        scores, ids = index.search(vec[None, :], 1)
        if ids.shape[1] and ids[0, 0] >= 0 and scores[0, 0] >= self.ws.config.ingest.entity_similarity:
            return int(ids[0, 0])
        return None

    def _neighbourhood(
        self, candidates: np.ndarray, entity_ids: list[int], in_scope: np.ndarray
    ) -> np.ndarray:
        """Candidates, plus the scoped facts sharing an entity with them or naming a question entity.

        Walks restart with probability 1 - damping (0.5), so mass two hops out is small: the local
        graph ranks as the whole scoped graph would, at a fraction of the cost. Hub entities (a
        country named in thousands of facts) say little and would pull in everything; they link
        the facts that hold them but do not widen the neighbourhood.
        """
        catalog = self.ws.indexes.catalog
        by_entity = catalog.incidence_by_entity()
        degree = np.diff(by_entity.indptr)
        seeds = np.union1d(
            np.unique(catalog.incidence()[candidates].indices), np.asarray(entity_ids, dtype=np.int64)
        )
        seeds = seeds[(seeds < len(degree))]
        seeds = seeds[degree[seeds] <= MAX_HUB_DEGREE]
        keep = np.zeros(len(catalog), dtype=bool)
        if len(seeds):
            keep[by_entity[seeds].indices] = True
        keep &= in_scope
        keep[candidates] = True
        return np.flatnonzero(keep)

    def _touches(self, entity_ids: list[int]) -> np.ndarray:
        inc = self.ws.indexes.catalog.incidence()
        cols = [e for e in entity_ids if e < inc.shape[1]]
        if not cols:
            return np.zeros(inc.shape[0], dtype=bool)
        return np.asarray(inc[:, cols].sum(axis=1)).ravel() > 0

    def _rank(
        self,
        question: str,
        scope: QueryScope,
        query_vec: np.ndarray,
        in_scope: np.ndarray,
        entity_ids: list[int],
    ) -> _Ranked:
        cfg = self.config
        idx = self.ws.indexes
        catalog = idx.catalog
        k = cfg.candidates
        allowed = None if in_scope.all() else catalog.ids[in_scope]
        _, dense_ids = idx.vectors["fact"].search(query_vec, k, allowed)
        dense_rows = catalog.rows_of(dense_ids[0][dense_ids[0] >= 0])
        lexical_query = question.replace(scope.text, " ") if scope.text else question
        bm25 = idx.lexical.scores(lexical_query)
        bm25 = np.where(in_scope, bm25, 0.0)
        lex_rows = np.argsort(-bm25)[:k]
        lex_rows = lex_rows[bm25[lex_rows] > 0]
        candidates = np.union1d(dense_rows[dense_rows >= 0], lex_rows)
        if len(candidates) == 0:
            return _Ranked(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))

        # The graph: the scoped facts around the candidates and the question's entities.
        scoped_rows = self._neighbourhood(candidates, entity_ids, in_scope)
        relevance_all = np.zeros(len(catalog))
        cand_vecs = idx.vectors["fact"].vectors(catalog.ids[candidates])  # type: ignore[attr-defined]
        dense = cand_vecs @ query_vec
        lex = bm25[candidates]
        lex_norm = lex / lex.max() if lex.max() > 0 else lex
        relevance = cfg.dense_weight * dense + cfg.lexical_weight * lex_norm
        relevance += self._context(candidates, query_vec, lexical_query)
        relevance_all[candidates] = relevance
        inc, cols = subgraph(catalog.incidence(), scoped_rows)
        fact_seed = np.clip(relevance_all[scoped_rows], 0.0, None) ** 2
        entity_seed = np.zeros(len(cols))
        if entity_ids:
            positions = np.searchsorted(cols, entity_ids)
            valid = (positions < len(cols)) & (cols[np.minimum(positions, len(cols) - 1)] == entity_ids)
            entity_seed[positions[valid]] = fact_seed.sum() / max(int(valid.sum()), 1)
        ppr, _ = personalized_pagerank(inc, fact_seed, entity_seed, cfg.ppr_damping, cfg.ppr_iterations)
        ppr_norm = ppr / ppr.max() if ppr.max() > 0 else ppr

        # Facts the walk found that neither search did join the candidates (with their dense score).
        extra = scoped_rows[np.argsort(-ppr_norm)[:k]]
        extra = np.setdiff1d(extra, candidates)
        if len(extra):
            extra_vecs = idx.vectors["fact"].vectors(catalog.ids[extra])  # type: ignore[attr-defined]
            relevance_all[extra] = (
                cfg.dense_weight * (extra_vecs @ query_vec)
                + cfg.lexical_weight * (bm25[extra] / lex.max() if lex.max() > 0 else 0.0)
                + self._context(extra, query_vec, lexical_query)
            )
            candidates = np.concatenate([candidates, extra])
        graph_all = np.zeros(len(catalog))
        graph_all[scoped_rows] = ppr_norm
        time_weight = (
            np.ones(len(candidates))
            if scope.unbounded
            else catalog.time_weight(scope.interval, cfg.undated_time_weight)[candidates]
        )
        base = relevance_all[candidates] + cfg.graph_weight * graph_all[candidates]
        scores = base * time_weight
        order = np.argsort(-scores, kind="stable")
        return _Ranked(candidates[order], scores[order], relevance_all[candidates][order])

    def _context(self, rows: np.ndarray, query_vec: np.ndarray, lexical_query: str) -> np.ndarray:
        """How well the passage each fact came from matches the question, by embedding and by BM25.

        A sentence often names neither the subject nor the time its neighbours do ("He then joined
        Os Belenenses"); its passage does.
        """
        chunks = self.ws.indexes.catalog.chunk[rows]
        lexical = self.ws.indexes.chunk_lexical.scores(lexical_query, chunks)
        return self.config.chunk_weight * self._chunk_similarity(chunks, query_vec) + (
            self.config.chunk_lexical_weight * lexical
        )

    def _chunk_similarity(self, chunks: np.ndarray, query_vec: np.ndarray) -> np.ndarray:
        """Similarity of the question to each chunk's vector (0 where unknown)."""
        index = self.ws.indexes.vectors["chunk"]
        wanted = np.unique(chunks[chunks >= 0])  # every chunk that yielded a fact has a vector
        if len(wanted) == 0:
            return np.zeros(len(chunks))
        sims = dict(zip(wanted.tolist(), (index.vectors(wanted) @ query_vec).tolist(), strict=True))  # type: ignore[attr-defined]
        return np.array([sims.get(int(c), 0.0) for c in chunks])

    def _diversify(self, ranked: _Ranked, entity_ids: list[int]) -> list[int]:
        """Positions into ``ranked``: for several entities, each one's best facts in turn."""
        n = len(ranked.rows)
        if len(entity_ids) < 2:
            return list(range(n))
        catalog = self.ws.indexes.catalog
        queues: list[list[int]] = [[] for _ in entity_ids]
        for pos, row in enumerate(ranked.rows):
            ents = catalog.entities[int(row)]
            for q, e in enumerate(entity_ids):
                if e in ents:
                    queues[q].append(pos)
        order: list[int] = []
        taken: set[int] = set()
        for depth in range(2):
            for queue in queues:
                for pos in queue[depth:]:
                    if pos not in taken:
                        order.append(pos)
                        taken.add(pos)
                        break
        order += [p for p in range(n) if p not in taken]
        return order

    def _pack(
        self, order: list[int], ranked: _Ranked, scope: QueryScope, query_vec: np.ndarray, budget: int
    ) -> list[Evidence]:
        idx = self.ws.indexes
        catalog = idx.catalog
        items: list[tuple[float, Evidence]] = []
        head = order[: max(64, budget // 8)]
        texts = [catalog.texts[int(ranked.rows[p])] for p in head]
        tokens = count_tokens_batch(texts)
        for p, text, n in zip(head, texts, tokens, strict=True):
            row = int(ranked.rows[p])
            items.append(
                (
                    float(ranked.scores[p]),
                    Evidence(
                        text=text,
                        time=catalog.time_of(row),
                        score=float(ranked.scores[p]),
                        kind=EvidenceKind.FACT,
                        doc_id=catalog.doc_ids[row],
                        source=idx.documents.get(catalog.doc_ids[row]),
                        item_id=f"fact:{int(catalog.ids[row])}",
                        subject=idx.entity_names.get(int(catalog.subject[row])),
                        tokens=n,
                    ),
                )
            )
        items = self._with_summaries(items, scope, query_vec, ranked)
        out: list[Evidence] = []
        used = 0
        seen: set[tuple[str, str]] = set()
        for _, ev in items:
            key = (ev.text, ev.time.label)
            if key in seen or used + ev.tokens > budget:
                continue
            seen.add(key)
            out.append(ev)
            used += ev.tokens
        return out

    def _with_summaries(
        self, items: list[tuple[float, Evidence]], scope: QueryScope, query_vec: np.ndarray, ranked: _Ranked
    ) -> list[tuple[float, Evidence]]:
        """Time-node summaries in scope compete with facts, at a discount: they help broad questions."""
        idx = self.ws.indexes
        # Only summaries that gather several facts: a one-fact summary repeats its fact.
        entries = idx.nodes_in(scope.interval) if not scope.unbounded else list(idx.nodes.values())
        entries = [e for e in entries if e.node.summary and len(e.node.summary_fact_ids) >= 3]
        if not entries or len(idx.vectors["node"]) == 0:
            return items
        nums = np.array([e.num for e in entries], dtype=np.int64)
        scores, found = idx.vectors["node"].search(query_vec, min(3, len(nums)), nums)
        by_num = {e.num: e for e in entries}
        top_fact = ranked.scores[0] if len(ranked.scores) else 0.0
        extra: list[tuple[float, Evidence]] = []
        texts = []
        for s, num in zip(scores[0], found[0], strict=True):
            if num < 0:
                continue
            node = by_num[int(num)].node
            score = float(s) * self.config.summary_weight * (1.0 + self.config.graph_weight)
            if score < 0.5 * top_fact:
                continue
            texts.append(f"Summary of {node.id}: {node.summary}")
            extra.append(
                (
                    score,
                    Evidence(
                        texts[-1],
                        node.interval,
                        score,
                        EvidenceKind.SUMMARY,
                        None,
                        None,
                        f"summary:{node.id}",
                    ),
                )
            )
        if not extra:
            return items
        tokens = count_tokens_batch(texts)
        pending = sorted(
            ((s, _with_tokens(ev, n)) for (s, ev), n in zip(extra, tokens, strict=True)), key=lambda p: -p[0]
        )
        # Keep the (diversified) fact order; a summary goes in before the first fact it outscores.
        merged: list[tuple[float, Evidence]] = []
        for item in items:
            while pending and pending[0][0] > item[0]:
                merged.append(pending.pop(0))
            merged.append(item)
        return merged + pending


def _with_tokens(ev: Evidence, n: int) -> Evidence:
    return Evidence(ev.text, ev.time, ev.score, ev.kind, ev.doc_id, ev.source, ev.item_id, ev.subject, n)


def _coerce_date(value: object, name: str) -> datetime | date | None:
    """Dates may come as date, datetime or an ISO-like string; anything else is the caller's error."""
    if value is None or isinstance(value, (date, datetime)):
        return value
    if isinstance(value, str):
        try:
            return parse_date(value)
        except ValueError as exc:
            raise InputError(f"{name}: {exc}") from None
    raise InputError(
        f"{name} must be a date, a datetime or a string like 2024-06-30, not {type(value).__name__}"
    )


def _as_datetime(as_of: datetime | date | None) -> datetime | None:
    ts = as_timestamp(as_of)
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)


def _join(names: tuple[str, ...] | list[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _describe(scope: QueryScope) -> str:
    iv = scope.interval
    if scope.unbounded:
        return "in the store"
    if iv.start is None:
        return f"before {iv.end}"
    if iv.end is None:
        return f"from {iv.start} on"
    return f"in {iv.label}" if iv.label and ".." not in iv.label else f"between {iv.start} and {iv.end}"
