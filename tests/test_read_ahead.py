"""Read-ahead: how many messages a worker holds (worker/read_ahead.py), and what holding them
must never cost: a message waiting in a worker's hands keeps its lease (it is renewed like a
running one), so it is not run twice however long it waits; and a slow stage holds what its
runners run and no more, so two workers of it share the work instead of one hoarding it."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from pipelines import start_worker, stop, write_pipeline
from servers import RedisServer, wait_until

from framework.pipeline import Pipeline
from framework.worker.read_ahead import MOST, ReadAhead

CODE = """
import os, time
RUNS = os.environ["RUNS_FILE"]
PAUSE = float(os.environ.get("PAUSE", "0.3"))

def slow(doc):
    time.sleep(PAUSE)
    with open(RUNS, "a") as runs:
        runs.write(f"{doc['n']} {os.getpid()}\\n")
    return doc
"""


def runs(path: Path) -> list[list[str]]:
    """Each run's `n` and worker pid, in the order they ended."""
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines()]


# -- the rule --------------------------------------------------------------------------------


def test_unmeasured_a_worker_holds_what_its_runners_run() -> None:
    assert ReadAhead(4, None, timedelta(seconds=30)).capacity == 4
    assert ReadAhead(2, 32, timedelta(seconds=30)).capacity == 128  # a batch and the next


def test_a_fast_stage_holds_up_to_the_most() -> None:
    rule = ReadAhead(1, None, timedelta(seconds=30))
    rule.observe(0.002, 100)  # 20 us a call
    assert rule.capacity == MOST


def test_a_slow_stage_holds_no_more_than_its_runners_run() -> None:
    rule = ReadAhead(8, None, timedelta(seconds=30))
    rule.observe(3.0)  # a model call of 3 s
    assert rule.capacity == 8


def test_in_between_a_quarter_second_of_work_per_runner() -> None:
    rule = ReadAhead(2, None, timedelta(seconds=30))
    rule.observe(0.010)  # 10 ms a call: 25 per runner in a quarter second
    assert rule.capacity == 50


def test_never_more_than_finishes_within_a_quarter_lease() -> None:
    rule = ReadAhead(1, None, timedelta(seconds=1))
    rule.observe(0.005)  # 50 in a quarter second, 50 in a quarter of a 1 s lease too
    assert rule.capacity == 50
    short = ReadAhead(1, None, timedelta(milliseconds=200))
    short.observe(0.005)  # a quarter of the lease is 50 ms: 10 calls
    assert short.capacity == 10


def test_prefetch_fixes_the_number() -> None:
    rule = ReadAhead(1, None, timedelta(seconds=30), prefetch=7)
    rule.observe(0.000_01)
    assert rule.capacity == 7


def test_the_measure_follows_the_calls() -> None:
    rule = ReadAhead(1, None, timedelta(seconds=30))
    rule.observe(1.0)
    assert rule.capacity == 1
    for _ in range(50):
        rule.observe(0.0005)  # the stage got fast: the average follows within a few batches
    assert rule.capacity == MOST


# -- what holding must never cost ------------------------------------------------------------


@pytest.mark.slow
def test_a_message_held_for_many_leases_is_run_once_with_another_worker_waiting(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    """`prefetch: 20` with 0.3 s calls and a 1 s lease: the last of a read waits six seconds,
    six leases, in the first worker's hands, while a second worker reclaims every lease it can
    find expired. Renewed as they wait, none expires: each runs once."""
    stage = 'slow:\n  function: "{mod}:slow"\n  prefetch: 20\n  lease: 1s'
    path = write_pipeline(tmp_path, pipeline_name, stage, CODE)
    runs_file = tmp_path / "runs.txt"
    with Pipeline.load(path, {"REDIS_URL": redis7.url}) as pipeline:
        pipeline.submit_many([{"n": n} for n in range(20)])
    first = start_worker(path, "slow", redis7.url, RUNS_FILE=str(runs_file))
    wait_until(lambda: runs(runs_file), timeout=20, what="the first run")
    second = start_worker(path, "slow", redis7.url, RUNS_FILE=str(runs_file))
    try:
        wait_until(lambda: len(runs(runs_file)) >= 20, timeout=40, what="20 runs")
        time.sleep(1.5)  # a late second run of one would show by now
    finally:
        assert stop(first) == 0
        assert stop(second) == 0
    counts = Counter(n for n, _pid in runs(runs_file))
    assert counts == {str(n): 1 for n in range(20)}


@pytest.mark.slow
def test_two_workers_of_a_slow_stage_share_its_backlog(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    """Without `prefetch`, a worker of 0.5 s calls holds one message at a time: the second
    worker, started after the first has read, still gets its half of the work."""
    path = write_pipeline(tmp_path, pipeline_name, 'slow:\n  function: "{mod}:slow"', CODE)
    runs_file = tmp_path / "runs.txt"
    with Pipeline.load(path, {"REDIS_URL": redis7.url}) as pipeline:
        pipeline.submit_many([{"n": n} for n in range(12)])
    first = start_worker(path, "slow", redis7.url, RUNS_FILE=str(runs_file), PAUSE="0.5")
    wait_until(lambda: runs(runs_file), timeout=20, what="the first run")
    second = start_worker(path, "slow", redis7.url, RUNS_FILE=str(runs_file), PAUSE="0.5")
    try:
        wait_until(lambda: len(runs(runs_file)) >= 12, timeout=40, what="12 runs")
    finally:
        stop(first)
        stop(second)
    by_worker = Counter(pid for _n, pid in runs(runs_file))
    assert len(by_worker) == 2
    assert min(by_worker.values()) >= 4, by_worker
