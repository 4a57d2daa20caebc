"""Redis restarted mid-run (AOF, appendfsync always), or refusing writes at maxmemory: workers
log, reconnect or wait, and carry on; every job is done and no stage hands any message on
twice. The lease heartbeat outlives a Redis that came back empty."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from pipelines import job_states, outputs_per_job, start_worker, stop, write_pipeline
from redis.exceptions import OutOfMemoryError
from servers import RedisServer, wait_until

from framework import scripts
from framework.connection import connect
from framework.pipeline import Pipeline
from framework.worker.leases import LeaseKeeper

CODE = """
import time

def step(doc):
    time.sleep(0.002)
    return doc
"""
STAGES = ("a", "b", "c")


@pytest.mark.slow
def test_all_jobs_done_none_duplicated_across_a_redis_restart(
    restartable_redis: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    stages = "\n".join(f'{s}:\n  function: "{{mod}}:step"\n  concurrency: 2' for s in STAGES)
    path = write_pipeline(tmp_path, pipeline_name, stages, CODE, "defaults:\n  lease: 2s")
    url = restartable_redis.url
    with Pipeline.load(path, {"REDIS_URL": url}) as pipeline:
        ids = pipeline.submit_many([{"n": n} for n in range(400)])
    log = tmp_path / "workers.log"
    workers = [start_worker(path, stage, url, log=log) for stage in STAGES]
    client = restartable_redis.client()
    wait_until(
        lambda: job_states(client, pipeline_name, ids)["done"] >= 20,
        timeout=20,
        what="the run to be under way",
    )
    restartable_redis.kill()
    time.sleep(1.0)  # Redis stays down for a second: workers must wait it out
    restartable_redis.restart()
    client = restartable_redis.client()
    try:
        wait_until(
            lambda: job_states(client, pipeline_name, ids)["done"] == 400,
            timeout=60,
            what="all jobs done after the restart",
        )
    finally:
        statuses = [stop(worker) for worker in workers]
    assert statuses == [0, 0, 0], log.read_text()[-3000:]
    for stage in STAGES:
        assert set(outputs_per_job(client, f"{{{pipeline_name}}}:{stage}").values()) == {1}
    assert '"redis_unavailable"' in log.read_text()


@pytest.mark.slow
def test_a_redis_at_maxmemory_makes_workers_wait_not_exit(
    restartable_redis: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    stages = "\n".join(f'{s}:\n  function: "{{mod}}:step"' for s in STAGES)
    path = write_pipeline(tmp_path, pipeline_name, stages, CODE)
    url = restartable_redis.url
    with Pipeline.load(path, {"REDIS_URL": url}) as pipeline:
        ids = pipeline.submit_many([{"n": n} for n in range(300)])
    log = tmp_path / "workers.log"
    workers = [start_worker(path, stage, url, log=log) for stage in STAGES]
    client = restartable_redis.client()
    try:
        wait_until(lambda: job_states(client, pipeline_name, ids)["done"] >= 10, 20, "a start")
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used - 100_000)  # every write refused with OOM
        time.sleep(2.0)
        client.config_set("maxmemory", 0)
        wait_until(lambda: job_states(client, pipeline_name, ids)["done"] == 300, 60, "the rest")
    finally:
        client.config_set("maxmemory", 0)
        statuses = [stop(worker) for worker in workers]
    assert statuses == [0, 0, 0], log.read_text()[-3000:]
    assert "command not allowed when used memory" in log.read_text()
    assert "Traceback" not in log.read_text()
    for stage in STAGES:
        assert set(outputs_per_job(client, f"{{{pipeline_name}}}:{stage}").values()) == {1}


def test_the_lease_heartbeat_outlives_a_redis_that_came_back_empty(
    redis7: RedisServer, pipeline_name: str
) -> None:
    stream = f"{{{pipeline_name}}}:input"
    lost: list[list[str]] = []
    keeper = LeaseKeeper(
        redis7.client(), stream, "stage", "me", timedelta(seconds=0.3), lambda: ["1-1"], lost.append
    )
    keeper.start()
    try:
        time.sleep(0.5)  # renewals every 0.1 s, each answered NOGROUP: no such group or stream
        assert keeper._thread.is_alive()
    finally:
        keeper.stop()


async def test_a_script_refused_at_maxmemory_raises_the_out_of_memory_class_on_every_version(
    redis_server: RedisServer, pipeline_name: str
) -> None:
    # Before 7.0 the refusal comes wrapped in "Error running script ...": unwrapped, it is
    # waited out like a lost connection instead of stopping the worker.
    client, _ = await connect(redis_server.url)
    used = int((await client.info("memory"))["used_memory"])
    await client.config_set("maxmemory", max(used - 100_000, 1))
    try:
        with pytest.raises(OutOfMemoryError):
            await scripts.script(scripts.SUBMIT)(
                client,
                [f"{{{pipeline_name}}}:input", f"{{{pipeline_name}}}:job:j"],
                ["j", "{}", "", 0, 60, "", "stage", f"{{{pipeline_name}}}:job:"],
            )
    finally:
        await client.config_set("maxmemory", 0)
        await client.aclose()
