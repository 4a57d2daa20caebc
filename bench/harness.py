"""What every benchmark case needs: a redis-server of its own, stage processes of the framework
or of the hand-written loop, ways to feed them and to see work come out, and process figures.

Only the standard library, redis-py and the project itself: the point is that anyone can rerun
it on a fresh clone.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import redis

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("extract", "analyze", "summarize", "embed")
NOOP = "async def noop(doc):\n    return doc\n"
IDENTITY = "def identity(doc):\n    return doc\n"  # what a new user writes: plain def


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_redis(
    workdir: Path, wrapper: tuple[str, ...] = (), wait: float = 10
) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server from PATH with no persistence: what is measured is the pipeline.
    `wrapper` runs it under another program (a profiler, taskset)."""
    port = free_port()
    binary = shutil.which("redis-server", path="/usr/local/bin:/usr/bin:/bin") or "redis-server"
    process = subprocess.Popen(
        [
            *(*wrapper, binary, "--port", str(port), "--bind", "127.0.0.1"),
            *("--dir", str(workdir), "--save", "", "--appendonly", "no", "--logfile", "redis.log"),
        ],
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    wait_for(lambda: _answers(client), wait)
    return process, url


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


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
        "platform": platform.platform(),
    }


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for system in LIVE:
            system.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark run did not finish in time")
        time.sleep(interval)


def prefill(
    client: redis.Redis, stream: str, jobs: int, start: int = 0, payload_bytes: int = 0
) -> None:
    """N bare entries (`data` only), as any Redis client would add them: `{"n": N}`, with a
    `text` of about `payload_bytes` (a document of that size) when given."""
    pipe = client.pipeline(transaction=False)
    text = "x" * max(payload_bytes - 30, 0)
    for n in range(start, start + jobs):
        document = {"n": n, "text": text} if payload_bytes else {"n": n}
        pipe.xadd(stream, {"data": json.dumps(document)})
        if n % 1000 == 999:
            pipe.execute()
    pipe.execute()


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """The CPU time a process's threads have had so far: in nanoseconds from schedstat where
    the kernel keeps it (the utime and stime of /proc/PID/stat count 10 ms ticks, half a
    microsecond per job at 20,000 jobs), else in those ticks."""
    tasks = list(Path(f"/proc/{pid}/task").glob("*/schedstat"))
    if tasks:
        total = 0
        for task in tasks:
            try:
                total += int(task.read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass  # a thread that ended between listing and reading
        return total / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


LIVE: list[System] = []  # systems whose processes are running: a crash ends the wait at once


class System:
    """One side of a comparison: how to start its stage processes and where work ends."""

    def __init__(self, name: str, url: str, workdir: Path) -> None:
        self.name, self.url, self.workdir = name, url, workdir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.prefix = "{" + name + "}"
        self.wrapper: tuple[str, ...] = ()  # a program each stage process runs under

    @property
    def input(self) -> str:
        return f"{self.prefix}:input"

    @property
    def end(self) -> str:
        """The stream a finished job shows up on."""
        raise NotImplementedError

    def finished(self, client: redis.Redis) -> int:
        """Jobs out so far (trimming included: counts every entry ever added)."""
        info = client.xinfo_stream(self.end)
        added = info.get("entries-added")
        return int(added if added is not None else info["length"])

    def start(self) -> None:
        self.processes = self.spawn()
        LIVE.append(self)

    def spawn(self) -> list[subprocess.Popen[bytes]]:
        """Start this system's stage processes."""
        raise NotImplementedError

    def stop(self, graceful: bool = True) -> None:
        """SIGTERM and wait (a profiler writes its counts as its process exits); or, when the
        figures are in and the next run starts from FLUSHALL, SIGKILL: a graceful stop waits
        out the worker's blocked read, half a second a run. (A wrapper must exec its program,
        as taskset does, for the signal to reach it.)"""
        if self in LIVE:
            LIVE.remove(self)
        for process in self.processes:
            process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        for process in self.processes:
            process.wait(60)
        self.processes = []

    def warm_up(self, client: redis.Redis) -> None:
        """One job end to end: every process is up and connected before the clock starts."""
        client.xadd(self.input, {"data": json.dumps({"n": -1})})
        wait_for(lambda: client.exists(self.end) == 1 and self.finished(client) >= 1, 60)

    def check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited with {process.returncode}")


class Framework(System):
    """A pipeline.yaml and a stage module written to a folder, one `pipeline worker` each."""

    def __init__(
        self,
        name: str,
        url: str,
        workdir: Path,
        stages: dict[str, dict[str, object]],
        code: str = NOOP,
        workers: list[str] | None = None,
        top: str = "",
    ) -> None:
        super().__init__(name, url, workdir)
        self.stages, self.code, self.top = stages, code, top
        self.workers = workers if workers is not None else list(stages)
        self.engine = ROOT  # the folder the workers import the engine from

    @property
    def end(self) -> str:
        return f"{self.prefix}:done"

    def spawn(self) -> list[subprocess.Popen[bytes]]:
        folder = self.workdir / self.name
        folder.mkdir(exist_ok=True)
        (folder / "bench_stages.py").write_text(self.code)
        lines = [f"name: {self.name}", "redis:", "  url: ${REDIS_URL}", self.top, "stages:"]
        for stage, options in self.stages.items():
            lines.append(f"  {stage}:")
            lines.extend(f"    {key}: {value}" for key, value in options.items())
        (folder / "pipeline.yaml").write_text("\n".join(line for line in lines if line) + "\n")
        env = {**os.environ, "REDIS_URL": self.url, "PIPELINE_LOG_LEVEL": "warning"}
        # The engine's folder first on sys.path, ahead of the editable install (safe-path
        # mode would leave the working directory out and import the installed engine).
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.engine), env.get("PYTHONPATH")]))
        env.pop("PYTHONSAFEPATH", None)
        command = [sys.executable, "-m", "framework", "-f", str(folder / "pipeline.yaml")]
        return [
            subprocess.Popen([*self.wrapper, *command, "worker", stage], env=env, cwd=self.engine)
            for stage in self.workers
        ]


def noop_stages(concurrency: int) -> dict[str, dict[str, object]]:
    return {
        stage: {"function": "bench_stages:noop", "concurrency": concurrency} for stage in STAGES
    }


def default_stages() -> dict[str, dict[str, object]]:
    """Plain `def` functions and no stage settings at all: what a new user runs."""
    return {stage: {"function": "bench_stages:identity"} for stage in STAGES}


class HandLoop(System):
    """`handloop.py` once per stage, each reading the stream before it."""

    @property
    def end(self) -> str:
        return f"{self.prefix}:{STAGES[-1]}"

    def stream_before(self, stage: str) -> str:
        index = STAGES.index(stage)
        return self.input if index == 0 else f"{self.prefix}:{STAGES[index - 1]}"

    def spawn(self) -> list[subprocess.Popen[bytes]]:
        script = str(ROOT / "bench" / "handloop.py")
        return [
            subprocess.Popen(
                [
                    *(*self.wrapper, sys.executable, script, self.url, self.stream_before(stage)),
                    *(f"{self.prefix}:{stage}", stage),
                ]
            )
            for stage in STAGES
        ]


# An XREAD reply as this client gets it: redis-py types replies for every protocol and decoding
# mode at once (`bytes | str`, `... | None`); ours speak RESP2 and never decode, so all is bytes.
ReadReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


class Arrivals(threading.Thread):
    """Notes when each job reaches the end of a system (XREAD BLOCK on its end stream).

    Jobs are keyed as `key_of` says: the framework's done stream names the job (its entry id
    on the input stream), the hand loop carries the payload `{"n": N}` through.
    """

    def __init__(self, system: System) -> None:
        super().__init__(daemon=True)
        self.system = system
        self.arrived: dict[str, float] = {}
        self.changed = threading.Condition()
        self.stopping = False

    @staticmethod
    def key_of(system: System, number: int, entry_id: str) -> str:
        return entry_id if isinstance(system, Framework) else str(number)

    def run(self) -> None:
        client = redis.Redis.from_url(self.system.url)
        position: str | bytes = "$"
        while not self.stopping:
            try:
                reply = client.xread({self.system.end: position}, block=200)
            except redis.ConnectionError:
                return  # the run is over and the server gone
            now = time.perf_counter()
            for _name, entries in cast(ReadReply, reply or ()):
                for entry_id, fields in entries:
                    position = entry_id
                    if b"job" in fields:
                        key = fields[b"job"].decode()
                    else:
                        key = str(json.loads(fields[b"data"])["n"])
                    with self.changed:
                        self.arrived[key] = now
                        self.changed.notify_all()

    def wait(self, key: str, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: key in self.arrived, timeout)
