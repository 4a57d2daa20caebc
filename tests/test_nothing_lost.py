"""Nothing is lost and nothing is handed on twice while workers are SIGKILLed at random.

2,000 jobs through 4 stages, 3 worker processes per stage, a random worker killed (and a new
one started in its place) every 0.5 s: every job ends done, and every stage's output stream
holds exactly one entry per job (the exactly-once handoff, counted where it shows). Each call
takes 10-30 ms, so that the run lasts several seconds of chaos however fast the engine gets.
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

import pytest
from pipelines import job_states, outputs_per_job, start_worker, stop, write_pipeline
from servers import RedisServer

from framework.pipeline import Pipeline

STAGES = ("extract", "analyze", "summarize", "embed")
JOBS = 2000
WORKERS_PER_STAGE = 3

CODE = """
import random, time

def work(doc):
    time.sleep(random.uniform(0.01, 0.03))
    return {**doc, "seen": doc.get("seen", 0) + 1}
"""


@pytest.mark.slow
def test_sigkill_every_half_second_loses_and_duplicates_nothing(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    stages = "\n".join(f'{s}:\n  function: "{{mod}}:work"\n  concurrency: 4' for s in STAGES)
    top = "defaults:\n  lease: 1s\n  max_attempts: 20\n  retry_backoff: 100ms"
    path = write_pipeline(tmp_path, pipeline_name, stages, CODE, top)
    logs = tmp_path / "workers.log"
    workers: dict[tuple[str, int], subprocess.Popen[bytes]] = {
        (stage, n): start_worker(path, stage, redis7.url, log=logs)
        for stage in STAGES
        for n in range(WORKERS_PER_STAGE)
    }
    client = redis7.client()
    respawned_at = time.monotonic()
    try:
        with Pipeline.load(path, {"REDIS_URL": redis7.url}) as pipeline:
            job_ids = pipeline.submit_many([{"n": n} for n in range(JOBS)])
        chaos = random.Random(2026)
        kills = 0
        deadline = time.monotonic() + 150
        while job_states(client, pipeline_name, job_ids)["done"] < JOBS:
            assert time.monotonic() < deadline, (
                f"jobs not done: {job_states(client, pipeline_name, job_ids)}"
            )
            time.sleep(0.5)  # the chaos cadence, not a wait for a result
            victim = chaos.choice(list(workers))
            workers[victim].kill()
            workers[victim].wait()
            workers[victim] = start_worker(path, victim[0], redis7.url, log=logs)
            respawned_at = time.monotonic()
            kills += 1
    finally:
        # A SIGTERM in the first milliseconds of a process, before Python runs our code, gets
        # the default action; the graceful-stop promise starts once the worker is running.
        time.sleep(max(0.0, respawned_at + 0.5 - time.monotonic()))
        statuses = [stop(process) for process in workers.values()]

    assert kills >= 5, f"the run ended before the chaos had a chance ({kills} kills)"
    assert job_states(client, pipeline_name, job_ids) == {"done": JOBS}
    for stage in STAGES:
        per_job = outputs_per_job(client, f"{{{pipeline_name}}}:{stage}")
        assert set(per_job) == set(job_ids), stage
        assert set(per_job.values()) == {1}, f"{stage}: duplicated handoff"
    assert client.xlen(f"{{{pipeline_name}}}:dead") == 0
    assert statuses == [0] * len(statuses), logs.read_text()[-2000:]
