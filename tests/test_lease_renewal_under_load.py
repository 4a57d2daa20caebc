"""Renewals race commits all the time under load: a message committed while its renewal was on
the way is not a lost lease, and must not be logged as one (operators page on `lease_lost`)."""

from __future__ import annotations

from pathlib import Path

import redis
from pipelines import start_worker, stop, write_pipeline
from servers import RedisServer, wait_until

CODE = """
async def same(doc):
    sum(range(3000))  # a little CPU: the event loop is busy while commits are in flight
    return doc
"""

# A short lease: renewals every 0.1 s, so hundreds of them meet a commit in flight.
TOP = "defaults:\n  lease: 300ms"


def test_renewals_that_meet_a_commit_in_flight_report_no_lost_lease(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(
        tmp_path, pipeline_name, 'only:\n  function: "{mod}:same"\n  concurrency: 200', CODE, TOP
    )
    log = tmp_path / "worker.log"
    worker = start_worker(path, "only", redis7.url, log=log, PIPELINE_LOG_LEVEL="info")
    client = redis.Redis.from_url(redis7.url)
    try:
        jobs = 30_000
        for start in range(0, jobs, 1000):
            pipe = client.pipeline(transaction=False)
            for n in range(start, start + 1000):
                pipe.xadd(f"{{{pipeline_name}}}:input", {"data": f'{{"n": {n}}}'})
            pipe.execute()
        done = f"{{{pipeline_name}}}:done"
        wait_until(lambda: client.xlen(done) >= jobs, timeout=120)
    finally:
        assert stop(worker) == 0
    text = log.read_text()
    assert text.count('"message_done"') == jobs  # every message committed, and logged once
    assert "late_result_dropped" not in text  # nothing was in fact lost
    assert "lease_lost" not in text
