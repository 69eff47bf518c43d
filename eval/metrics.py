"""Metrics, named as they appear in results: answer_em, answer_f1 (SQuAD normalisation),
evidence_recall, abstain_precision, abstain_recall, latency_ms_p50 / p95."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

from tgrag.text import words

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(c for c in text if c not in set(string.punctuation))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_em(prediction: str, golds: Sequence[str]) -> float:
    return float(any(normalize_answer(prediction) == normalize_answer(g) for g in golds))


def answer_f1(prediction: str, golds: Sequence[str]) -> float:
    return max((_f1(prediction, g) for g in golds), default=0.0)


def _f1(prediction: str, gold: str) -> float:
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def evidence_found(evidence: str, context: Sequence[str]) -> bool:
    """A gold evidence sentence counts as found when a context passage contains it (after word
    normalisation), or is itself most of that sentence (sentence splitters differ at the edges)."""
    e = " ".join(words(evidence))
    if not e:
        return False
    for passage in context:
        c = " ".join(words(passage))
        if e in c or (c and c in e and len(c) >= 0.6 * len(e)):
            return True
    return False


def evidence_recall(golds: Sequence[str], context: Sequence[str]) -> float:
    return float(np.mean([evidence_found(g, context) for g in golds])) if golds else 0.0


def abstain_scores(abstained: Sequence[bool], unanswerable: Sequence[bool]) -> tuple[float, float]:
    """(precision, recall) of abstaining, with unanswerable questions as the positive class."""
    tp = sum(a and u for a, u in zip(abstained, unanswerable, strict=True))
    predicted, actual = sum(abstained), sum(unanswerable)
    return (tp / predicted if predicted else 0.0, tp / actual if actual else 0.0)


def latency_percentiles(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {"latency_ms_p50": float(np.percentile(ms, 50)), "latency_ms_p95": float(np.percentile(ms, 95))}
