"""Speculative retrieval (RaLMSpec) and suffix-tree speculative decoding: see issues 5 and 6."""
