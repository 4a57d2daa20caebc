"""Secrets stay secret: URLs in logs, errors, dead letters and job fields never show a password
or a key, whatever form it takes in the URL."""

from __future__ import annotations

import io
import sys
import time
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
import structlog
from pipelines import write_pipeline
from servers import RedisServer
from test_cli import assert_one_line_error, cli

from framework import Fail, logs
from framework.outcome import DeadLetter, RetryLater, decide
from framework.redact import redact
from framework.testing import running_pipeline

SAME = "def same(doc):\n    return doc\n"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("redis://:s3cret@host:6379/0", "redis://***@host:6379/0"),
        ("rediss://user:p@ss:w@host:6380/0", "rediss://***@host:6380/0"),
        ("redis://host:6379/0?password=s3cret&ssl_cert_reqs=none", "redis://host:6379/0?password=***&ssl_cert_reqs=none"),
        ("https://x.example/openai?api-version=1&api-key=s3cret", "https://x.example/openai?api-version=1&api-key=***"),
        ("https://h/v1?KEY=s3cret#top", "https://h/v1?KEY=***#top"),
        ("https://h/v1?token=s3cret;x=1", "https://h/v1?token=***;x=1"),
        ("unix:///tmp/redis.sock?password=s3cret", "unix:///tmp/redis.sock?password=***"),
        ("ConnectError('https://u:s3cret@h/v1 failed')", "ConnectError('https://***@h/v1 failed')"),
        ("two redis://a:s3cret@h1 and redis://b:s3cret@h2/0", "two redis://***@h1 and redis://***@h2/0"),
        ("no url here, a=b", "no url here, a=b"),
        ("https://host/path?monkey=banana", "https://host/path?monkey=banana"),
    ],
)  # fmt: skip
def test_redact_masks_user_info_and_credential_parameters(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_redact_is_linear_on_hostile_text() -> None:
    started = time.monotonic()
    redact("a://" * 200_000 + "?key=" * 100_000)
    assert time.monotonic() - started < 2  # a backtracking pattern would take minutes


def test_a_stage_error_naming_a_url_is_masked_in_the_dead_letter_and_the_retry() -> None:
    error = ConnectionError("cannot reach https://bot:s3cret@llm.example/v1?api-key=k3y")
    retry = decide(error, 1, 3, timedelta(seconds=1), timedelta(minutes=1))
    dead = decide(error, 3, 3, timedelta(seconds=1), timedelta(minutes=1))
    failed = decide(
        Fail("refused by https://llm.example/v1?key=k3y"), 1, 3, timedelta(0), timedelta(0)
    )
    assert isinstance(retry, RetryLater)
    assert isinstance(dead, DeadLetter)
    assert isinstance(failed, DeadLetter)
    for text in (retry.error, dead.error, dead.traceback, failed.error):
        assert "s3cret" not in text
        assert "k3y" not in text
    assert "https://***@llm.example/v1?api-key=***" in dead.error


def test_log_lines_mask_urls_in_fields_and_tracebacks(monkeypatch: pytest.MonkeyPatch) -> None:
    output = io.StringIO()
    monkeypatch.setattr(sys, "stderr", output)
    logs.configure(level="info", json=True)
    try:
        log = structlog.get_logger()
        log.warning("redis_unavailable", url="redis://:s3cret@h:6379/0?password=s3cret")
        try:
            raise ValueError("bad https://u:s3cret@h/x?token=s3cret")
        except ValueError:
            log.exception("crashed")
    finally:
        structlog.reset_defaults()
    lines = [orjson.loads(line) for line in output.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["redis_unavailable", "crashed"]
    assert "s3cret" not in output.getvalue()
    assert lines[0]["url"] == "redis://***@h:6379/0?password=***"


def test_cli_errors_never_print_the_password(tmp_path: Path, pipeline_name: str) -> None:
    write_pipeline(tmp_path, pipeline_name, 'one:\n  function: "{mod}:same"', SAME)
    for url in ("redis://:s3cret@127.0.0.1:1/0", "redis://127.0.0.1:1/0?password=s3cret"):
        result = cli(tmp_path, "status", redis_url=url)
        assert_one_line_error(result, 1, "cannot reach Redis at redis://")
        assert "s3cret" not in result.stderr
    result = cli(tmp_path, "status", redis_url="redis://:s3cret@127.0.0.1:six/0?password=s3cret")
    assert_one_line_error(result, 2, "is not a usable Redis URL")
    assert "s3cret" not in result.stderr


async def test_a_dead_letter_and_the_job_error_hold_no_key(
    redis_server: RedisServer, tmp_path: Path, pipeline_name: str
) -> None:
    code = (
        "def leak(doc):\n"
        "    raise ConnectionError('endpoint https://bot:s3cret@llm.example/v1?api-key=k3y down')\n"
    )
    path = write_pipeline(
        tmp_path, pipeline_name, 'one:\n  function: "{mod}:leak"\n  max_attempts: 1', code
    )
    async with running_pipeline(path, redis_server.url) as pipeline:
        job = await pipeline.wait_async(await pipeline.submit_async({"text": "x"}), timeout=30)
        client = await pipeline.client()
        letters = await client.xrange(pipeline.spec.keys.dead)
    assert job.state == "failed"
    assert job.error is not None
    assert "https://***@llm.example/v1?api-key=***" in job.error
    everything = repr(job) + repr(letters)
    assert "s3cret" not in everything
    assert "k3y" not in everything
