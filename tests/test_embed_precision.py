"""tgrag.embed: the precisions of the sentence-transformers embedder (MiniLM, offline)."""

from __future__ import annotations

import numpy as np
import pytest

from tgrag.embed import create_embedder

TEXTS = [
    "Revenue grew 12% in the third quarter on cloud demand.",
    "The board appointed a new chief financial officer in March.",
    "Net income at Galutis Materials was $16 million in Q1 2009.",
]


def test_bf16_weights_vectors_match_float32_ones() -> None:
    fp32 = create_embedder("minilm:fp32").embed(TEXTS)
    bf16 = create_embedder("minilm:bf16-weights").embed(TEXTS)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    assert np.allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)
    cosine = (fp32 * bf16).sum(axis=1)
    assert cosine.min() > 0.999
    # One text alone gets the vector it gets in a batch, up to bf16 rounding.
    alone = create_embedder("minilm:bf16-weights").embed(TEXTS[:1])
    assert float(alone[0] @ bf16[0]) > 0.999
    assert create_embedder("minilm:bf16-weights").embed([]).shape == (0, fp32.shape[1])


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision"):
        create_embedder("minilm:fp8")
