"""XINFO CONSUMERS lists the workers that run: each announces itself at start (6.2+), leaves
at a graceful stop, and consumers long gone are tidied; one holding messages never is."""

from __future__ import annotations

import asyncio
import socket
import sys
from datetime import timedelta
from pathlib import Path

import orjson
import structlog
import structlog.testing
from pipelines import start_worker, stop, write_pipeline
from servers import RedisServer, wait_until

from framework.connection import connect
from framework.groups import ensure_groups, retire_consumers
from framework.pipeline import Pipeline
from framework.testing import running_pipeline
from framework.worker.housekeeping import Housekeeper

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


def test_a_group_on_the_output_that_pipeline_yaml_lacks_is_reported(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    # A stage added to the file later, run while this worker still has the old file: jobs
    # would be counted done without it. The worker cannot tell it from another application's
    # group, so it says so.
    stages = 'one:\n  function: "{mod}:same"\ntwo:\n  function: "{mod}:same"'
    path = write_pipeline(tmp_path, pipeline_name, stages, CODE)
    with redis7.client() as client:
        client.xgroup_create(f"{{{pipeline_name}}}:one", "three", id="0", mkstream=True)
    log = tmp_path / "worker.log"
    worker = start_worker(path, "one", redis7.url, log=log)
    try:
        wait_until(lambda: "unknown_reader_group" in log.read_text(), 15, "the warning")
    finally:
        assert stop(worker) == 0
    [line] = [line for line in log.read_text().splitlines() if "unknown_reader_group" in line]
    event = orjson.loads(line)
    assert (event["stage"], event["group"]) == ("one", "three")
    assert "restart this worker with the pipeline.yaml that has it" in event["hint"]


async def test_with_an_embedded_redis_a_consumer_of_a_process_gone_from_this_host_is_removed(
    redis7: RedisServer, pipeline_name: str
) -> None:
    # An embedded Redis restarted from its AOF shows every consumer as freshly seen: a Ctrl-C'd
    # run's consumer would count as a live worker for another while. Elsewhere a PID is no
    # evidence (containers sharing a host name): only idle time counts.
    ended = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await ended.wait()
    stream = f"{{{pipeline_name}}}:input"
    gone = f"{socket.gethostname()}-{ended.pid}-1"
    elsewhere = f"other-host-{ended.pid}-1"
    client, _server = await connect(redis7.url)
    try:
        await client.xgroup_create(stream, "only", id="0", mkstream=True)
        for name in (gone, elsewhere):
            await client.execute_command("XGROUP", "CREATECONSUMER", stream, "only", name)

        async def names() -> set[str]:
            return {c["name"].decode() for c in await client.xinfo_consumers(stream, "only")}

        assert await retire_consumers(client, stream, "only") == 0
        assert await names() == {gone, elsewhere}
        assert await retire_consumers(client, stream, "only", local=True) == 1
        assert await names() == {elsewhere}  # another host's processes are not ours to judge
    finally:
        await client.aclose()


async def test_an_unknown_reader_group_is_reported_once_per_group(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    stages = 'one:\n  function: "{mod}:same"\ntwo:\n  function: "{mod}:same"'
    path = write_pipeline(tmp_path, pipeline_name, stages, CODE)
    spec = Pipeline.load(path, {"REDIS_URL": redis7.url}).spec
    client, _ = await connect(redis7.url)
    try:
        await ensure_groups(client, spec)
        keeper = Housekeeper(client, spec, [], "one")
        with structlog.testing.capture_logs() as events:
            for group in ("three", "four", None):
                if group is not None:
                    await client.xgroup_create(f"{{{pipeline_name}}}:one", group, id="0")
                keeper._readers_at = 0.0  # due now, as every 10 s
                await keeper._check_readers_if_due()
    finally:
        await client.aclose()
    reported = [e["group"] for e in events if e["event"] == "unknown_reader_group"]
    assert reported == ["three", "four"]  # `two` is a stage of the file; each once
