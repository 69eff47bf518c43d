"""Personalised PageRank over the bipartite fact-entity graph, with scipy sparse products.

Facts link to the entities they mention (subject included). Walks start from the question's
entities and from the facts that already look relevant; the mass that settles on a fact says how
central it is to what was asked. Restricting the graph to the facts in the time scope keeps
walks from leaking through other periods (HippoRAG ranks passages this way, without time).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def subgraph(incidence: sp.csr_matrix, rows: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """The incidence restricted to ``rows`` and to the entity columns they touch."""
    sub = incidence[rows]
    cols = np.unique(sub.indices)
    remapped = sp.csr_matrix(
        (sub.data, np.searchsorted(cols, sub.indices), sub.indptr), shape=(len(rows), len(cols))
    )
    return remapped, cols


def personalized_pagerank(
    incidence: sp.csr_matrix,
    fact_seed: np.ndarray,
    entity_seed: np.ndarray,
    damping: float = 0.5,
    iterations: int = 30,
    tol: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
    """Stationary visit probabilities (facts, entities) of a walk that restarts at the seeds."""
    n_f, n_e = incidence.shape
    total = float(fact_seed.sum() + entity_seed.sum())
    if total <= 0 or n_f == 0:
        return np.zeros(n_f), np.zeros(n_e)
    s_f, s_e = fact_seed / total, entity_seed / total
    fact_deg = np.asarray(incidence.sum(axis=1)).ravel()
    ent_deg = np.asarray(incidence.sum(axis=0)).ravel()
    # Column-stochastic pieces: a fact spreads over its entities, an entity over its facts.
    # Divide by the degree itself, not max(degree, 1): weighted edges may sum to less than 1.
    to_entities = (sp.diags(1.0 / np.where(fact_deg > 0, fact_deg, 1.0)) @ incidence).T.tocsr()  # E x F
    to_facts = (incidence @ sp.diags(1.0 / np.where(ent_deg > 0, ent_deg, 1.0))).tocsr()  # F x E
    p_f, p_e = s_f.copy(), s_e.copy()
    for _ in range(iterations):
        new_f = (1.0 - damping) * s_f + damping * (to_facts @ p_e)
        new_e = (1.0 - damping) * s_e + damping * (to_entities @ p_f)
        delta = float(np.abs(new_f - p_f).sum() + np.abs(new_e - p_e).sum())
        p_f, p_e = new_f, new_e
        if delta < tol:
            break
    return p_f, p_e
