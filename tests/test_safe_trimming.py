"""Trimming to retention never removes an entry some group has not delivered and acknowledged."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pipelines import outputs_per_job, write_pipeline
from servers import RedisServer, async_wait_until

from framework.connection import AsyncClient
from framework.pipeline import Pipeline
from framework.retention import trim
from framework.specs import Retention
from framework.testing import running_pipeline
from framework.wire import read_reply

CODE = """
import time

def same(doc):
    return doc

def slow(doc):
    time.sleep(0.002)
    return doc
"""


async def test_undelivered_and_pending_entries_survive_trimming(
    redis_server: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    stages = 'fast:\n  function: "{mod}:same"\nslow:\n  function: "{mod}:slow"'
    path = write_pipeline(tmp_path, pipeline_name, stages, CODE, "retention:\n  max_len: 20")
    between = f"{{{pipeline_name}}}:fast"
    async with running_pipeline(path, redis_server.url, stages=["fast"]) as pipeline:
        ids = await pipeline.submit_many_async([{"n": n} for n in range(300)])
        client = await pipeline.client()
        await async_wait_until(
            lambda: _length_is(client, between, 300),
            timeout=20,
            what="all 300 undelivered entries kept",
        )
        # Direct trims under way too: nothing the `slow` group has not acked may go.
        assert await trim(client, between, Retention(max_len=1, max_age=None)) == 0
    async with running_pipeline(path, redis_server.url) as pipeline:
        client = await pipeline.client()
        trims = asyncio.create_task(_trim_all_the_time(client, between))
        jobs = await pipeline.wait_all_async(ids, timeout=60)
        trims.cancel()
        await trim(client, f"{{{pipeline_name}}}:slow", Retention(max_len=20, max_age=None))
        await async_wait_until(
            lambda: _length_at_most(client, between, 20),
            timeout=5,
            what="history trimmed to max_len once acknowledged",
        )
    assert {job.state for job in jobs.values()} == {"done"}
    with redis_server.client() as sync:
        assert set(outputs_per_job(sync, f"{{{pipeline_name}}}:slow").values()) <= {1}
        assert sync.xlen(f"{{{pipeline_name}}}:slow") == 20


async def _trim_all_the_time(client: AsyncClient, stream: str) -> None:
    while True:
        await trim(client, stream, Retention(max_len=1, max_age=None))
        await asyncio.sleep(0.001)


async def _length_is(client: AsyncClient, stream: str, length: int) -> bool:
    return bool(await client.xlen(stream) == length)


async def _length_at_most(client: AsyncClient, stream: str, length: int) -> bool:
    return bool(await client.xlen(stream) <= length)


async def test_max_age_trims_only_old_acknowledged_history(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, 'only:\n  function: "{mod}:same"', CODE)
    async with Pipeline.load(path, {"REDIS_URL": redis7.url}) as pipeline:
        client = await pipeline.client()
        stream = f"{{{pipeline_name}}}:input"
        await pipeline.submit_many_async([{"n": n} for n in range(5)])
        from datetime import timedelta

        old = Retention(max_len=None, max_age=timedelta(milliseconds=1))
        await asyncio.sleep(0.01)
        assert await trim(client, stream, old) == 0, "undelivered entries must stay"
        delivered = await client.xreadgroup("only", "c", {stream: ">"}, count=3)
        ids = [entry_id for entry_id, _ in read_reply(delivered)[0][1]]
        assert await trim(client, stream, old) == 0, "pending entries must stay"
        await client.xack(stream, "only", ids[0], ids[1])
        assert await trim(client, stream, old) == 2
        assert await client.xlen(stream) == 3
        await client.xack(stream, "only", ids[2])
        # Entries from {name}:input hold job hashes too; tidy them for the key check.
        await client.xreadgroup("only", "c", {stream: ">"})
