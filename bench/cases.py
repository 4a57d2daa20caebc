"""The benchmark cases of the performance issue, each a function from a Redis URL to table rows.

Every ratio is framework / baseline, where the baseline is the hand-written loop measured in
the same run or the ideal the workload allows (calls/s a fixed wait permits). Where a case is
repeated, the figure is the median of the repetitions.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import redis
from harness import (
    IDENTITY,
    NOOP,
    STAGES,
    Arrivals,
    Framework,
    HandLoop,
    System,
    cpu_seconds,
    default_stages,
    noop_stages,
    prefill,
    rss_bytes,
    start_redis,
    wait_for,
)


@dataclass
class Row:
    case: str
    framework: str
    baseline: str
    ratio: float
    target: str
    met: bool | None  # None: a row shown for what it tells, with no target of its own
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Settings:
    url: str
    workdir: Path
    repeat: int = 3
    jobs: int = 10_000
    concurrency: int = 100
    latency_jobs: int = 150
    memory_jobs: int = 45_000
    redis_pid: int | None = None  # the server's process, for its CPU per job


def _client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.url)


def _ready(system: System, client: redis.Redis) -> None:
    client.flushall()
    system.start()
    system.warm_up(client)
    if isinstance(system, Framework):  # every process connected, not just the first per stage
        wait_for(lambda: _consumers(client, system) >= len(system.workers), 60, 0.05)


def _consumers(client: redis.Redis, system: Framework) -> int:
    """Consumers announced on every stage's group (each worker announces itself at start)."""
    names, total = list(system.stages), 0
    for index, stage in enumerate(names):
        stream = system.input if index == 0 else f"{system.prefix}:{names[index - 1]}"
        for group in client.xinfo_groups(stream):
            if group["name"].decode() == stage:
                total += int(group["consumers"])
    return total


@dataclass
class Run:
    """One drain: jobs/s, and what Redis did per job (its CPU, the commands it ran)."""

    rate: float
    redis_us: float
    commands: float


def _commands(client: redis.Redis) -> int:
    """Commands Redis has run, those of scripts included."""
    return sum(int(stats["calls"]) for stats in client.info("commandstats").values())


def _drain(
    system: System, client: redis.Redis, jobs: int, payload: int = 0, redis_pid: int | None = None
) -> Run:
    """N jobs added at once to a warmed-up system: jobs/s, and per job Redis's CPU (when its
    process is known) and commands (feeding included, for both systems alike)."""
    done_before = system.finished(client)
    commands, cpu = _commands(client), cpu_seconds(redis_pid) if redis_pid else 0.0
    started = time.perf_counter()
    prefill(client, system.input, jobs, payload_bytes=payload)
    wait_for(lambda: system.finished(client) >= done_before + jobs, 600)
    rate = jobs / (time.perf_counter() - started)
    redis_us = (cpu_seconds(redis_pid) - cpu) * 1e6 / jobs if redis_pid else 0.0
    return Run(rate, redis_us, (_commands(client) - commands) / jobs)


def _measure(system: System, settings: Settings, jobs: int, payload: int = 0) -> Run:
    client = _client(settings)
    try:
        _ready(system, client)
        return _drain(system, client, jobs, payload, settings.redis_pid)
    finally:
        system.stop(graceful=False)


def _measure_rate(system: System, settings: Settings, jobs: int) -> float:
    return _measure(system, settings, jobs).rate


# -- 1. throughput: what users run ------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """One row of case 1: stage functions and settings, document size, and the target."""

    label: str
    stages: dict[str, dict[str, object]]
    code: str
    payload: int  # bytes per document
    jobs: int
    target: float  # of the hand loop's jobs/s


def workloads(settings: Settings) -> list[Workload]:
    tuned = noop_stages(settings.concurrency)
    return [
        Workload("defaults: def, no settings, 1 KB", default_stages(), IDENTITY, 1000,
                 settings.jobs, 0.8),
        Workload(f"async, concurrency: {settings.concurrency}, 1 KB", tuned, NOOP, 1000,
                 settings.jobs, 1.0),
        Workload(f"async, concurrency: {settings.concurrency}, 10 KB", tuned, NOOP, 10_000,
                 settings.jobs // 2, 0.8),
    ]  # fmt: skip


def _framework_against_hand_loop(
    settings: Settings, workload: Workload, wrapper: tuple[str, ...] = ()
) -> tuple[Run, Run, dict[str, Any]]:
    """Median figures of the 4 stages and of the hand loop on the same documents, runs
    interleaved (drift on a shared machine hits both alike), and the runs behind them."""
    framework = Framework("bench", settings.url, settings.workdir, workload.stages, workload.code)
    hand = HandLoop("hand", settings.url, settings.workdir)
    runs: dict[str, list[Run]] = {"framework": [], "hand": []}
    for system in (framework, hand):
        system.wrapper = wrapper
    for _ in range(settings.repeat):
        runs["framework"].append(_measure(framework, settings, workload.jobs, workload.payload))
        runs["hand"].append(_measure(hand, settings, workload.jobs, workload.payload))
    fw, hd = (_median_run(runs[name]) for name in ("framework", "hand"))
    pairs = [f.rate / h.rate for f, h in zip(runs["framework"], runs["hand"], strict=True)]
    detail = {
        "runs": {name: [asdict(run) for run in found] for name, found in runs.items()},
        "pairwise_ratios": pairs,
        "jobs": workload.jobs,
        "payload_bytes": workload.payload,
        "redis_us_per_job": {"framework": fw.redis_us, "hand": hd.redis_us},
        "commands_per_job": {"framework": fw.commands, "hand": hd.commands},
    }
    return fw, hd, detail


def _median_run(runs: list[Run]) -> Run:
    return Run(
        statistics.median(run.rate for run in runs),
        statistics.median(run.redis_us for run in runs),
        statistics.median(run.commands for run in runs),
    )


def throughput(settings: Settings) -> tuple[list[Row], float]:
    """Each workload: jobs/s against the hand loop, and Redis's CPU per job against the hand
    loop's (<= 2x). Returns the rows and the framework's rate on the tuned 1 KB workload, the
    one the latency case loads to half of."""
    rows, tuned_rate = [], 0.0
    for index, workload in enumerate(workloads(settings)):
        fw, hd, detail = _framework_against_hand_loop(settings, workload)
        ratio = fw.rate / hd.rate
        rows.append(
            Row(f"1 {workload.label} (jobs/s)", f"{fw.rate:,.0f}", f"{hd.rate:,.0f}", ratio,
                f">= {workload.target}", ratio >= workload.target, detail)
        )  # fmt: skip
        if workload.payload in (1000, 10_000) and index > 0 and settings.redis_pid:
            cpu = fw.redis_us / hd.redis_us
            case = f"1 Redis CPU per job, {workload.payload // 1000} KB (us)"
            rows.append(
                Row(case, f"{fw.redis_us:.1f}", f"{hd.redis_us:.1f}", cpu, "<= 2.0", cpu <= 2.0,
                    {"commands_per_job": detail["commands_per_job"]})
            )  # fmt: skip
        if index == 1:
            tuned_rate = fw.rate
    return rows, tuned_rate


def throughput_own_core(settings: Settings) -> list[Row]:
    """The tuned 1 KB workload again with Redis on one CPU and every Python process (the
    stages of both systems, this script that feeds them) on the others: the production shape,
    where Redis is a server of its own. Shown for what it tells, with no target of its own."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        why = "it needs 2 CPUs and taskset (util-linux)"
        print(f"case 1 with Redis on a core of its own: skipped, {why}", file=sys.stderr)
        return []
    redis_cpu, others = str(cpus[0]), ",".join(map(str, cpus[1:]))
    workdir = settings.workdir / "own-core"
    workdir.mkdir(exist_ok=True)
    affinity = os.sched_getaffinity(0)
    server = None
    try:
        server, url = start_redis(workdir, ("taskset", "-c", redis_cpu))
        # This script feeds and watches: it is Python too. (Its thread only: the case starts
        # no thread of its own.)
        os.sched_setaffinity(0, cpus[1:])
        own = replace(settings, url=url, workdir=workdir, redis_pid=server.pid)
        fw, hd, detail = _framework_against_hand_loop(
            own, workloads(own)[1], ("taskset", "-c", others)
        )
    finally:
        os.sched_setaffinity(0, affinity)
        if server is not None:
            server.terminate()
            server.wait()
    detail.update(redis_cpu=redis_cpu, python_cpus=others)
    python = "the other" if len(cpus) == 2 else f"the other {len(cpus) - 1}"
    case = f"1 async, 1 KB, Redis on one core, Python on {python} (jobs/s)"
    return [
        Row(case, f"{fw.rate:,.0f}", f"{hd.rate:,.0f}", fw.rate / hd.rate, "none", None, detail)
    ]


# -- 2. latency ------------------------------------------------------------------------------


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _latencies(system: System, settings: Settings, jobs: int, rate: float | None) -> list[float]:
    """Seconds from XADD to arrival at the end: one job at a time (rate None), or at a rate."""
    client = _client(settings)
    arrivals = Arrivals(system)
    sent: dict[str, float] = {}
    try:
        _ready(system, client)
        arrivals.start()
        time.sleep(0.1)  # the reader is blocked on the end stream
        due = time.perf_counter()
        for number in range(jobs):
            moment = time.perf_counter()
            # bytes: this client never decodes (redis-py types the reply `bytes | str`)
            entry = cast(bytes, client.xadd(system.input, {"data": f'{{"n": {number}}}'})).decode()
            key = Arrivals.key_of(system, number, entry)
            sent[key] = moment
            if rate is None:
                arrivals.wait(key, 30)
                time.sleep(0.01)  # idle workers: each job finds them waiting
            else:
                due += 1 / rate
                time.sleep(max(0.0, due - time.perf_counter()))
        wait_for(lambda: len(arrivals.arrived) >= jobs, 60)
        return [arrivals.arrived[key] - moment for key, moment in sent.items()]
    finally:
        arrivals.stopping = True
        system.stop(graceful=False)


def latency(settings: Settings, max_rate: float) -> list[Row]:
    stages = noop_stages(settings.concurrency)
    framework = Framework("bench", settings.url, settings.workdir, stages)
    hand = HandLoop("hand", settings.url, settings.workdir)
    rows = []
    moderate = max_rate / 2
    for label, rate, jobs, limits in (
        ("one at a time", None, settings.latency_jobs, {"p50": 1.5, "p99": 1.5}),
        (f"at {moderate:,.0f}/s", moderate, int(moderate * 1.5), {"p99": 2.0}),
    ):
        figures: dict[str, dict[str, list[float]]] = {
            "framework": {"p50": [], "p99": []},
            "hand": {"p50": [], "p99": []},
        }
        for _ in range(settings.repeat):
            for name, system in (("framework", framework), ("hand", hand)):
                seconds = _latencies(system, settings, jobs, rate)
                figures[name]["p50"].append(_percentile(seconds, 0.5) * 1000)
                figures[name]["p99"].append(_percentile(seconds, 0.99) * 1000)
        for quantile, limit in limits.items():
            fw = statistics.median(figures["framework"][quantile])
            hd = statistics.median(figures["hand"][quantile])
            rows.append(
                Row(
                    f"2 latency {quantile}, {label} (ms)",
                    f"{fw:.2f}",
                    f"{hd:.2f}",
                    fw / hd,
                    f"<= {limit}",
                    fw / hd <= limit,
                    {"runs": figures, "jobs": jobs, "rate": rate},
                )
            )
    return rows


# -- 3. I/O-bound stages ---------------------------------------------------------------------

ASYNC_WAIT = """import asyncio


async def wait(doc):
    await asyncio.sleep(0.1)
    return doc
"""

SYNC_WAIT = """import time


def wait(doc):
    time.sleep(0.1)
    return doc
"""


def _one_stage(
    name: str, settings: Settings, code: str, options: dict[str, object], workers: int = 1
) -> Framework:
    stages = {"work": {"function": "bench_stages:wait", **options}}
    return Framework(name, settings.url, settings.workdir, stages, code, ["work"] * workers)


def io_bound(settings: Settings) -> list[Row]:
    rows = []
    for label, code, concurrency, seconds in (
        ("async, concurrency: 500", ASYNC_WAIT, 500, 2.5),
        ("sync, concurrency: 32", SYNC_WAIT, 32, 2.5),
    ):
        ideal = concurrency / 0.1
        jobs = int(ideal * seconds)
        system = _one_stage("io", settings, code, {"concurrency": concurrency})
        rows.append(
            _against_ideal(f"3 100 ms I/O calls, {label} (calls/s)", system, settings, jobs, ideal)
        )
    return rows


def _against_ideal(
    case: str, system: Framework, settings: Settings, jobs: int, ideal: float
) -> Row:
    """Median rate of `repeat` runs of N jobs, as a share of what the work allows (>= 0.9)."""
    rates = [_measure_rate(system, settings, jobs) for _ in range(settings.repeat)]
    rate = statistics.median(rates)
    return Row(
        case,
        f"{rate:,.0f}",
        f"{ideal:,.0f} ideal",
        rate / ideal,
        ">= 0.9",
        rate / ideal >= 0.9,
        {"runs": rates, "jobs": jobs},
    )


# -- 4. batches ------------------------------------------------------------------------------

BATCH_CALL = """import time


def wait(docs):
    time.sleep(0.020 + 0.0001 * len(docs))
    return docs
"""


def batching(settings: Settings) -> list[Row]:
    ideal = 32 / (0.020 + 0.0001 * 32)
    jobs = int(ideal * 2.5)
    system = _one_stage("batch", settings, BATCH_CALL, {"batch": 32, "concurrency": 1})
    return [
        _against_ideal("4 batch: 32, 20 ms + 0.1 ms/item (items/s)", system, settings, jobs, ideal)
    ]


# -- 5. memory -------------------------------------------------------------------------------

FULL_MEMORY_JOBS = 1_000_000
# Jobs/s fed in the memory case: steady, and below what a slow moment of a 2-core machine
# sustains, so that what stays in Redis (streams to retention, job hashes for result_ttl)
# does not rise and fall with the machine's speed.
MEMORY_RATE = 3_000
RESULT_TTL_S = 3  # job hashes expire this long after their job ends: part of the steady state


def memory(settings: Settings) -> list[Row]:
    """N jobs through 4 stages with retention max_len 10000, fed at MEMORY_RATE jobs/s (at
    most 5,000 in flight); Redis used_memory and worker RSS sampled ten times a second.
    Warm-up is the first half of the jobs (retention and result_ttl are both in force well
    before it ends); growth is the median of the last third of the samples after it over the
    median of the first third."""
    top = f"retention:\n  max_len: 10000\nresult_ttl: {RESULT_TTL_S}s"
    system = Framework(
        "memory", settings.url, settings.workdir, noop_stages(settings.concurrency), top=top
    )
    client = _client(settings)
    samples: list[tuple[int, int, list[int]]] = []  # finished, used_memory, worker RSS
    jobs, added, next_sample = settings.memory_jobs, 0, 0.0
    try:
        _ready(system, client)
        started = time.monotonic()
        while True:
            finished = system.finished(client) - 1  # the warm-up job
            now = time.monotonic()
            if now >= next_sample:
                used = int(client.info("memory")["used_memory"])
                samples.append((finished, used, [rss_bytes(p.pid) for p in system.processes]))
                next_sample = now + 0.1
            if finished >= jobs:
                break
            due = min(jobs, int((now - started) * MEMORY_RATE))  # a steady flow, not bursts
            if added < due and added - finished < 5000:
                batch = min(1000, due - added)
                prefill(client, system.input, batch, start=added)
                added += batch
            else:
                time.sleep(0.005)
        per_entry = _bytes_per_entry(client, system)
    finally:
        system.stop(graceful=False)
    steady = [s for s in samples if s[0] >= 0.5 * jobs]
    used_growth = _trend([s[1] for s in steady])
    rss_growth = max(_trend([s[2][i] for s in steady]) for i in range(len(steady[0][2])))
    used_band = [s[1] for s in steady]
    detail = {
        "jobs": jobs,
        "result_ttl_s": RESULT_TTL_S,
        "bytes_per_retained_entry": per_entry,
        "used_memory_band": [min(used_band), max(used_band)],
        "samples": [{"finished": f, "used_memory": u, "worker_rss": r} for f, u, r in samples],
    }
    return [
        Row(
            f"5 Redis used_memory growth, {jobs:,} jobs",
            f"{used_growth * 100:+.1f}%",
            f"{min(used_band) / 2**20:.0f}-{max(used_band) / 2**20:.0f} MiB",
            1 + used_growth,
            "<= +10%",
            used_growth <= 0.10,
            detail,
        ),
        Row(
            "5 worker RSS growth (largest of 4)",
            f"{rss_growth * 100:+.1f}%",
            f"{max(max(s[2]) for s in steady) / 2**20:.0f} MiB",
            1 + rss_growth,
            "<= +10%",
            rss_growth <= 0.10,
            {"bytes_per_retained_entry": per_entry},
        ),
    ]


def _trend(values: list[int]) -> float:
    """Growth from the first third of the samples to the last, median to median: a leak shows
    as a rise, while a moment's backlog on a busy machine (more entries held until they are
    processed, as trimming never cuts unprocessed work) moves no median."""
    third = max(len(values) // 3, 1)
    return statistics.median(values[-third:]) / statistics.median(values[:third]) - 1


def _bytes_per_entry(client: redis.Redis, system: Framework) -> float:
    used = entries = 0
    for stage in STAGES:
        key = f"{system.prefix}:{stage}"
        used += int(client.memory_usage(key, samples=0) or 0)
        entries += int(client.xlen(key))
    return used / max(entries, 1)


# -- 6. scaling ------------------------------------------------------------------------------

SCALE_WAIT = """import asyncio


async def wait(doc):
    await asyncio.sleep(0.05)
    return doc
"""


def scaling(settings: Settings) -> list[Row]:
    """1, 2 and 4 processes of one I/O-bound stage (50 ms calls, concurrency 50 each)."""
    per_process = 50 / 0.05
    rates: dict[int, list[float]] = {1: [], 2: [], 4: []}
    for _ in range(settings.repeat):
        for workers in rates:
            system = _one_stage("scale", settings, SCALE_WAIT, {"concurrency": 50}, workers)
            jobs = int(per_process * workers * 1.5)
            rates[workers].append(_measure_rate(system, settings, jobs))
    base = statistics.median(rates[1])
    rows = []
    for workers in (2, 4):
        rate = statistics.median(rates[workers])
        rows.append(
            Row(
                f"6 I/O-bound stage, {workers} workers vs 1 (calls/s)",
                f"{rate:,.0f}",
                f"{base:,.0f} x {workers}",
                rate / base / workers,
                ">= 0.9",
                rate / base / workers >= 0.9,
                {"runs": {str(k): v for k, v in rates.items()}, "ideal_per_process": per_process},
            )
        )
    return rows
