"""Speculation for retrieval-augmented generation; works on small protocols, never imports ``tgrag``.

Speculative retrieval (RaLMSpec, arXiv 2401.14021), issue 5:

* ``base``: ``Hit`` and the ``Retriever`` protocol (batched ``search``, ``rank_within`` candidate
  ids, ``text``), with ``top_hits`` (best first, ties by smaller id).
* ``retrievers``: ``DenseRetriever`` (faiss flat or HNSW, exact rescoring; ``screen="bf16"``
  for exact search screened in bf16 with a certified bound), ``BM25Retriever`` (scipy sparse)
  and ``make_retriever(kind, texts, ...)`` over one registry. The temporal store's adapter is
  ``tgrag.fact_search.StoreRetriever`` (it lives in ``tgrag``, which may import this package).
* ``scheduler``: the stride schedulers, ``OS3Scheduler`` (cost model in its docstrings; stride
  0 switches speculation off when it cannot pay) and ``FixedStride``, behind ``Scheduler``.
* ``ralmspec``: ``SpeculativeRetriever``, a per-request cache of retrieved ids that answers
  queries by speculation and verifies them in batches; ``retrieve_top1`` / ``verify_pending``
  for loops that issue whole queries.
* ``generator``: the ``TokenGenerator`` protocol and ``HFGenerator`` (transformers, greedy).
* ``ralm``: iterative RaLM serving, ``baseline`` and ``speculative`` (sync or with the
  verification overlapped on a worker thread), with identical outputs under greedy decoding.

Suffix-tree speculative decoding (SuffixDecoding), issue 6:

* ``suffix_tree``: ``SuffixTree`` (counted substrings up to a depth, compressed: substrings seen
  once are pointers into their sequence; append, remove), ``Matcher`` (longest match of a growing
  context, by suffix links), ``draft`` / ``best_draft`` (path or best-first tree drafts under
  ``SpeculationConfig``) and ``SuffixCache`` (per-request trees plus a global tree of past
  outputs with FIFO eviction; the better-scoring draft wins).
* ``spec_verify``: the model-free half of verification: the tree attention mask and positions,
  greedy acceptance, and rejection sampling that keeps the model's distribution.
* ``suffix_decoding``: the ``Drafter`` protocol (``SuffixCache``, ``PromptLookupDrafter``),
  chain and tree verification on a transformers model's KV cache, ``SuffixDecoder`` and the
  ``greedy_generate`` reference.
"""

from .base import Hit, Retriever, top_hits
from .generator import HFGenerator, TokenGenerator
from .ralm import RalmConfig, RalmResult, baseline, speculative
from .ralmspec import Guess, Pending, SpeculativeRetriever, Verdict
from .retrievers import BM25Retriever, DenseRetriever, make_retriever, retriever_kinds, tokenize
from .scheduler import Estimates, FixedStride, OS3Scheduler, Scheduler
from .suffix_tree import (
    Draft,
    Matcher,
    Position,
    SpeculationConfig,
    SuffixCache,
    SuffixTree,
    best_draft,
    draft,
)

# ``suffix_decoding`` needs torch; importing ``speculation`` must not (retrievers and trees run
# without it), so its names load on first use.
_LAZY = {
    "DecodeConfig",
    "DecodeResult",
    "DecodeStats",
    "Drafter",
    "PromptLookupDrafter",
    "SuffixDecoder",
    "greedy_generate",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from . import suffix_decoding

        return getattr(suffix_decoding, name)
    raise AttributeError(f"module 'speculation' has no attribute {name!r}")


__all__ = [
    "BM25Retriever",
    "DecodeConfig",
    "DecodeResult",
    "DecodeStats",
    "DenseRetriever",
    "Draft",
    "Drafter",
    "Estimates",
    "FixedStride",
    "Guess",
    "HFGenerator",
    "Hit",
    "Matcher",
    "OS3Scheduler",
    "Pending",
    "Position",
    "PromptLookupDrafter",
    "RalmConfig",
    "RalmResult",
    "Retriever",
    "Scheduler",
    "SpeculationConfig",
    "SpeculativeRetriever",
    "SuffixCache",
    "SuffixDecoder",
    "SuffixTree",
    "TokenGenerator",
    "Verdict",
    "baseline",
    "best_draft",
    "draft",
    "greedy_generate",
    "make_retriever",
    "retriever_kinds",
    "speculative",
    "tokenize",
    "top_hits",
]
