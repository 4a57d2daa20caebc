"""SIGTERM: stop reading, finish what is running within the grace period, hand back the rest
without costing an attempt, exit 0; a new worker finishes the job, nothing lost or doubled."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis
from pipelines import job_states, outputs_per_job, start_worker, stop, worker_env, write_pipeline
from servers import RedisServer, async_wait_until, wait_until

from framework.pipeline import Pipeline

CODE = """
import time

def slow(doc, ctx):
    time.sleep(0.2)
    return {**doc, "attempt": ctx.attempt}
"""


def _thirty_slow_jobs(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> tuple[Path, redis.Redis, list[str]]:
    """A stage of 0.2 s calls, 3 at a time, with 30 jobs queued: the pipeline file, a client,
    the job ids."""
    stages = 'slow:\n  function: "{mod}:slow"\n  concurrency: 3'
    path = write_pipeline(tmp_path, pipeline_name, stages, CODE, "defaults:\n  lease: 2s")
    with Pipeline.load(path, {"REDIS_URL": redis7.url}) as pipeline:
        ids = pipeline.submit_many([{"n": n} for n in range(30)])
    return path, redis7.client(), ids


@pytest.mark.slow
def test_sigterm_mid_run_exits_zero_and_loses_nothing(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path, client, ids = _thirty_slow_jobs(redis7, pipeline_name, tmp_path)
    worker = start_worker(path, "slow", redis7.url, log=tmp_path / "w.log")
    wait_until(
        lambda: job_states(client, pipeline_name, ids)["done"] >= 3,
        timeout=20,
        what="some jobs done",
    )
    assert stop(worker) == 0, (tmp_path / "w.log").read_text()[-2000:]
    pending = client.xpending(f"{{{pipeline_name}}}:input", "slow")["pending"]
    handed_back = pending  # unstarted messages were handed back, not run
    assert job_states(client, pipeline_name, ids)["done"] < 30, "stopped before the end"

    successor = start_worker(path, "slow", redis7.url, log=tmp_path / "w.log")
    wait_until(
        lambda: job_states(client, pipeline_name, ids)["done"] == 30,
        timeout=30,
        what="all jobs done by the successor",
    )
    assert stop(successor) == 0
    assert set(outputs_per_job(client, f"{{{pipeline_name}}}:slow").values()) == {1}
    with Pipeline.load(path, {"REDIS_URL": redis7.url}) as pipeline:
        attempts = {pipeline.status(job).result["attempt"] for job in ids}
    assert attempts == {1}, f"a handed-back message cost an attempt ({handed_back} handed back)"


HANGS_FIRST = """
import time

def hangs_first(doc, ctx):
    if ctx.attempt == 1:
        time.sleep(30)
    return {**doc, "attempt": ctx.attempt}
"""


@pytest.mark.slow
def test_a_call_still_running_after_the_grace_period_keeps_its_attempt(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    # Handed back at exit, it ran: a call that hangs every worker it runs on must reach
    # max_attempts, not run for ever.
    stages = 'hangs:\n  function: "{mod}:hangs_first"'
    path = write_pipeline(tmp_path, pipeline_name, stages, HANGS_FIRST, "defaults:\n  lease: 2s")
    client = redis7.client()
    with Pipeline.load(path, {"REDIS_URL": redis7.url}) as pipeline:
        job = pipeline.submit({"n": 1})
    log = tmp_path / "w.log"
    worker = start_worker(path, "hangs", redis7.url, "--grace-period", "0.3s", log=log)
    wait_until(
        lambda: client.xpending(f"{{{pipeline_name}}}:input", "hangs")["pending"] == 1,
        timeout=20,
        what="the call to start",
    )
    assert stop(worker) == 0, log.read_text()[-2000:]
    successor = start_worker(path, "hangs", redis7.url, log=log)
    try:
        wait_until(lambda: job_states(client, pipeline_name, [job])["done"] == 1, 20, "done")
    finally:
        assert stop(successor) == 0
    with Pipeline.load(path, {"REDIS_URL": redis7.url}) as pipeline:
        assert pipeline.status(job).result["attempt"] == 2


@pytest.mark.slow
def test_a_worker_whose_log_went_away_still_stops_and_loses_nothing(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    # Its stderr a pipe whose reader is gone (a supervisor restarted, `| head` ended): every
    # log line now fails to be written. SIGTERM must still stop it gracefully.
    path, client, ids = _thirty_slow_jobs(redis7, pipeline_name, tmp_path)
    command = [sys.executable, "-m", "framework", "-f", str(path), "worker", "slow"]
    worker = subprocess.Popen(
        command,
        env=worker_env(redis7.url, PIPELINE_LOG_LEVEL="info"),  # a line per message
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_until(lambda: job_states(client, pipeline_name, ids)["done"] >= 3, 20, "some jobs done")
    for output in (worker.stdout, worker.stderr):
        assert output is not None
        output.close()
    done = job_states(client, pipeline_name, ids)["done"]
    wait_until(
        lambda: job_states(client, pipeline_name, ids)["done"] >= done + 3,
        10,
        "jobs done with the log gone",
    )
    assert worker.poll() is None, "the worker died with its log"
    assert stop(worker) == 0
    successor = start_worker(path, "slow", redis7.url)
    try:
        wait_until(lambda: job_states(client, pipeline_name, ids)["done"] == 30, 30, "all done")
    finally:
        assert stop(successor) == 0
    assert set(outputs_per_job(client, f"{{{pipeline_name}}}:slow").values()) == {1}


async def test_a_cancelled_worker_leaves_no_runner_thread_behind(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    # Cancelled (a sibling stage's worker failed in the same process): its idle runner
    # threads must end, or the process could never exit.
    stages = 'slow:\n  function: "{mod}:slow"\n  concurrency: 3'
    path = write_pipeline(tmp_path, pipeline_name, stages, CODE)
    pipeline = Pipeline.load(path, {"REDIS_URL": redis7.url})
    try:
        job = await pipeline.submit_async({"n": 1})
        running = asyncio.create_task(pipeline.run_workers_async(None, asyncio.Event()))
        await pipeline.wait_async(job, timeout=20)
        assert _runner_threads() == 3
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await async_wait_until(lambda: _runner_threads() == 0, 5, "the runner threads to end")
    finally:
        await pipeline.close_async()


def _runner_threads() -> int:
    return sum(thread.name.startswith("stage-slow-") for thread in threading.enumerate())
