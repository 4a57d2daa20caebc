"""Leases: a live worker keeps its messages however long the call takes (even when the call
blocks the event loop), a killed worker's messages move on within about two leases, and a
message that kills every worker that runs it costs its neighbours nothing."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from pipelines import job_states, start_worker, stop, write_pipeline
from servers import RedisServer, wait_until

from framework.connection import Server, connect
from framework.pipeline import Pipeline
from framework.wire import Delivery, range_reply, text
from framework.worker.leases import mark_started, reclaim

CODE = """
import asyncio, os, time
RUNS = os.environ["RUNS_FILE"]

def _mark(doc, ctx):
    with open(RUNS, "a") as runs:
        runs.write(f"{ctx.job_id} {ctx.attempt} {os.getpid()}\\n")

def slow_in_thread(doc, ctx):
    _mark(doc, ctx)
    time.sleep(3)  # three leases
    return doc

async def blocks_the_loop(doc, ctx):
    _mark(doc, ctx)
    time.sleep(3)  # a synchronous model call inside async def: the event loop stalls
    return doc

def dies_on_poison(doc, ctx):
    _mark(doc, ctx)
    if doc.get("poison"):
        os.kill(os.getpid(), 9)
    return doc

def dies_on_poison_in_batch(docs, ctx):
    for doc, item in zip(docs, ctx.items):
        _mark(doc, item)
    if any(doc.get("poison") for doc in docs):
        os.kill(os.getpid(), 9)
    return docs

def stuck_first_time(doc, ctx):
    _mark(doc, ctx)
    if ctx.attempt == 1:
        time.sleep(60)
    return doc
"""

TOP = "defaults:\n  lease: 1s\n  max_attempts: 5"


def runs(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("function", ["slow_in_thread", "blocks_the_loop"])
def test_a_call_lasting_three_leases_is_not_run_twice(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path, function: str
) -> None:
    path = write_pipeline(
        tmp_path, pipeline_name, f'slow:\n  function: "{{mod}}:{function}"', CODE, TOP
    )
    runs_file = tmp_path / "runs.txt"
    workers = [
        start_worker(path, "slow", redis7.url, log=tmp_path / "w.log", RUNS_FILE=str(runs_file))
        for _ in range(2)
    ]
    client = redis7.client()
    try:
        with Pipeline.load(path, {"REDIS_URL": redis7.url}) as pipeline:
            ids = pipeline.submit_many([{"n": n} for n in range(3)])
        wait_until(
            lambda: job_states(client, pipeline_name, ids)["done"] == 3,
            timeout=30,
            what="three slow jobs done",
        )
    finally:
        assert [stop(w) for w in workers] == [0, 0]
    per_job = Counter(job for job, _attempt, _pid in runs(runs_file))
    assert per_job == dict.fromkeys(ids, 1), (tmp_path / "w.log").read_text()[-2000:]


@pytest.mark.slow
def test_a_killed_workers_message_moves_on_within_about_two_leases(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(
        tmp_path, pipeline_name, 'stuck:\n  function: "{mod}:stuck_first_time"', CODE, TOP
    )
    runs_file, log = tmp_path / "runs.txt", tmp_path / "w.log"
    env = {"RUNS_FILE": str(runs_file), "PIPELINE_LOG_LEVEL": "info"}
    client = redis7.client()
    workers = [start_worker(path, "stuck", redis7.url, log=log, **env) for _ in range(2)]
    try:
        wait_until(
            lambda: log.exists() and log.read_text().count('"worker_started"') == 2,
            timeout=20,
            what="both workers to start",
        )
        with Pipeline.load(path, {"REDIS_URL": redis7.url}) as pipeline:
            job = pipeline.submit({"n": 1})
        [[_job, _attempt, pid]] = wait_until(
            lambda: runs(runs_file), timeout=20, what="the first run to start"
        )
        [holder] = [w for w in workers if w.pid == int(pid)]
        holder.kill()
        holder.wait()
        killed_at = time.monotonic()
        wait_until(
            lambda: job_states(client, pipeline_name, [job])["done"] == 1,
            timeout=10,
            what="the job to finish elsewhere",
        )
        moved_after = time.monotonic() - killed_at
    finally:
        statuses = [stop(w) for w in workers]
    assert sorted(statuses) == [-9, 0]
    assert [attempt for _job, attempt, _pid in runs(runs_file)] == ["1", "2"]
    assert moved_after < 3.0, f"took {moved_after:.2f}s with a 1s lease"


@pytest.mark.slow
@pytest.mark.parametrize("batch", [False, True], ids=["one-by-one", "batch"])
def test_a_message_that_kills_its_worker_is_dead_lettered_and_its_neighbours_finish(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path, batch: bool
) -> None:
    # concurrency 1 holds two messages: the poison, and a neighbour read with it that never
    # starts before the worker dies. Each restart reclaims both; only the poison's runs count.
    # With `batch: 2`, the first batch runs the poison and a neighbour together (a run for
    # both); after that a reclaimed message runs alone, counted only as it starts.
    function = 'dies_on_poison_in_batch"\n  batch: 2' if batch else 'dies_on_poison"'
    stage = f'fragile:\n  function: "{{mod}}:{function}\n  max_attempts: 3'
    path = write_pipeline(tmp_path, pipeline_name, stage, CODE, TOP)
    runs_file, log = tmp_path / "runs.txt", tmp_path / "w.log"
    client = redis7.client()
    with Pipeline.load(path, {"REDIS_URL": redis7.url}) as pipeline:
        poison = pipeline.submit({"poison": True})
        fine = pipeline.submit_many([{"n": n} for n in range(3)])
    worker, restarts = None, 0
    try:
        deadline = time.monotonic() + 60
        ended = ("done", "failed")
        while sum(job_states(client, pipeline_name, [poison, *fine])[s] for s in ended) < 4:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            if worker is None or worker.poll() is not None:
                worker = start_worker(
                    path, "fragile", redis7.url, log=log, RUNS_FILE=str(runs_file)
                )
                restarts += 1
            time.sleep(0.1)
    finally:
        if worker is not None:
            stop(worker)
    assert job_states(client, pipeline_name, [poison]) == {"failed": 1}
    assert job_states(client, pipeline_name, fine) == {"done": 3}
    poison_runs = [attempt for job, attempt, _pid in runs(runs_file) if job == poison]
    assert poison_runs == ["1", "2", "3"]
    assert restarts == 4  # three killed, one that dead-letters the poison and runs the rest
    [(_id, letter)] = range_reply(client.xrange(f"{{{pipeline_name}}}:dead"))
    assert letter[b"job"].decode() == poison
    assert letter[b"error"].startswith(b"attempt 4 is over max_attempts 3: the last run never")
    if not batch:
        neighbour_runs = Counter(job for job, _a, _p in runs(runs_file) if job != poison)
        assert neighbour_runs == dict.fromkeys(fine, 1)


@pytest.mark.parametrize("autoclaim", [True, False], ids=["xautoclaim", "xpending-xclaim"])
async def test_a_reclaimed_message_costs_an_attempt_only_when_its_run_starts(
    redis_server: RedisServer, pipeline_name: str, autoclaim: bool
) -> None:
    stream, group = f"{{{pipeline_name}}}:input", "stage"
    server = Server((6, 2) if autoclaim else (6, 0), cluster=False)
    client, _ = await connect(redis_server.url)

    async def deliveries() -> int:
        [entry] = await client.xpending_range(stream, group, "-", "+", 1)
        return int(entry["times_delivered"])

    async def reclaimed_by(consumer: str) -> Delivery:
        _, [delivery] = await reclaim(
            client, server, stream, group, consumer, timedelta(0), "0-0", 10
        )
        return delivery

    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
        entry = text(await client.xadd(stream, {"job": "j", "data": "{}"}))
        await client.xreadgroup(group, "first", {stream: ">"})
        assert await deliveries() == 1  # the first delivery counts: no one can tell it ran

        held = await reclaimed_by("second")  # held, never started: costs nothing
        assert (held.message_id, held.attempt, held.claimed) == (entry, 2, True)
        assert await deliveries() == 1
        again = await reclaimed_by("third")
        assert again.attempt == 2
        assert await deliveries() == 1

        assert await mark_started(client, stream, group, "third", [again]) == {entry}
        assert await deliveries() == 2  # its run started
        assert await mark_started(client, stream, group, "second", [held]) == set()  # not ours
        assert (await reclaimed_by("fourth")).attempt == 3
    finally:
        await client.aclose()
