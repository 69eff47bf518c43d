"""Speculative retrieval over the temporal store (``tgrag.fact_search.StoreRetriever``)."""

from __future__ import annotations

import re
import zlib
from datetime import date

import numpy as np
import pytest

from speculation import FixedStride, OS3Scheduler, RalmConfig, SpeculativeRetriever, baseline, speculative
from tgrag.errors import InputError
from tgrag.fact_search import StoreRetriever
from tgrag.retrieve import as_timestamp
from tgrag.sdk import TemporalRAG
from tgrag.timex import parse_query_scope

QUERIES = [
    "revenue growth in 2023",
    "who was the chief executive",
    "operating margin in Q2 2022",
    "headquarters moved",
    "net income last year",
]


class StoreWords:
    """A fake ``TokenGenerator`` over the store's own words: next token = hash of all ids so far.

    Its queries are made of words the store knows, and every token depends on the document in
    front of the prompt, so a missed rollback shows in the output.
    """

    def __init__(self, texts: list[str]) -> None:
        words = sorted({w for t in texts for w in re.findall(r"[a-z0-9]+", t.lower())})
        self.words = words
        self.vocab = {w: i for i, w in enumerate(words)}

    def encode(self, text: str) -> list[int]:
        return [
            self.vocab.get(w, zlib.crc32(w.encode()) % len(self.words))
            for w in re.findall(r"[a-z0-9]+", text.lower())
        ]

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.words[i] for i in ids)

    def greedy(self, prompt_ids: list[int], n: int) -> list[int]:
        ids, out = list(prompt_ids), []
        for _ in range(n):
            ids.append(zlib.crc32(np.asarray(ids, dtype=np.int64).tobytes()) % len(self.words))
            out.append(ids[-1])
        return out


def brute_force(
    rag: TemporalRAG, query: str, as_of: date | None, now: date | None
) -> list[tuple[int, float]]:
    ws = rag.workspace
    catalog = ws.indexes.catalog
    scope = parse_query_scope(query, now)
    rows = np.flatnonzero(catalog.visible(as_timestamp(as_of)) & catalog.in_scope(scope.interval))
    ids = catalog.ids[rows]
    vecs = ws.indexes.vectors["fact"].vectors(ids).astype(np.float64)
    q = ws.embedder.embed([query])[0].astype(np.float64)
    scores = vecs @ q
    order = np.lexsort((ids, -scores))
    return [(int(ids[i]), float(scores[i])) for i in order]


@pytest.mark.parametrize("as_of", [None, date(2023, 6, 30)])
def test_search_is_time_scoped_dense_search(world_store: TemporalRAG, as_of: date | None) -> None:
    now = date(2024, 3, 1)
    store = StoreRetriever(world_store, as_of=as_of, now=now)
    catalog = world_store.workspace.indexes.catalog
    for query in QUERIES:
        truth = brute_force(world_store, query, as_of, now)
        hits = store.search([query], 10)[0]
        assert [h.id for h in hits] == [i for i, _ in truth[:10]], query
        assert [h.score for h in hits] == pytest.approx([s for _, s in truth[:10]])
        scope = parse_query_scope(query, now)
        for h in hits:
            row = catalog.row(h.id)
            assert row is not None
            if as_of is not None:
                assert catalog.ingested[row] <= as_timestamp(as_of)
            if not scope.unbounded:
                assert catalog.in_scope(scope.interval)[row]
    # A batch ranks each query as it ranks it alone.
    assert store.search(QUERIES, 5) == [store.search([q], 5)[0] for q in QUERIES]


def test_rank_within_agrees_with_search_and_drops_what_the_query_cannot_see(world_store: TemporalRAG) -> None:
    store = StoreRetriever(world_store, now=date(2024, 3, 1))
    everything = store.search(["revenue growth"], 40)[0]
    ids = [h.id for h in everything]
    ranked = store.rank_within(["revenue growth"], [*ids[::-1], 10**12])[0]  # an unknown id too
    assert ranked == everything
    scoped_query = "revenue growth in 2023"
    top = store.search([scoped_query], 40)[0]
    within = store.rank_within([scoped_query], ids + [h.id for h in top])[0]
    assert within[0] == top[0]
    allowed = {h.id for h in top}
    scope = parse_query_scope(scoped_query, date(2024, 3, 1))
    catalog = world_store.workspace.indexes.catalog
    for h in within:
        row = catalog.row(h.id)
        assert row is not None and catalog.in_scope(scope.interval)[row]
    assert allowed <= {h.id for h in within}
    assert "(" in store.text(top[0].id)
    with pytest.raises(KeyError):
        store.text(10**12)
    with pytest.raises(InputError):
        store.search(["   "], 3)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_speculative_ralm_over_the_store_equals_baseline(
    world_store: TemporalRAG, asynchronous: bool
) -> None:
    store = StoreRetriever(world_store, now=date(2024, 3, 1))
    catalog = world_store.workspace.indexes.catalog
    gen = StoreWords(catalog.texts[:2000])
    config = RalmConfig(stride=3, query_tokens=8, max_new_tokens=30)
    accepted = 0
    for scheduler in (FixedStride(3), OS3Scheduler(max_stride=4)):
        spec = SpeculativeRetriever(store, prefetch=10, scheduler=scheduler)
        for prompt in QUERIES:
            want = baseline(gen, store, prompt, config)
            got = speculative(gen, spec, prompt, config, asynchronous=asynchronous)
            assert (got.tokens, got.docs) == (want.tokens, want.docs), prompt
            accepted += got.speculated - got.rollbacks
    assert accepted > 0  # the cache did serve steps: speculation was exercised, not bypassed
