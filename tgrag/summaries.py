"""Recompute the summaries of dirty time nodes, and only those, bottom-up."""

from __future__ import annotations

import logging

import numpy as np

from .hierarchy import bottom_up, summarise
from .model import TimeNode
from .workspace import Workspace

log = logging.getLogger(__name__)


def refresh_summaries(ws: Workspace) -> int:
    """Returns how many summaries were recomputed (equal to the number of dirty nodes)."""
    store = ws.store
    dirty = store.time_nodes(dirty_only=True)
    if not dirty:
        return 0
    nodes = {n.id: n for n in store.time_nodes()}
    children: dict[str, list[str]] = {}
    for n in nodes.values():
        if n.parent is not None:
            children.setdefault(n.parent, []).append(n.id)
    picked: dict[str, tuple[int, ...]] = {nid: n.summary_fact_ids for nid, n in nodes.items()}
    results: dict[str, tuple[str, tuple[int, ...]]] = {}
    catalog = ws.indexes.catalog
    for node in bottom_up(dirty):
        candidates = set(store.node_fact_ids(node.id))
        for child in children.get(node.id, []):
            candidates.update(picked.get(child, ()))
        rows_of = {f: r for f in sorted(candidates) if (r := catalog.row(f)) is not None}
        ids, rows = list(rows_of), list(rows_of.values())
        if ids:
            _, vecs = store.get_vectors("fact", ids)
            summary = summarise(
                ids,
                vecs,
                [catalog.texts[r] for r in rows],
                [float(catalog.confidence[r]) for r in rows],
                ws.config.ingest.summary_facts,
            )
            results[node.id] = (summary.text, summary.fact_ids)
        else:
            results[node.id] = ("", ())
        picked[node.id] = results[node.id][1]
    texts = {nid: _summary_text(nodes[nid], text) for nid, (text, _) in results.items() if text}
    vectors = ws.embedder.embed(list(texts.values())) if texts else np.zeros((0, ws.embedder.dim), np.float32)
    with store.transaction():
        nums = store.set_summaries(results)
        known = store.time_node_nums()
        gone = [nid for nid in results if nid not in known]
        ids = [nums[nid] for nid in texts]
        if ids:
            store.put_vectors("node", ids, vectors, list(texts.values()))
    index = ws.indexes.vectors["node"]
    stale = np.array(
        [n for n in nums.values()] + [e.num for e in ws.indexes.nodes.values() if e.node.id in gone],
        dtype=np.int64,
    )
    index.remove(stale)
    for nid in gone:
        for num, entry in list(ws.indexes.nodes.items()):
            if entry.node.id == nid:
                ws.indexes.remove_node(num)
    if ids:
        index.add(np.array(ids, dtype=np.int64), vectors)
    for nid, num in nums.items():
        text, fact_ids = results[nid]
        old = nodes[nid]
        ws.indexes.set_node(
            num, TimeNode(old.id, old.level, old.parent, old.interval, text, False, old.fact_count, fact_ids)
        )
    ws.indexes.generation = store.generation()
    log.info("recomputed %d time-node summaries", len(results))
    return len(results)


def _summary_text(node: TimeNode, text: str) -> str:
    return f"{node.id}: {text}"
