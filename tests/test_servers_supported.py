"""The same pipeline on Redis Cluster, over TLS and over a unix socket: one pipeline lives in
one hash slot, and every kind of connection redis-py makes carries the engine's commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import redis7_binary
from pipelines import write_pipeline
from servers import RedisClusterNodes, RedisServer, start_redis

from framework.connection import connect
from framework.errors import RedisUnavailable
from framework.testing import running_pipeline

CODE = """
def split(doc):
    return [{"part": i} for i in range(doc["parts"])]

def double(doc):
    return {"part": doc["part"] * 2}
"""
STAGES = 'split:\n  function: "{mod}:split"\ndouble:\n  function: "{mod}:double"'


async def test_fan_out_pipeline_on_a_redis_cluster(
    redis_cluster: RedisClusterNodes, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, STAGES, CODE)
    async with running_pipeline(path, redis_cluster.url) as pipeline:
        ids = await pipeline.submit_many_async([{"parts": n} for n in range(1, 6)])
        jobs = await pipeline.wait_all_async(ids, timeout=20)
    assert [sorted(r["part"] for r in jobs[i].results) for i in ids] == [
        [2 * p for p in range(n)] for n in range(1, 6)
    ]


async def test_pipeline_over_tls(
    tls_redis: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, STAGES, CODE)
    url = f"{tls_redis.url}?ssl_ca_certs={tls_redis.ca_file}"
    async with running_pipeline(path, url) as pipeline:
        job = await pipeline.wait_async(await pipeline.submit_async({"parts": 3}), timeout=10)
    assert sorted(r["part"] for r in job.results) == [0, 2, 4]


async def test_pipeline_over_a_unix_socket(
    unix_redis: tuple[RedisServer, str], pipeline_name: str, tmp_path: Path
) -> None:
    _server, url = unix_redis
    path = write_pipeline(tmp_path, pipeline_name, STAGES, CODE)
    async with running_pipeline(path, url) as pipeline:
        job = await pipeline.wait_async(await pipeline.submit_async({"parts": 3}), timeout=10)
    assert sorted(r["part"] for r in job.results) == [0, 2, 4]


async def test_a_url_that_leads_to_a_replica_is_refused_at_connect(
    redis7: RedisServer, tmp_path: Path
) -> None:
    # Every write would be refused READONLY and waited out for ever: say so at once.
    replica = start_redis(redis7_binary(), tmp_path, "--replicaof", "127.0.0.1", str(redis7.port))
    try:
        refused = r"is a replica \(read-only\): point redis\.url at the primary"
        with pytest.raises(RedisUnavailable, match=refused):
            await connect(replica.url)
    finally:
        replica.kill()
