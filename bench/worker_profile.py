"""`make bench-profile`: where a stage worker's CPU goes while jobs stream through, by py-spy.

Four no-op stages run as in the throughput case; once they are warm, py-spy samples every
worker for a few seconds while a feeder keeps their inputs full. The samples of all four are
summed and shown twice: by the function that was running (self time, the hot spots) and by
the layer it belongs to (this framework, CPython's garbage collector, hiredis, the event loop,
orjson, ...), so a change shows up as a shift between layers rather than as one run's noise.

py-spy runs with `--native`, so that time in C (the collector, malloc, hiredis, libuv) shows
as itself instead of as the Python frame above it, and samples of a thread that waits (the
event loop in epoll, the lease keeper on its timer, idle executor threads) are dropped here:
py-spy counts them as busy. The CPU per message comes from the kernel's count of the workers'
CPU time (/proc), not from samples.

    python bench/worker_profile.py [--seconds 8] [--top 20] [--out bench/results/profile.txt]

Needs py-spy (`pip install py-spy`, in the `dev` extra) and the right to ptrace (root, or
`kernel.yama.ptrace_scope=0`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis
from harness import ROOT, Framework, cpu_seconds, noop_stages, prefill, start_redis

RATE = 250  # samples per second and worker

# A sample whose stack passes through one of these is a thread waiting, not working.
WAITS = frozenset(
    {"epoll_pwait", "epoll_wait", "PyThread_acquire_lock_timed", "clock_nanosleep", "select"}
)

# The layer of a sample's leaf frame, by the file it is in (first match wins).
LAYERS = (
    ("framework/", "framework"),
    ("(<string>", "framework"),  # dataclass-made methods: in a worker, Delivery's and Emit's
    ("bench_stages", "the stage function"),
    ("redis/", "redis-py"),
    ("(reader.c", "hiredis"),
    ("(pack.c", "hiredis"),
    ("hiredis", "hiredis"),
    ("asyncio", "asyncio"),
    ("uvloop", "event loop (uvloop, libuv)"),
    ("(loop.c", "event loop (uvloop, libuv)"),
    ("(linux.c", "event loop (uvloop, libuv)"),
    ("(timer.c", "event loop (uvloop, libuv)"),
    ("(core.c", "event loop (uvloop, libuv)"),
    ("(stream.c", "event loop (uvloop, libuv)"),
    ("orjson", "orjson"),
    ("structlog/", "structlog"),
    ("libc.so", "libc (malloc, system calls)"),
    ("[vdso]", "libc (malloc, system calls)"),
)
# A sample whose stack passes through this is the collector's, whatever its leaf (a type's
# traverse function, in whichever module it lives).
COLLECTING = "gc_collect_main"
COLLECTOR = f"{COLLECTING} (CPython's garbage collector)"
INTERPRETER = ("(libpython", "(python3")  # a shared libpython, or a statically linked python


def layer_of(frame: str) -> str:
    if frame == COLLECTOR:
        return "garbage collector (CPython)"
    if any(marker in frame for marker in INTERPRETER):
        return "CPython (objects, calls, allocation)"
    for marker, layer in LAYERS:
        if marker in frame:
            return layer
    return "other (Python, stdlib)"


def leaf_counts(raw: Path) -> Counter[str]:
    """py-spy's raw format: one collapsed stack per line, `outer;...;leaf count`. Samples of a
    waiting thread are left out."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        names = [frame.partition(" (")[0] for frame in stack.split(";")]
        if any(name in WAITS for name in names):
            continue
        leaf = COLLECTOR if COLLECTING in names else stack.rsplit(";", 1)[-1].strip()
        counts[leaf] += int(count)
    return counts


def function_of(frame: str) -> str:
    """`commit (/abs/path/framework/committer.py:88)` -> `commit (framework/committer.py)`: a
    function's lines counted together."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", str(ROOT) + "/", "/lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


class Feeder(threading.Thread):
    """Keeps about `backlog` jobs in the pipeline (added and not yet done) until told to stop."""

    def __init__(self, system: Framework, backlog: int = 20_000) -> None:
        super().__init__(daemon=True)
        self.system, self.backlog = system, backlog
        self.client = redis.Redis.from_url(system.url)
        self.stopping = threading.Event()
        self.added = 0

    def run(self) -> None:
        done_before = self.system.finished(self.client)
        while not self.stopping.is_set():
            if self.added - (self.system.finished(self.client) - done_before) < self.backlog:
                prefill(self.client, self.system.input, 5_000, self.added)
                self.added += 5_000
            else:
                time.sleep(0.01)


def profile(py_spy: str, seconds: int, workdir: Path) -> tuple[Counter[str], int, float]:
    """Busy samples of the 4 workers, the jobs that finished while they were taken, and the
    CPU seconds the workers spent meanwhile."""
    server, url = start_redis(workdir)
    client = redis.Redis.from_url(url)
    # Retention and a short result_ttl keep Redis's memory bounded however long it runs.
    top = "retention:\n  max_len: 100000\nresult_ttl: 5s"
    system = Framework("bench", url, workdir, noop_stages(100), top=top)
    feeder = Feeder(system)
    try:
        system.start()
        system.warm_up(client)
        feeder.start()
        time.sleep(1)  # a full backlog before sampling starts
        done_before = system.finished(client)
        cpu_before = sum(cpu_seconds(worker.pid) for worker in system.processes)
        samplers = [
            subprocess.Popen(
                [
                    *(py_spy, "record", "--native", "--format", "raw", "--rate", str(RATE)),
                    *("--duration", str(seconds), "--pid", str(worker.pid)),
                    *("--output", str(workdir / f"worker-{worker.pid}.txt")),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for worker in system.processes
        ]
        errors = [sampler.communicate(timeout=seconds + 60)[1] for sampler in samplers]
        jobs = system.finished(client) - done_before
        cpu = sum(cpu_seconds(worker.pid) for worker in system.processes) - cpu_before
        failed = [e for sampler, e in zip(samplers, errors, strict=True) if sampler.returncode]
        if failed:
            lines = failed[0].decode().strip().splitlines() or ["no output"]
            sys.exit(f"py-spy failed: {lines[-1]}")
    finally:
        feeder.stopping.set()
        if feeder.is_alive():
            feeder.join()
        system.stop()
        server.terminate()
        server.wait(60)
    counts: Counter[str] = Counter()
    for raw in workdir.glob("worker-*.txt"):
        counts.update(leaf_counts(raw))
    return counts, jobs, cpu


def report(counts: Counter[str], jobs: int, cpu: float, seconds: int, top: int) -> str:
    total = sum(counts.values()) or 1
    layers: Counter[str] = Counter()
    for frame, count in counts.items():
        layers[layer_of(frame)] += count
    lines = [
        f"py-spy --native, 4 no-op stage workers, {seconds:.0f} s at {RATE} samples/s each: "
        f"{total:,} busy samples, {jobs:,} jobs through while sampled",
        f"CPU per message and stage: {cpu * 1e6 / max(jobs, 1) / 4:.1f} us "
        "(the workers' CPU time from /proc / jobs / 4 stages; sampling slows them a little)",
        "",
        f"{'share':>6}  layer (self time of the frames in it)",
    ]
    lines += [f"{count / total:>6.1%}  {layer}" for layer, count in layers.most_common()]
    lines += ["", f"{'share':>6}  function (self time)"]
    functions: Counter[str] = Counter()
    for frame, count in counts.items():
        functions[function_of(frame)] += count
    lines += [f"{count / total:>6.1%}  {name}" for name, count in functions.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="how long each worker is sampled")
    parser.add_argument("--top", type=int, default=20, help="how many functions to list")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "profile.txt")
    options = parser.parse_args()
    # The virtualenv's py-spy first: make runs this with the venv's python, not its PATH.
    py_spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if py_spy is None:
        sys.exit("bench/worker_profile.py needs py-spy: pip install py-spy (in the dev extra)")
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        counts, jobs, cpu = profile(py_spy, options.seconds, Path(tmp))
    text = report(counts, jobs, cpu, options.seconds, options.top)
    print(text)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(text + "\n")
    print(f"written to {options.out}")


if __name__ == "__main__":
    main()
