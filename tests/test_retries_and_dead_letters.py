"""Failures become retries with backoff, then dead letters with stage, error, traceback and
attempts; Fail dead-letters at once; bad payloads are dead-lettered and the worker goes on."""

from __future__ import annotations

from pathlib import Path

from pipelines import write_pipeline
from redis.typing import EncodableT, FieldT
from servers import RedisServer

from framework.testing import running_pipeline
from framework.wire import text

CODE = """
from pydantic import BaseModel
from framework import Fail, Retry

class Doc(BaseModel):
    n: int

def flaky(doc: dict) -> dict:
    if doc.get("n", 1) % 10 == 0:
        raise ValueError(f"cannot handle {doc['n']}")
    return doc

def checked(doc: Doc) -> dict:
    return {"n": doc.n * 2}

def steer(doc, ctx):
    if doc["how"] == "fail":
        raise Fail("not a document we take")
    if doc["how"] == "retry" and ctx.attempt == 1:
        raise Retry(after=0.05)
    return {**doc, "attempt": ctx.attempt}
"""

TOP = "defaults:\n  max_attempts: 3\n  retry_backoff: 50ms\n  retry_backoff_max: 100ms"


def dead_letters(server: RedisServer, name: str) -> list[dict[str, str]]:
    with server.client() as client:
        return [
            {k.decode(): v.decode() for k, v in fields.items()}
            for _id, fields in client.xrange(f"{{{name}}}:dead")
        ]


async def test_failing_tenth_is_dead_lettered_with_traceback_after_max_attempts(
    redis_server: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    stages = (
        'first:\n  function: "{mod}:flaky"\nsecond:\n  function: "{mod}:flaky"\n  concurrency: 4'
    )
    path = write_pipeline(tmp_path, pipeline_name, stages, CODE, TOP)
    async with running_pipeline(path, redis_server.url) as pipeline:
        ids = await pipeline.submit_many_async([{"n": n} for n in range(1, 101)])
        jobs = await pipeline.wait_all_async(ids, timeout=30)
    failed = {job_id for job_id, job in jobs.items() if job.state == "failed"}
    assert len(failed) == 10
    assert sum(job.state == "done" for job in jobs.values()) == 90
    letters = dead_letters(redis_server, pipeline_name)
    assert {letter["job"] for letter in letters} == failed
    for letter in letters:
        assert letter["stage"] == "first"
        assert letter["attempts"] == "3"
        assert "ValueError: cannot handle" in letter["error"]
        assert 'raise ValueError(f"cannot handle' in letter["traceback"]
        assert letter["stream"] == f"{{{pipeline_name}}}:input"
    some_failed = jobs[next(iter(failed))]
    assert some_failed.error is not None
    assert some_failed.error.startswith("first: ValueError")


async def test_fail_dead_letters_at_once_and_retry_runs_again(
    redis_server: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, 'only:\n  function: "{mod}:steer"', CODE, TOP)
    async with running_pipeline(path, redis_server.url) as pipeline:
        failing = await pipeline.submit_async({"how": "fail"})
        retried = await pipeline.submit_async({"how": "retry"})
        jobs = await pipeline.wait_all_async([failing, retried], timeout=15)
    assert jobs[failing].state == "failed"
    assert jobs[retried].state == "done"
    assert jobs[retried].result == {"how": "retry", "attempt": 2}
    [letter] = dead_letters(redis_server, pipeline_name)
    assert letter["error"] == "Fail: not a document we take"
    assert letter["attempts"] == "1"


async def test_bad_payloads_are_dead_lettered_without_retries_and_the_worker_goes_on(
    redis_server: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, 'only:\n  function: "{mod}:checked"', CODE, TOP)
    async with running_pipeline(path, redis_server.url) as pipeline:
        client = await pipeline.client()
        not_json = text(await client.xadd(f"{{{pipeline_name}}}:input", {"data": "{nope"}))
        wrong_shape = await pipeline.submit_async({"n": "many"})
        good = await pipeline.submit_async({"n": 21})
        jobs = await pipeline.wait_all_async([not_json, wrong_shape, good], timeout=15)
    assert jobs[good].result == {"n": 42}
    assert jobs[not_json].state == jobs[wrong_shape].state == "failed"
    letters = {letter["job"]: letter for letter in dead_letters(redis_server, pipeline_name)}
    assert letters[not_json]["error"].startswith("payload is not valid JSON")
    assert letters[not_json]["data"] == "{nope"
    assert letters[wrong_shape]["error"].startswith("payload does not match Doc: n:")
    assert letters[wrong_shape]["attempts"] == "1"


async def test_bare_xadd_without_data_is_a_job_whose_id_is_the_entry_id(
    redis_server: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    code = "def echo(doc):\n    return {'got': doc}\n"
    path = write_pipeline(tmp_path, pipeline_name, 'only:\n  function: "{mod}:echo"', code)
    async with running_pipeline(path, redis_server.url) as pipeline:
        client = await pipeline.client()
        entry = await client.xadd(
            f"{{{pipeline_name}}}:input", {"prompt": "Summarize this", "user_id": "12345"}
        )
        job = await pipeline.wait_async(text(entry), timeout=10)
    assert job.state == "done"
    assert job.result == {"got": {"prompt": "Summarize this", "user_id": "12345"}}


async def test_entries_that_break_the_wire_format_are_dead_lettered_and_the_reader_goes_on(
    redis_server: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    code = "def echo(doc):\n    return {'got': doc}\n"
    path = write_pipeline(tmp_path, pipeline_name, 'only:\n  function: "{mod}:echo"', code)
    async with running_pipeline(path, redis_server.url) as pipeline:
        client = await pipeline.client()
        stream = f"{{{pipeline_name}}}:input"
        bad: dict[str, dict[FieldT, EncodableT]] = {
            "bare field": {"blob": b"\xff\xfe\x00bin"},
            "trace": {"data": b"{}", "trace": b"\xff"},
            "job": {"job": b"\xc3(", "data": b"{}"},
            "attempt": {"data": b"{}", "for": b"only", "attempt": b"many"},
        }
        ids = {what: text(await client.xadd(stream, fields)) for what, fields in bad.items()}
        good = await pipeline.submit_async({"n": 1})
        jobs = await pipeline.wait_all_async([*ids.values(), good], timeout=15)
    assert jobs[good].result == {"got": {"n": 1}}
    assert {jobs[job].state for job in ids.values()} == {"failed"}
    letters = {letter["id"]: letter for letter in dead_letters(redis_server, pipeline_name)}
    assert letters[ids["bare field"]]["error"] == "entry field 'blob' is not UTF-8 text"
    assert letters[ids["bare field"]]["data"] == '{"blob":"\\\\xff\\\\xfe\\u0000bin"}'
    assert letters[ids["trace"]]["error"] == "entry field 'trace' is not UTF-8 text"
    assert letters[ids["job"]]["error"] == "entry field 'job' is not UTF-8 text"
    assert letters[ids["job"]]["job"] == ids["job"]  # no readable job id: the entry's own
    assert letters[ids["attempt"]]["error"] == "entry field 'attempt' is not a number: 'many'"
