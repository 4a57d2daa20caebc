"""Semantic search over the chunks that the example pipeline embedded.

    python examples/search.py results.jsonl "how do workers recover lost messages?" [--top 5]

`results.jsonl` holds one JSON object per line, `{"job": ID, "result": ...}`, where the
result is the embed stage's output for the job: one document, or a list of them. A chunk is
its offsets into the document's `text` and its vector (float32 as base64, stages/embed.py; a
list of numbers is read too). The query is embedded with the same model as the chunks, so a
dot product of the normalized vectors is their cosine similarity.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Run as a script, Python puts examples/ on sys.path; the stages live one level up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from stages.embed import vector

SNIPPET_CHARS = 160


@dataclass(frozen=True)
class Chunk:
    """One embedded chunk, and where it came from."""

    job: str
    filename: str
    start: int
    end: int
    text: str
    embedding: list[float]


@dataclass(frozen=True)
class Hit:
    """A chunk and its cosine similarity to the query."""

    score: float
    chunk: Chunk


def load_chunks(path: Path) -> list[Chunk]:
    """Every embedded chunk in a results file; lines without chunks are skipped."""
    chunks: list[Chunk] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{number}: not JSON ({exc})") from exc
            chunks.extend(_chunks_of(record))
    return chunks


def search(query: list[float], chunks: list[Chunk], top: int = 5) -> list[Hit]:
    """The `top` chunks by cosine similarity to `query`, best first."""
    if not chunks:
        return []
    matrix = np.asarray([chunk.embedding for chunk in chunks], dtype=np.float32)
    vector = np.asarray(query, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(vector)
    scores = matrix @ vector / np.where(norms == 0, 1, norms)
    best = np.argsort(-scores, kind="stable")[:top]
    return [Hit(float(scores[i]), chunks[i]) for i in best]


def format_hit(rank: int, hit: Hit) -> str:
    """`1. 0.712  redis-streams.md [1520:1998]  Consumer groups let...`."""
    chunk = hit.chunk
    snippet = " ".join(chunk.text.split())
    if len(snippet) > SNIPPET_CHARS:
        snippet = snippet[: SNIPPET_CHARS - 3] + "..."
    return f"{rank}. {hit.score:.3f}  {chunk.filename} [{chunk.start}:{chunk.end}]  {snippet}"


def main(argv: list[str] | None = None, encode: Callable[[list[str]], Any] | None = None) -> int:
    """Print the best chunks for the query; `encode` is for tests that hold a model already."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="results.jsonl of a pipeline run")
    parser.add_argument("query", help="what to look for, in plain words")
    parser.add_argument("--top", type=int, default=5, help="how many chunks to show")
    args = parser.parse_args(argv)
    chunks = load_chunks(args.results)
    if not chunks:
        print(f"{args.results}: no embedded chunks found", file=sys.stderr)
        return 1
    query = vector({"embedding": (encode or _stage_encoder())([args.query])[0]})
    for rank, hit in enumerate(search(query, chunks, args.top), start=1):
        print(format_hit(rank, hit))
    return 0


def _chunks_of(record: dict[str, Any]) -> Iterator[Chunk]:
    """The chunks of one result line, whose `result` is a document or a list of them."""
    result = record.get("result")
    documents = result if isinstance(result, list) else [result]
    for doc in documents:
        if not isinstance(doc, dict):
            continue
        text = str(doc.get("text") or "")
        for chunk in doc.get("chunks") or []:
            if chunk.get("embedding"):
                start, end = int(chunk["start"]), int(chunk["end"])
                yield Chunk(
                    job=str(record.get("job", "")),
                    filename=str(doc.get("filename") or "(no filename)"),
                    start=start,
                    end=end,
                    text=str(chunk.get("text") or text[start:end]),
                    embedding=vector(chunk),
                )


def _stage_encoder() -> Callable[[list[str]], list[str]]:
    """The embed stage's own encoder, so queries and chunks share one model and settings."""
    from framework import Fail
    from stages.embed import encode

    def encode_or_exit(texts: list[str]) -> list[str]:
        try:
            return encode(texts)
        except Fail as exc:  # the model is not installed: say how to install it
            raise SystemExit(f"search: {exc.reason}") from exc

    return encode_or_exit


if __name__ == "__main__":
    sys.exit(main())
