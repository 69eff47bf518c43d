"""Split documents into chunks of whole sentences, about ``target_words`` long."""

from __future__ import annotations

from .model import Chunk, Document
from .text import split_sentences


def chunk_document(doc: Document, target_words: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    start = end = -1
    count = 0
    for sentence in split_sentences(doc.text):
        n = len(sentence.text.split())
        if start >= 0 and count + n > target_words and count > 0:
            chunks.append(_make(doc, len(chunks), start, end))
            start, count = -1, 0
        if start < 0:
            start = sentence.start
        end = sentence.end
        count += n
    if start >= 0:
        chunks.append(_make(doc, len(chunks), start, end))
    return chunks


def _make(doc: Document, ordinal: int, start: int, end: int) -> Chunk:
    return Chunk(f"{doc.id}:{ordinal}", doc.id, ordinal, doc.text[start:end], start, end)
