"""`make bench-profile`: where a stage worker's CPU goes while jobs stream through, by py-spy.

Four no-op stages run as in the throughput case; once they are warm, py-spy samples every
worker for a few seconds while a feeder keeps their inputs full. The samples of all four are
summed and shown twice: by the function that was running (self time, the hot spots) and by
the layer it belongs to (this framework, redis-py, hiredis, the event loop, orjson, ...), so a
change shows up as a shift between layers rather than as one run's noise.

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
from harness import ROOT, Framework, noop_stages, prefill, start_redis

RATE = 200  # samples per second and worker; only samples of a busy worker are kept

# The layer a frame belongs to, by where its file lives (first match wins). py-spy sees Python
# frames: time in uvloop's C code (sockets, callbacks, timers) shows as the frame that runs
# the loop, asyncio.run's.
LAYERS = (
    ("Runner.run (", "event loop (uvloop, in C)"),
    ("framework/", "framework"),
    ("redis/", "redis-py"),
    ("hiredis", "hiredis"),
    ("uvloop", "uvloop"),
    ("asyncio/", "asyncio"),
    ("orjson", "orjson"),
    ("structlog/", "structlog"),
    ("bench_stages", "the stage function"),
)


def layer_of(frame: str) -> str:
    for marker, layer in LAYERS:
        if marker in frame:
            return layer
    return "other (Python, stdlib)"


def leaf_counts(raw: Path) -> Counter[str]:
    """py-spy's raw format: one collapsed stack per line, `outer;...;leaf count`."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[stack.rsplit(";", 1)[-1].strip()] += int(count)
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


def profile(py_spy: str, seconds: int, workdir: Path) -> tuple[Counter[str], int]:
    """Busy samples of the 4 workers, and the jobs that finished while they were taken."""
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
        samplers = [
            subprocess.Popen(
                [
                    *(py_spy, "record", "--format", "raw", "--rate", str(RATE), "--nonblocking"),
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
    return counts, jobs


def report(counts: Counter[str], jobs: int, seconds: int, top: int) -> str:
    total = sum(counts.values()) or 1
    layers: Counter[str] = Counter()
    for frame, count in counts.items():
        layers[layer_of(frame)] += count
    busy_us = total / RATE * 1e6
    lines = [
        f"py-spy, 4 no-op stage workers, {seconds:.0f} s at {RATE} samples/s each: "
        f"{total:,} busy samples, {jobs:,} jobs through while sampled",
        f"CPU per message and stage: ~{busy_us / max(jobs, 1) / 4:.1f} us "
        "(busy samples / rate / jobs / 4 stages)",
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
        counts, jobs = profile(py_spy, options.seconds, Path(tmp))
    text = report(counts, jobs, options.seconds, options.top)
    print(text)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(text + "\n")
    print(f"written to {options.out}")


if __name__ == "__main__":
    main()
