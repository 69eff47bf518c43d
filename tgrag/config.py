"""Configuration objects. Passed in explicitly; nothing here reads the environment."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_VECTOR_INDEX = "faiss-flat"


@dataclass(frozen=True)
class IngestConfig:
    chunk_words: int = 180  # target chunk size; chunks end on sentence boundaries
    batch_documents: int = 16  # documents per transaction
    max_document_chars: int = 5_000_000  # larger documents are skipped with a logged reason
    entity_similarity: float = 0.90  # cosine threshold for merging entity names by embedding
    summary_facts: int = 5  # facts in each time node's extractive summary
    fiscal_year_start_month: int = 1


@dataclass(frozen=True)
class RetrievalConfig:
    budget_tokens: int = 512  # evidence token budget (counted with the embedder's tokenizer)
    candidates: int = 200  # dense and lexical candidates each, before graph ranking
    dense_weight: float = 1.0
    lexical_weight: float = 0.6
    # Personalised PageRank over the scoped graph: a tie-breaker and a source of candidates that
    # share entities with the best ones. A larger weight lowered recall on both dev sets.
    graph_weight: float = 0.1
    ppr_damping: float = 0.5  # probability of following an edge (HippoRAG uses 0.5)
    ppr_iterations: int = 30
    undated_time_weight: float = 0.5  # weight of facts with no known time against in-scope ones
    summary_weight: float = 0.7  # time-node summaries compete with facts at this discount
    chunk_weight: float = 0.3  # a fact's passage lends it context ("Os Belenenses, where he ..."):
    chunk_lexical_weight: float = 0.3  # by embedding similarity and by BM25 over the passage
    min_score: float = 0.15  # below this relevance nothing counts as evidence


@dataclass(frozen=True)
class Config:
    embedder: str = "minilm"
    extractor: str = "rules"
    # The vector index behind every kind, by registry spec: "faiss-flat" (exact) or "codebook"
    # (the compressed memory bank, e.g. "codebook:m=16,rerank=100"). None: the one the store was
    # last written with (faiss-flat for a new store). Another spec rebuilds the indexes from SQLite.
    vector_index: str | None = None
    llm: str = "extractive"  # the LLM spec ``ask`` uses (see tgrag.llm); extractive needs no model
    max_iter: int = 4  # retrieval rounds of the Auto-RAG loop
    ingest: IngestConfig = field(default_factory=IngestConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    lock_timeout_s: float = 30.0  # how long a writer waits for another process's write lock
