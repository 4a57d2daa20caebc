"""`max_backlog`: while a stage is over it, the stages feeding it stop reading and submit to a
full first stage refuses, so memory stays bounded without trimming unprocessed work."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipelines import write_pipeline
from servers import RedisServer, async_wait_until

from framework import BacklogFull
from framework.connection import AsyncClient
from framework.pipeline import Pipeline
from framework.testing import running_pipeline

CODE = "def same(doc):\n    return doc\n"


async def test_feeding_stage_pauses_while_the_next_is_over_its_backlog(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    stages = 'feed:\n  function: "{mod}:same"\nslow:\n  function: "{mod}:same"\n  max_backlog: 20'
    path = write_pipeline(tmp_path, pipeline_name, stages, CODE)
    output = f"{{{pipeline_name}}}:feed"
    async with running_pipeline(path, redis7.url, stages=["feed"]) as pipeline:
        ids = await pipeline.submit_many_async([{"n": n} for n in range(200)])
        client = await pipeline.client()
        await async_wait_until(lambda: client.xlen(output), what="feed to start")
        # The reader re-checks the backlog every 100 ms, with at most 2 messages in hand.
        await async_wait_until(lambda: _settled(client, output), timeout=5, what="feed to pause")
        assert 20 <= await client.xlen(output) <= 24
    async with running_pipeline(path, redis7.url) as pipeline:
        jobs = await pipeline.wait_all_async(ids, timeout=30)
    assert {job.state for job in jobs.values()} == {"done"}


async def _settled(client: AsyncClient, stream: str) -> bool:
    import asyncio

    before = await client.xlen(stream)
    await asyncio.sleep(0.3)
    return bool(before == await client.xlen(stream))


async def test_submit_to_a_full_first_stage_refuses_and_writes_nothing(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    stages = 'first:\n  function: "{mod}:same"\n  max_backlog: 5'
    path = write_pipeline(tmp_path, pipeline_name, stages, CODE)
    async with Pipeline.load(path, {"REDIS_URL": redis7.url}) as pipeline:
        for n in range(5):
            await pipeline.submit_async({"n": n})
        with pytest.raises(BacklogFull, match="stage 'first' is full: backlog 5"):
            await pipeline.submit_async({"n": 5}, job_id="one-too-many")
        client = await pipeline.client()
        assert await client.xlen(f"{{{pipeline_name}}}:input") == 5
        assert not await client.exists(f"{{{pipeline_name}}}:job:one-too-many")
    async with running_pipeline(path, redis7.url) as pipeline:
        await async_wait_until(
            lambda: _backlog_below(pipeline, 5), timeout=10, what="the stage to drain"
        )
        assert await pipeline.submit_async({"n": 6})


async def _backlog_below(pipeline: Pipeline, limit: int) -> bool:
    client = await pipeline.client()
    [group] = await client.xinfo_groups(f"{{{pipeline.name}}}:input")
    return bool(group["pending"] + (group["lag"] or 0) < limit)
