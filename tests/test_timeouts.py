"""`timeout:` a call running longer counts as a failed attempt; a sync call that hangs keeps
its thread, but the stage gets fresh threads, so the messages behind it are not timed out."""

from __future__ import annotations

from pathlib import Path

from pipelines import write_pipeline
from servers import RedisServer

from framework.testing import running_pipeline

CODE = """
import asyncio, time

def hangs_once(doc, ctx):
    if doc["hang"] and ctx.attempt == 1:
        time.sleep(3)
    return {"n": doc["n"], "attempt": ctx.attempt}

async def always_slow(doc):
    await asyncio.sleep(5)
    return doc
"""
TOP = "defaults:\n  timeout: 300ms\n  retry_backoff: 50ms\n  retry_backoff_max: 50ms"


async def test_a_hung_sync_call_does_not_time_out_the_messages_behind_it(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(
        tmp_path, pipeline_name, 'only:\n  function: "{mod}:hangs_once"', CODE, TOP
    )
    async with running_pipeline(path, redis7.url) as pipeline:
        hung = await pipeline.submit_async({"n": 0, "hang": True})
        others = await pipeline.submit_many_async([{"n": n, "hang": False} for n in range(1, 6)])
        jobs = await pipeline.wait_all_async([hung, *others], timeout=20)
    assert jobs[hung].result == {"n": 0, "attempt": 2}
    assert [jobs[j].result["attempt"] for j in others] == [1] * 5


async def test_a_call_past_its_timeout_is_retried_then_dead_lettered(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(
        tmp_path, pipeline_name, 'only:\n  function: "{mod}:always_slow"', CODE, TOP
    )
    async with running_pipeline(path, redis7.url) as pipeline:
        job = await pipeline.wait_async(await pipeline.submit_async({"n": 1}), timeout=20)
    assert job.state == "failed"
    assert (
        job.error
        == "only: StageTimeout: stage call ran past its timeout of 300ms (after 3 attempts)"
    )
