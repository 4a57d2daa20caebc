"""Hostile documents end quickly, as a result or as `Fail` with a one-line reason.

Each attack here once hung a worker or ate its memory; the bounds are generous upper limits
for hang protection, not benchmarks.
"""

from __future__ import annotations

import time

from stages.chunks import chunk_spans
from stages.text import paragraph_count, sentence_spans


def test_sentence_splitting_is_linear_on_runs_of_marks() -> None:
    # 40,000 dots before a letter took 22 s: each start in the run rescanned the rest of it.
    for text in ("." * 400_000 + "x", "!\u201d" * 200_000 + " ", ". " * 200_000):
        started = time.monotonic()
        sentence_spans(text)
        chunk_spans(text)
        paragraph_count(text)
        assert time.monotonic() - started < 5
