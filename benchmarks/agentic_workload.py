"""Repetitive agentic requests produced by tgrag itself, for the SuffixDecoding benchmark.

Three kinds, interleaved as a pipeline would issue them, each a (prompt messages, reply) pair:

* extraction: tgrag's own LLM-extraction prompt (``tgrag.extract.llm_prompt.FACTS_PROMPT``) over
  chunks of the generated world's documents; the reply is the JSON that prompt asks for, filled
  from what the rule extractor finds in the chunk (similar chunks -> similar JSON);
* questions: Auto-RAG style answering of the world's questions, some asked again (agents repeat
  themselves), the reply quoting its evidence sentence with a citation;
* edits: templated rewrites of a sentence (a renamed company), the reply copying the sentence.

The replies are what the tiny model is trained on (so its greedy outputs look like the
workload's) and what fills the suffix cache in the tree-speed measurement.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from eval.datasets.world import WorldConfig, generate
from tgrag.chunking import chunk_document
from tgrag.extract.llm_prompt import FACTS_PROMPT, PromptContext
from tgrag.extract.rules import RuleExtractor
from tgrag.llm.base import Message


@dataclass(frozen=True)
class Request:
    kind: str  # "extraction", "question" or "edit"
    messages: tuple[Message, ...]
    reply: str


def _extraction(world_docs: list, limit: int) -> list[Request]:
    extractor = RuleExtractor()
    out: list[Request] = []
    for doc in world_docs:
        for chunk in chunk_document(doc, 90):
            found = extractor.extract(doc, [chunk])[0]
            names = list(dict.fromkeys((e.text, e.type.value) for e in found.entities))[:6]
            reply = {
                "entities": [{"name": n, "type": t} for n, t in names],
                "facts": [
                    {
                        "subject": f.subject,
                        "relation": f.relation,
                        "object": f.object,
                        "time": f.time.label,
                        "sentence": f.text,
                        "value": f.value,
                        "unit": f.unit,
                    }
                    for f in found.facts[:3]
                ],
            }
            ctx = PromptContext(
                chunk.text, doc.subject, doc.date.isoformat() if doc.date else None, doc.period
            )
            out.append(Request("extraction", tuple(FACTS_PROMPT.build(ctx)), json.dumps(reply)))
            if len(out) >= limit:
                return out
    return out


def _questions(items: list, rng: random.Random, limit: int) -> list[Request]:
    out: list[Request] = []
    answerable = [q for q in items if q.answerable and q.evidence]
    for _ in range(limit):
        q = rng.choice(answerable[: max(1, len(answerable) // 3)] if rng.random() < 0.4 else answerable)
        evidence = list(q.evidence)
        context = "\n".join(f"[{i + 1}] {s}" for i, s in enumerate(evidence))
        user = (
            f"Answer from the evidence only, citing it as [n].\nEvidence:\n{context}\nQuestion: {q.question}"
        )
        reply = f"{q.golden_answers[0]} [1]. The evidence says: {evidence[0]}"
        out.append(Request("question", (Message("user", user),), reply))
    return out


def _edits(world_docs: list, rng: random.Random, limit: int) -> list[Request]:
    out: list[Request] = []
    sentences = [
        s for d in world_docs for s in d.text.split(". ") if d.subject and d.subject in s and 8 < len(s) < 300
    ]
    for _ in range(min(limit, len(sentences))):
        s = rng.choice(sentences)
        doc_subject = next(d.subject for d in world_docs if d.subject and d.subject in s)
        new = f"{doc_subject.split()[0]} Holdings"
        user = f'Rewrite the sentence with "{doc_subject}" renamed to "{new}". Change nothing else.\nSentence: {s}'
        out.append(Request("edit", (Message("user", user),), s.replace(doc_subject, new)))
    return out


def build(n: int, seed: int = 0) -> list[Request]:
    """``n`` requests, about half extraction, a quarter each questions and edits, shuffled by seed."""
    world = generate(
        WorldConfig(seed=seed, companies=max(6, n // 20), quarters=12, questions_per_type=max(40, n // 10))
    )
    docs = list(world.documents)
    rng = random.Random(seed)
    rng.shuffle(docs)
    reqs = _extraction(docs, n // 2) + _questions(list(world.questions), rng, n // 4)
    reqs += _edits(docs, rng, n - len(reqs))
    rng.shuffle(reqs)
    return reqs[:n]
