"""Exactly once at the edges: submits and workers over a network that loses replies.

Everything talks to Redis through a proxy (tests/proxy.py) that, for a set share of commands,
drops the reply after Redis applied the command, drops the command before Redis saw it, or
cuts the reply short, and closes the connection. Submits, worker start-up (connect, groups,
consumer, scripts), reads, commits, lease renewals and housekeeping all meet such faults.
Whatever they meet, every job is queued once, done once, and in every stage's output once;
no worker exits, and each drains on SIGTERM with exit 0. A commit repeated after a lost reply
says so at info (`commit_confirmed_after_lost_reply`), never as a late result.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from faults import Fault
from pipelines import start_worker, stop, worker_env, write_pipeline
from proxy import ProxyFactory
from servers import RedisServer, wait_until

from framework.pipeline import Pipeline
from framework.wire import range_reply

JOBS = 1000
STAGES = """\
one:
  function: "{mod}:step"
two:
  function: "{mod}:step"
three:
  function: "{mod}:step"
"""
CODE = """\
def step(doc, ctx):
    return {**doc, "path": doc.get("path", []) + [ctx.stage]}
"""
# A lost XREADGROUP reply leaves its messages pending with a worker that never saw them: they
# come back after the lease (short here, so the test need not wait 30 s), and that unseen
# delivery counts as an attempt (README, "Attempts"): enough attempts that no job runs out.
TOP = "defaults:\n  lease: 2s\n  max_attempts: 20\n"


@pytest.mark.slow
@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_every_job_once_through_a_network_that_loses_replies(
    redis_server: RedisServer,
    fault_proxy: ProxyFactory,
    tmp_path: Path,
    pipeline_name: str,
    rate: float,
) -> None:
    proxy = fault_proxy(redis_server, rate=rate, seed=int(rate * 1000))
    path = write_pipeline(tmp_path, pipeline_name, STAGES, CODE, TOP)
    logs = {stage: tmp_path / f"{stage}.log" for stage in ("one", "two", "three")}
    workers = {
        stage: start_worker(path, stage, proxy.url, log=log, PIPELINE_LOG_LEVEL="info")
        for stage, log in logs.items()
    }
    try:
        with Pipeline.load(path, {"REDIS_URL": proxy.url}) as pipeline:
            ids = [pipeline.submit({"n": n}) for n in range(JOBS)]  # once each: no retry of ours
        with redis_server.client() as client:
            done = f"{{{pipeline_name}}}:done"
            wait_until(lambda: client.xlen(done) >= JOBS, timeout=180, what=f"{JOBS} jobs done")
            for stage, worker in workers.items():
                assert worker.poll() is None, f"worker {stage} exited: {logs[stage].read_text()}"
            proxy.configure(rate=0.0)  # the workers drain without faults
            codes = {stage: stop(worker) for stage, worker in workers.items()}
            assert codes == {"one": 0, "two": 0, "three": 0}
            check_exactly_once(client, pipeline_name, ids)
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    stats = proxy.stats()
    assert stats.faults[Fault.DROP_REPLY] > 0
    assert sum(stats.faults.values()) >= JOBS * rate, stats.faults
    events = Counter(
        orjson.loads(line).get("event")
        for log in logs.values()
        for line in log.read_text().splitlines()
        if line.startswith("{")
    )
    assert events["late_result_dropped"] == 0, events
    assert events["worker_stopped"] == 3
    print(f"rate {rate}: {dict(stats.faults)}; {events['commit_confirmed_after_lost_reply']} "
          f"commits confirmed after a lost reply")  # fmt: skip


def check_exactly_once(client: object, name: str, ids: list[str]) -> None:
    """Each job once in the input, in every stage's output, in the done stream; all done."""
    from redis import Redis

    assert isinstance(client, Redis)
    assert len(set(ids)) == JOBS
    for stream in ("input", "one", "two", "three", "done"):
        jobs = Counter(
            fields[b"job"].decode()
            for _, fields in range_reply(client.xrange(f"{{{name}}}:{stream}"))
        )
        twice = {job: count for job, count in jobs.items() if count > 1}
        assert not twice, f"{stream}: jobs more than once: {list(twice.items())[:5]}"
        assert set(jobs) == set(ids), f"{stream}: {len(set(ids) - set(jobs))} jobs missing"
    pipe = client.pipeline(transaction=False)
    for job in ids:
        pipe.hget(f"{{{name}}}:job:{job}", "state")
    assert Counter(state.decode() for state in pipe.execute()) == {"done": JOBS}
    for _, fields in range_reply(client.xrange(f"{{{name}}}:three", count=5)):
        assert orjson.loads(fields[b"data"])["path"] == ["one", "two", "three"]


@pytest.mark.parametrize("command", ["INFO", "XGROUP CREATE", "XGROUP CREATECONSUMER", "EVALSHA"])
def test_start_up_rides_out_a_lost_reply_on_each_of_its_steps(
    redis_server: RedisServer,
    fault_proxy: ProxyFactory,
    tmp_path: Path,
    pipeline_name: str,
    command: str,
) -> None:
    """The first `command` a worker sends as it starts has its reply dropped: the worker still
    starts, works, and stops with exit 0."""
    path = write_pipeline(tmp_path, pipeline_name, STAGES, CODE, TOP)
    dropped = {Fault.DROP_REPLY}
    proxy = fault_proxy(redis_server, rate=1.0, kinds=dropped, applies_to=once(command))
    log = tmp_path / "worker.log"
    worker = start_worker(path, "one", proxy.url, log=log)
    try:
        with Pipeline.load(path, {"REDIS_URL": redis_server.url}) as pipeline:
            pipeline.submit({"n": 1})
        with redis_server.client() as client:
            output = f"{{{pipeline_name}}}:one"
            wait_until(lambda: client.xlen(output), timeout=30, what="stage one ran")
        assert proxy.stats().faults[Fault.DROP_REPLY] == 1
        assert worker.poll() is None, log.read_text()
    finally:
        code = stop(worker)
    assert code == 0, log.read_text()


def once(command: str) -> Callable[[str], bool]:
    """A fault rule for the first `command` only (a family name matches its subcommands)."""
    seen: list[str] = []

    def applies(name: str) -> bool:
        if seen or not (name == command or name.startswith(command + " ")):
            return False
        seen.append(name)
        return True

    return applies


def test_wrong_credentials_at_start_are_one_line_at_once(
    redis_server: RedisServer, tmp_path: Path, pipeline_name: str
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, STAGES, CODE)
    url = f"redis://nobody:wrong@127.0.0.1:{redis_server.port}/0"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "framework", "-f", str(path), "worker", "one"],
        env=worker_env(url), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "refused the credentials" in result.stderr
    assert time.monotonic() - started < 15, "never waited out"


def test_an_unreachable_server_at_start_is_one_line_after_the_startup_wait(
    tmp_path: Path, pipeline_name: str
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, STAGES, CODE)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "framework", "-f", str(path), "worker", "one",
         "--startup-wait", "2s"],
        env=worker_env("redis://127.0.0.1:1/0"), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    waited = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("cannot reach Redis at redis://127.0.0.1:1/0 (waited 2s)")
    )
    assert "Traceback" not in result.stderr
    assert 2 <= waited < 20
