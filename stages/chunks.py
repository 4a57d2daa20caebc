"""Split a document's text into chunks of about 500 characters for embedding.

Chunks end on sentence boundaries, and on paragraph boundaries when the chunk is already
well filled, so each one reads as a passage; only a single sentence longer than a chunk is
cut, at a space. Each chunk is a `Span` into the text, so a search hit can be shown in
context. Separate from embed.py, so that it can be tested without the model.
"""

from __future__ import annotations

import re

from stages.text import Span, sentence_spans, starts_paragraph

CHUNK_CHARS = 500
PARAGRAPH_FILL = 0.6  # a chunk at least this full ends where a paragraph does

_WHITESPACE = re.compile(r"\s+")


def chunk_spans(text: str, size: int = CHUNK_CHARS) -> list[Span]:
    """Consecutive, non-overlapping spans of at most `size` characters covering every sentence."""
    chunks: list[Span] = []
    start = end = -1
    for piece in _pieces(text, size):
        if start >= 0 and _ends_before(text, start, end, piece, size):
            chunks.append(Span(start, end))
            start = -1
        if start < 0:
            start = piece.start
        end = piece.end
    if start >= 0:
        chunks.append(Span(start, end))
    return chunks


def _ends_before(text: str, start: int, end: int, piece: Span, size: int) -> bool:
    """Whether the chunk `text[start:end]` must end before `piece` joins it."""
    if piece.end - start > size:
        return True
    return end - start >= size * PARAGRAPH_FILL and starts_paragraph(text, end, piece.start)


def _pieces(text: str, size: int) -> list[Span]:
    """The sentences, with any sentence longer than `size` cut into parts that fit."""
    return [part for span in sentence_spans(text) for part in _cut(text, span, size)]


def _cut(text: str, span: Span, size: int) -> list[Span]:
    """Cut a long span at the last whitespace that fits, or at `size` if there is none."""
    parts: list[Span] = []
    start = span.start
    while span.end - start > size:
        gaps = list(_WHITESPACE.finditer(text, start + 1, start + size + 1))
        if gaps:
            parts.append(Span(start, gaps[-1].start()))
            start = gaps[-1].end()
        else:
            parts.append(Span(start, start + size))
            start += size
    parts.append(Span(start, span.end))
    return parts
