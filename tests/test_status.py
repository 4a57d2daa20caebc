"""Status reads counts, never payloads: dead letters, waiting retries and outputs per second come
from the `{name}:stats` tallies, which every script that adds or removes such an item keeps."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from pipelines import write_pipeline
from servers import RedisServer, async_wait_until

from framework import scripts
from framework.connection import AsyncClient
from framework.dead_letters import purge, redrive, selected_pages
from framework.pipeline import Pipeline
from framework.retention import trim
from framework.specs import Retention
from framework.stats import read_stats, throughput
from framework.testing import running_pipeline
from framework.wire import text

PAYLOAD_BYTES = 200_000

CODE = """\
from framework import Fail, Retry

def same(doc):
    return doc

def judge(doc):
    if doc["n"] % 2:
        raise Fail("odd")
    raise Retry(after=3600)
"""
STAGES = 'one:\n  function: "{mod}:same"\ntwo:\n  function: "{mod}:judge"'


def net_output_bytes(server: RedisServer) -> int:
    with server.client() as client:
        return int(client.info("stats")["total_net_output_bytes"])


async def dead_and_waiting(
    server: RedisServer, tmp_path: Path, name: str
) -> tuple[Pipeline, list[str]]:
    """Ten big jobs: five dead letters of stage two, five retries of it waiting an hour."""
    path = write_pipeline(tmp_path, name, STAGES, CODE, "max_payload: 1MiB")
    big = "x" * PAYLOAD_BYTES
    async with running_pipeline(path, server.url) as pipeline:
        ids = [await pipeline.submit_async({"n": n, "text": big}) for n in range(10)]
        client = await pipeline.client()
        await async_wait_until(
            lambda: _count(client, pipeline), timeout=30, what="5 dead letters and 5 retries"
        )
    return Pipeline.load(path, {"REDIS_URL": server.url}), ids


async def _count(client: AsyncClient, pipeline: Pipeline) -> bool:
    keys = pipeline.spec.keys
    return bool(await client.xlen(keys.dead) == 5 and await client.zcard(keys.retry) == 5)


async def test_status_counts_by_stage_without_reading_a_payload(
    redis_server: RedisServer, tmp_path: Path, pipeline_name: str
) -> None:
    pipeline, _ = await dead_and_waiting(redis_server, tmp_path, pipeline_name)
    try:
        client = await pipeline.client()
        server = await pipeline.server()
        await read_stats(client, server, pipeline.spec)  # connections made, scripts loaded
        before = net_output_bytes(redis_server)
        stats = await read_stats(client, server, pipeline.spec)
        sent = net_output_bytes(redis_server) - before
    finally:
        await pipeline.close_async()
    assert sent < PAYLOAD_BYTES / 4, f"status received {sent} bytes: it read a payload"
    assert (stats.dead.by_stage, stats.dead.total, stats.dead.exact) == ({"two": 5}, 5, True)
    assert (stats.retries.by_stage, stats.retries.total) == ({"two": 5}, 5)
    two = stats.stages[1]
    assert (two.dead_letters, two.retries, two.lag, two.pending) == (5, 5, 0, 0)


async def test_tallies_follow_purge_redrive_promotion_and_trim(
    redis_server: RedisServer, tmp_path: Path, pipeline_name: str
) -> None:
    pipeline, _ = await dead_and_waiting(redis_server, tmp_path, pipeline_name)
    spec = pipeline.spec
    try:
        client = await pipeline.client()
        server = await pipeline.server()
        letters = [
            letter async for page in selected_pages(client, spec, [], None) for letter in page
        ]
        assert await purge(client, spec, letters[:1]) == 1
        assert await purge(client, spec, letters[:1]) == 0, "gone already: not counted twice"
        assert await redrive(client, spec, letters[1:2]) == 1
        assert await trim(client, spec.keys.dead, Retention(2, None), spec.keys.stats) == 1
        far_future = int(time.time() * 1000) + 7200_000
        promoted = await scripts.script(scripts.PROMOTE)(
            client, [spec.keys.retry, spec.keys.stats], [far_future, 2]
        )
        assert promoted == 2
        stats = await read_stats(client, server, spec)
        await client.delete(spec.keys.input)  # the promoted and re-driven entries: not run here
    finally:
        await pipeline.close_async()
    assert (stats.dead.by_stage, stats.dead.total, stats.dead.exact) == ({"two": 2}, 2, True)
    assert (stats.retries.by_stage, stats.retries.total, stats.retries.exact) == (
        {"two": 3},
        3,
        True,
    )


async def test_readings_rotate_every_period(redis7: RedisServer, pipeline_name: str) -> None:
    stats_key = "{" + pipeline_name + "}:stats"
    snapshot = scripts.script(scripts.SNAPSHOT)
    with redis7.client() as sync:
        sync.hset(stats_key, "out.a", 10)
    client = redis.asyncio.Redis.from_url(redis7.url)
    try:
        assert await snapshot(client, [stats_key], [1_000_000, 10_000]) == 1
        assert await snapshot(client, [stats_key], [1_005_000, 10_000]) == 0, "too soon"
        await client.hincrby(stats_key, "out.a", 50)
        assert await snapshot(client, [stats_key], [1_010_000, 10_000]) == 1
        raw = await client.hgetall(stats_key)
    finally:
        await client.delete(stats_key)
        await client.aclose()
    counters = {text(key): int(value) for key, value in raw.items()}
    assert counters == {
        "out.a": 60,
        "snap.at": 1_010_000,
        "snap.out.a": 60,
        "prev.at": 1_000_000,
        "prev.out.a": 10,
    }
    assert throughput({**counters, "out.a": 110}, "a", 1_020_000) == pytest.approx(5.0)


def test_throughput_without_readings_is_zero_and_falls_when_nothing_runs() -> None:
    assert throughput({"out.a": 500}, "a", 2_000_000) == 0.0
    counters = {"out.a": 500, "snap.at": 1_000_000, "snap.out.a": 400}
    assert throughput(counters, "a", 1_010_000) == pytest.approx(10.0)
    assert throughput(counters, "a", 1_100_000) == pytest.approx(1.0)
