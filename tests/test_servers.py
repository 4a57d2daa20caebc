"""The test infrastructure itself: every fixture gives the server it promises, the leak check bites.

Why test the fixtures: the engine's tests prove durability and recovery *against these servers*;
a restart that silently lost its AOF, a "6.2" that is really 7, or a leak check that never fails
would make those proofs hollow. Everything here is quick (well under 10 s with the cluster).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import redis
from redis.cluster import RedisCluster
from servers import RedisClusterNodes, RedisServer, async_wait_until, stray_keys, wait_until

EXPECTED_VERSION = {"redis7": "7.", "redis62": "6.2."}


def test_each_version_answers_and_is_the_one_expected(
    redis_server: RedisServer, request: pytest.FixtureRequest
) -> None:
    expected = EXPECTED_VERSION[request.node.callspec.params["redis_server"]]
    with redis_server.client() as client:
        assert client.ping()
        assert client.info("server")["redis_version"].startswith(expected)
    assert redis_server.version.startswith(expected)
    assert redis_server.port != 6379


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_restart_keeps_a_stream_entry_written_before(
    restartable_redis: RedisServer, pipeline_name: str, how: str
) -> None:
    stream = "{" + pipeline_name + "}:input"
    with restartable_redis.client() as client:
        entry_id = client.xadd(stream, {"job": "j1"})
    port = restartable_redis.port
    getattr(restartable_redis, how)()  # graceful SIGTERM, or a crash
    assert not restartable_redis.running
    restartable_redis.restart()
    assert restartable_redis.port == port
    with restartable_redis.client() as client:
        assert client.xrange(stream) == [(entry_id, {b"job": b"j1"})]


def test_cluster_is_ok_and_runs_multi_within_one_slot(
    redis_cluster: RedisClusterNodes, pipeline_name: str
) -> None:
    assert len(redis_cluster.urls) == 3
    for url in redis_cluster.urls:
        with redis.Redis.from_url(url, decode_responses=True) as node:
            assert node.cluster("INFO")["cluster_state"] == "ok"
    tag = "{" + pipeline_name + "}"
    with RedisCluster.from_url(redis_cluster.url) as cluster:
        assert cluster.keyslot(f"{tag}:a") == cluster.keyslot(f"{tag}:b")
        pipe = cluster.pipeline(transaction=True)
        pipe.xadd(f"{tag}:a", {"n": "1"})
        pipe.xadd(f"{tag}:b", {"n": "2"})
        ids = pipe.execute()
        assert len(ids) == 2
        assert cluster.xlen(f"{tag}:a") == cluster.xlen(f"{tag}:b") == 1


def test_tls_server_answers_over_rediss_with_the_ca(tls_redis: RedisServer) -> None:
    assert tls_redis.url.startswith("rediss://127.0.0.1:")
    with redis.Redis.from_url(tls_redis.url, ssl_ca_certs=str(tls_redis.ca_file)) as client:
        assert client.ping()


def test_leak_check_accepts_design_keys_and_names_every_other(
    redis7: RedisServer, pipeline_name: str
) -> None:
    tag = "{" + pipeline_name + "}"
    with redis7.client() as client:
        for stream in ("input", "dead", "done", "embed", "ocr-v2_x"):
            client.xadd(f"{tag}:{stream}", {"job": "j1"})
        client.zadd(f"{tag}:retry", {"m": 1.0})
        client.hset(f"{tag}:job:j1", "state", "done")
        assert stray_keys(client, pipeline_name) == []

        strays: dict[str, Callable[[str], object]] = {
            f"{tag}:embed2": lambda key: client.hset(key, "a", "b"),  # a stage name, not a stream
            f"{tag}:retry2:x": lambda key: client.set(key, "1"),  # not a listed key at all
            f"{tag}:job": lambda key: client.hset(key, "a", "b"),  # job hash without an id
            f"{tag}:job:j2": lambda key: client.set(key, "1"),  # job id, wrong type
            f"{tag}:dead letters": lambda key: client.xadd(key, {"a": "b"}),  # not a stage name
        }
        try:
            for key, write in strays.items():
                write(key)
            found = stray_keys(client, pipeline_name)
            assert len(found) == len(strays)
            for key in strays:
                assert any(repr(key) in problem for problem in found), key
        finally:
            client.delete(*strays)


def test_wait_until_returns_the_value_or_names_what_timed_out() -> None:
    values = iter([0, None, "ready"])
    assert wait_until(lambda: next(values), what="ready") == "ready"
    with pytest.raises(AssertionError, match=r"waiting for the moon; last: 0"):
        wait_until(lambda: 0, timeout=0.05, what="the moon")


async def test_async_wait_until_takes_sync_and_async_predicates() -> None:
    calls: list[int] = []

    async def third_time() -> bool:
        calls.append(1)
        return len(calls) >= 3

    assert await async_wait_until(third_time, what="third call") is True
    assert await async_wait_until(lambda: 5) == 5
    with pytest.raises(AssertionError, match="never"):
        await async_wait_until(lambda: False, timeout=0.05, what="never")


@pytest.mark.parametrize("case", ["a b/c", "x"])
def test_pipeline_name_is_plain_and_names_the_test(pipeline_name: str, case: str) -> None:
    assert re.fullmatch(r"[A-Za-z0-9_-]+", pipeline_name)
    assert pipeline_name.startswith("t-pipeline_name_is_")
    assert re.search(rf"-{re.sub('[^a-z]+', '-', case)}-[0-9a-f]{{8}}$", pipeline_name)
