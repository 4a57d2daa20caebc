"""`make bench`: the framework against a hand-written redis-py loop on the same 4 streams.

Both run one process per stage on a redis-server this script starts. Throughput: N no-op jobs
pre-filled on the input stream, timed until the last one is out; latency: one job at a time
at a fixed moderate rate, timed from XADD to its arrival at the end. Medians of --repeat runs.

    python bench/bench.py [--jobs 20000] [--repeat 3] [--concurrency 100] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("extract", "analyze", "summarize", "embed")
STAGE_CODE = "async def noop(doc):\n    return doc\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    binary = shutil.which("redis-server", path="/usr/local/bin:/usr/bin:/bin") or "redis-server"
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            "redis.log",
        ],
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return process, url
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def machine(url: str) -> dict[str, object]:
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "redis": redis.Redis.from_url(url).info("server")["redis_version"],
    }


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark run did not finish in time")
        time.sleep(0.005)


def prefill(client: redis.Redis, stream: str, jobs: int) -> None:
    pipe = client.pipeline(transaction=False)
    for n in range(jobs):
        pipe.xadd(stream, {"data": json.dumps({"n": n})})
        if n % 1000 == 999:
            pipe.execute()
    pipe.execute()


class System:
    """One side of the comparison: how to start its stage processes and where work ends."""

    def __init__(self, name: str, url: str, workdir: Path, concurrency: int) -> None:
        self.name, self.url, self.workdir, self.concurrency = name, url, workdir, concurrency
        self.processes: list[subprocess.Popen[bytes]] = []
        self.prefix = "{" + name + "}"

    @property
    def input(self) -> str:
        return f"{self.prefix}:input"

    def finished(self, client: redis.Redis) -> int:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            process.wait(30)
        self.processes = []

    def warm_up(self, client: redis.Redis) -> None:
        """One job end to end: every process is up and connected before the clock starts."""
        client.xadd(self.input, {"data": json.dumps({"n": -1})})
        wait_for(lambda: self.finished(client) >= 1, 60)

    def stream_before(self, stage: str) -> str:
        index = STAGES.index(stage)
        return self.input if index == 0 else f"{self.prefix}:{STAGES[index - 1]}"


class Framework(System):
    def start(self) -> None:
        folder = self.workdir / self.name
        folder.mkdir(exist_ok=True)
        (folder / "bench_stages.py").write_text(STAGE_CODE)
        stages = "".join(
            f"  {s}:\n    function: bench_stages:noop\n    concurrency: {self.concurrency}\n"
            for s in STAGES
        )
        (folder / "pipeline.yaml").write_text(
            f"name: {self.name}\nredis:\n  url: ${{REDIS_URL}}\nstages:\n{stages}"
        )
        env = {**os.environ, "REDIS_URL": self.url, "PIPELINE_LOG_LEVEL": "warning"}
        self.processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "framework",
                    "-f",
                    str(folder / "pipeline.yaml"),
                    "worker",
                    stage,
                ],
                env=env,
                cwd=ROOT,
            )
            for stage in STAGES
        ]

    def finished(self, client: redis.Redis) -> int:
        return int(client.xlen(f"{self.prefix}:done"))


class HandLoop(System):
    def start(self) -> None:
        self.processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "bench" / "handloop.py"),
                    self.url,
                    self.stream_before(stage),
                    f"{self.prefix}:{stage}",
                    stage,
                ]
            )
            for stage in STAGES
        ]

    def finished(self, client: redis.Redis) -> int:
        return int(client.xlen(f"{self.prefix}:{STAGES[-1]}"))


def throughput(system: System, jobs: int) -> float:
    client = redis.Redis.from_url(system.url)
    client.flushall()
    system.start()
    try:
        system.warm_up(client)
        started = time.perf_counter()
        prefill(client, system.input, jobs)
        wait_for(lambda: system.finished(client) >= jobs + 1, 600)
        return jobs / (time.perf_counter() - started)
    finally:
        system.stop()


def latencies(system: System, jobs: int, rate: float) -> list[float]:
    """Seconds from XADD to arrival at the end, one job every 1/rate s."""
    client = redis.Redis.from_url(system.url)
    client.flushall()
    system.start()
    sent: dict[int, float] = {}
    arrived: dict[int, float] = {}
    try:
        system.warm_up(client)
        end = (
            f"{system.prefix}:done"
            if isinstance(system, Framework)
            else (f"{system.prefix}:{STAGES[-1]}")
        )
        by_job: dict[str, int] = {}
        reader = threading.Thread(target=_receive, args=(system.url, end, jobs, by_job, arrived))
        reader.start()
        for n in range(jobs):
            moment = time.perf_counter()
            entry = client.xadd(system.input, {"data": json.dumps({"n": n})}).decode()
            by_job[entry] = n
            sent[n] = moment
            time.sleep(max(0.0, moment + 1 / rate - time.perf_counter()))
        reader.join(60)
        return [arrived[n] - sent[n] for n in sent if n in arrived]
    finally:
        system.stop()


def _receive(
    url: str, stream: str, jobs: int, by_job: dict[str, int], arrived: dict[int, float]
) -> None:
    client = redis.Redis.from_url(url)
    position = "$"
    deadline = time.monotonic() + 120
    while len(arrived) < jobs and time.monotonic() < deadline:
        try:
            reply = client.xread({stream: position}, block=1000)
        except redis.ConnectionError:
            return  # the run is over and the server gone
        for _name, entries in reply or ():
            now = time.perf_counter()
            for entry_id, fields in entries:
                position = entry_id
                if b"job" in fields:
                    job = by_job.get(fields[b"job"].decode())
                else:
                    job = json.loads(fields[b"data"])["n"]
                if job is not None:
                    arrived[job] = now


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rate", type=float, default=200.0, help="jobs/s for the latency run")
    parser.add_argument("--latency-jobs", type=int, default=600)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        server, url = start_redis(Path(tmp))
        try:
            report = run_all(url, Path(tmp), options)
        finally:
            server.terminate()
            server.wait()
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {options.json}")


def run_all(url: str, workdir: Path, options: argparse.Namespace) -> dict[str, object]:
    systems = [
        Framework("bench", url, workdir, options.concurrency),
        HandLoop("hand", url, workdir, options.concurrency),
    ]
    rates: dict[str, list[float]] = {s.name: [] for s in systems}
    for _ in range(options.repeat):
        for system in systems:  # interleaved, so drift on a shared machine hits both alike
            rates[system.name].append(throughput(system, options.jobs))
    lat = {s.name: latencies(s, options.latency_jobs, options.rate) for s in systems}
    fw, hand = statistics.median(rates["bench"]), statistics.median(rates["hand"])
    rows = [
        ("throughput, jobs/s (median)", f"{fw:,.0f}", f"{hand:,.0f}", f"{fw / hand:.2f}"),
    ]
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        f_ms, h_ms = percentile(lat["bench"], q) * 1000, percentile(lat["hand"], q) * 1000
        rows.append(
            (
                f"latency {label} at {options.rate:g}/s, ms",
                f"{f_ms:.2f}",
                f"{h_ms:.2f}",
                f"{f_ms / h_ms:.2f}",
            )
        )
    info = machine(url)
    print(
        f"\n{options.jobs} jobs x {options.repeat} runs, 4 no-op stages, 1 process per stage; "
        f"machine: {info['cores']} cores, {info['cpu']}, Redis {info['redis']}"
    )
    print(f"{'case':40} {'framework':>12} {'hand loop':>12} {'ratio':>8}")
    for row in rows:
        print(f"{row[0]:40} {row[1]:>12} {row[2]:>12} {row[3]:>8}")
    return {
        "machine": info,
        "jobs": options.jobs,
        "repeat": options.repeat,
        "concurrency": options.concurrency,
        "throughput": rates,
        "latency_ms": {
            k: {"p50": percentile(v, 0.5) * 1000, "p99": percentile(v, 0.99) * 1000}
            for k, v in lat.items()
        },
        "rows": rows,
    }


if __name__ == "__main__":
    main()
