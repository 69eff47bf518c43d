"""The time hierarchy: year > quarter > month > day nodes, and their extractive summaries.

A fact hangs under the finest node that contains its valid time (a multi-year span hangs under
each year it covers). Ingest marks the nodes it touched, and their ancestors, dirty; a refresh
recomputes exactly the dirty nodes, bottom-up, so a parent is built from its own facts plus its
children's summary facts (never from all facts below it), which keeps updates cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from .model import Granularity, TimeInterval, TimeLevel, TimeNode

MAX_YEARS_PER_FACT = 30  # a span longer than this says little about any one year; it hangs nowhere


def year_node(y: int) -> TimeNode:
    return TimeNode(f"{y:04d}", TimeLevel.YEAR, None, TimeInterval.year(y))


def quarter_node(y: int, q: int) -> TimeNode:
    return TimeNode(f"{y:04d}-Q{q}", TimeLevel.QUARTER, f"{y:04d}", TimeInterval.quarter(y, q))


def month_node(y: int, m: int) -> TimeNode:
    q = (m - 1) // 3 + 1
    return TimeNode(f"{y:04d}-{m:02d}", TimeLevel.MONTH, f"{y:04d}-Q{q}", TimeInterval.month(y, m))


def day_node(d: date) -> TimeNode:
    return TimeNode(d.isoformat(), TimeLevel.DAY, f"{d.year:04d}-{d.month:02d}", TimeInterval.day(d))


def chain(node: TimeNode) -> list[TimeNode]:
    """The node and all its ancestors, finest first."""
    out = [node]
    iv = node.interval
    assert iv.start is not None
    y, m = iv.start.year, iv.start.month
    if node.level is TimeLevel.DAY:
        out += [month_node(y, m), quarter_node(y, (m - 1) // 3 + 1), year_node(y)]
    elif node.level is TimeLevel.MONTH:
        out += [quarter_node(y, (m - 1) // 3 + 1), year_node(y)]
    elif node.level is TimeLevel.QUARTER:
        out += [year_node(y)]
    return out


def attach_nodes(time: TimeInterval) -> list[TimeNode]:
    """The nodes a fact with this valid time hangs under (empty for undated or open-ended facts)."""
    if time.start is None or time.end is None or time.granularity is Granularity.UNKNOWN:
        return []
    start, last = time.start, date.fromordinal(time.end.toordinal() - 1)
    if start.year != last.year:
        if last.year - start.year + 1 > MAX_YEARS_PER_FACT:
            return []
        return [year_node(y) for y in range(start.year, last.year + 1)]
    y = start.year
    if start == last:
        return [day_node(start)]
    if start.month == last.month:
        return [month_node(y, start.month)]
    q1, q2 = (start.month - 1) // 3 + 1, (last.month - 1) // 3 + 1
    if q1 == q2:
        return [quarter_node(y, q1)]
    return [year_node(y)]


def with_ancestors(nodes: Sequence[TimeNode]) -> list[TimeNode]:
    seen: dict[str, TimeNode] = {}
    for n in nodes:
        for a in chain(n):
            seen.setdefault(a.id, a)
    return list(seen.values())


_LEVEL_ORDER = {TimeLevel.DAY: 0, TimeLevel.MONTH: 1, TimeLevel.QUARTER: 2, TimeLevel.YEAR: 3}


def bottom_up(nodes: Sequence[TimeNode]) -> list[TimeNode]:
    return sorted(nodes, key=lambda n: (_LEVEL_ORDER[n.level], n.id))


@dataclass(frozen=True)
class Summary:
    text: str
    fact_ids: tuple[int, ...]


def summarise(
    fact_ids: Sequence[int],
    vectors: np.ndarray,
    texts: Sequence[str],
    confidence: Sequence[float],
    size: int,
    diversity: float = 0.5,
) -> Summary:
    """Pick the most central facts (closest to the centroid), with MMR so they say different things.

    ``vectors`` are unit-norm rows aligned with ``fact_ids``. Deterministic: ties go to lower ids.
    """
    if len(fact_ids) == 0:
        return Summary("", ())
    order = np.argsort(np.asarray(fact_ids), kind="stable")
    ids = np.asarray(fact_ids)[order]
    vecs = vectors[order]
    conf = np.asarray(confidence, dtype=np.float64)[order]
    txts = [texts[i] for i in order]
    centroid = vecs.mean(axis=0)
    norm = float(np.linalg.norm(centroid))
    centrality = vecs @ (centroid / norm) if norm > 0 else np.zeros(len(ids))
    relevance = centrality + 0.1 * conf
    chosen: list[int] = []
    seen_text: set[str] = set()
    max_sim = np.full(len(ids), -1.0)
    while len(chosen) < min(size, len(ids)):
        score = relevance - diversity * np.maximum(max_sim, 0.0)
        score[chosen] = -np.inf
        best = int(np.argmax(score))
        if not np.isfinite(score[best]):
            break
        if txts[best] not in seen_text:
            chosen.append(best)
            seen_text.add(txts[best])
        else:
            relevance[best] = -np.inf
            continue
        max_sim = np.maximum(max_sim, vecs @ vecs[best])
    chosen.sort(key=lambda i: ids[i])
    return Summary(" ".join(txts[i] for i in chosen), tuple(int(ids[i]) for i in chosen))
