"""Derived indexes over the store: dense vectors (faiss), BM25, and the in-memory fact catalog.

All of them are rebuilt from the store when missing or stale; see ``derived.py``.
"""
