"""XINFO CONSUMERS lists the workers that run: each announces itself at start (6.2+), leaves
at a graceful stop, and consumers long gone are tidied; one holding messages never is."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pipelines import write_pipeline
from servers import RedisServer

from framework.connection import connect
from framework.groups import retire_consumers
from framework.testing import running_pipeline

CODE = "def same(doc):\n    return doc\n"


async def test_a_worker_is_listed_while_it_runs_and_gone_after_it_stops(
    redis_server: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, 'only:\n  function: "{mod}:same"', CODE)
    stream = f"{{{pipeline_name}}}:input"
    async with running_pipeline(path, redis_server.url) as pipeline:
        client = await pipeline.client()
        await pipeline.wait_async(await pipeline.submit_async({"n": 1}), timeout=10)
        running = await client.xinfo_consumers(stream, "only")
        assert len(running) == 1
    with redis_server.client() as sync:
        assert sync.xinfo_consumers(stream, "only") == []


async def test_a_consumer_holding_messages_is_never_removed(
    redis_server: RedisServer, pipeline_name: str
) -> None:
    client, _ = await connect(redis_server.url)
    stream = f"{{{pipeline_name}}}:input"
    try:
        await client.xgroup_create(stream, "only", id="0", mkstream=True)
        await client.xadd(stream, {"data": "{}"})
        await client.xreadgroup("only", "holder", {stream: ">"})
        await client.execute_command("XGROUP", "CREATECONSUMER", stream, "only", "gone")
        await client.execute_command("XGROUP", "CREATECONSUMER", stream, "only", "idle")
        removed = await retire_consumers(client, stream, "only", "holder", stale=timedelta(0))
        assert removed == 2
        [left] = await client.xinfo_consumers(stream, "only")
        assert left["name"] == b"holder"
        assert left["pending"] == 1
    finally:
        await client.delete(stream)
        await client.aclose()
