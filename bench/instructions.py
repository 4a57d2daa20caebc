"""`make bench-instructions`: what one job costs in CPU instructions, counted by valgrind.

Jobs/s on a shared 2-core machine move by +-30% from run to run; instructions do not. This
counts, for the framework and for the hand loop, the instructions Redis executes per job
through 4 no-op stages, and those the 4 stage processes execute per job, each while N jobs
drain (the other side running at full speed). From them follows the bound on 2 cores: Redis
is one thread, so a pipeline can go no faster than Redis's own work allows, nor faster than
all the work spread over both cores.

    python bench/instructions.py [--jobs 4000] [--json bench/results/instructions.json]

Needs valgrind (`apt-get install valgrind`). About 4 minutes for 4,000 jobs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis
from harness import ROOT, Framework, HandLoop, System, noop_stages, prefill, start_redis, wait_for

CALLGRIND = ("valgrind", "--quiet", "--tool=callgrind", "--instr-atstart=no")


def counted(out: Path) -> tuple[str, ...]:
    return (*CALLGRIND, f"--callgrind-out-file={out}.%p")


def instructions(out: Path) -> int:
    """The instructions callgrind counted in the files of one run (one per process)."""
    total = 0
    for path in out.parent.glob(out.name + ".*"):
        counts = [
            int(line.split()[1])
            for line in path.read_text(errors="replace").splitlines()
            if line.startswith(("summary:", "totals:"))  # "summary: 0" when counted in parts
        ]
        total += max(counts, default=0)
    return total


def toggle(pids: list[int], on: bool) -> None:
    for pid in pids:
        subprocess.run(
            ["callgrind_control", "-i", "on" if on else "off", str(pid)],
            capture_output=True,
            check=False,
        )


def drain(system: System, client: redis.Redis, jobs: int, counted_pids: list[int]) -> None:
    """N jobs through a warmed-up system, with instruction counting on for `counted_pids`."""
    client.flushall()
    system.start()
    system.warm_up(client)
    done_before = system.finished(client)
    toggle(counted_pids or [p.pid for p in system.processes], True)
    prefill(client, system.input, jobs)
    wait_for(lambda: system.finished(client) >= done_before + jobs, 3600, 0.2)
    toggle(counted_pids or [p.pid for p in system.processes], False)
    system.stop()


def redis_per_job(make: type[System], workdir: Path, jobs: int) -> float:
    """Instructions of redis-server per job, the stage processes running natively."""
    out = workdir / f"redis-{make.__name__}"
    server, url = start_redis(workdir, counted(out), wait=120)
    try:
        system = _system(make, url, workdir)
        drain(system, redis.Redis.from_url(url), jobs, [server.pid])
    finally:
        server.terminate()
        server.wait(120)
    return instructions(out) / jobs


def stages_per_job(make: type[System], workdir: Path, jobs: int) -> float:
    """Instructions of the 4 stage processes together per job, Redis running natively."""
    out = workdir / f"stages-{make.__name__}"
    server, url = start_redis(workdir)
    try:
        system = _system(make, url, workdir)
        system.wrapper = counted(out)
        drain(system, redis.Redis.from_url(url), jobs, [])
    finally:
        server.terminate()
        server.wait(60)
    return instructions(out) / jobs


def _system(make: type[System], url: str, workdir: Path) -> System:
    if make is Framework:
        return Framework("bench", url, workdir, noop_stages(100))
    return HandLoop("hand", url, workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4000, help="jobs per counted run")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "bench" / "results" / "instructions.json"
    )
    options = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("bench/instructions.py needs valgrind: apt-get install valgrind")
    started = time.monotonic()
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        for make in (HandLoop, Framework):
            name = "framework" if make is Framework else "hand loop"
            figures[name] = {
                "redis": redis_per_job(make, Path(tmp), options.jobs),
                "stages": stages_per_job(make, Path(tmp), options.jobs),
            }
    for row in figures.values():
        # On 2 cores: Redis is one thread; all the work shares both cores.
        row["bound"] = max(row["redis"], (row["redis"] + row["stages"]) / 2)
    print_table(figures, options.jobs, time.monotonic() - started)
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps({"jobs": options.jobs, "per_job": figures}, indent=2))
    print(f"written to {options.json}")


def print_table(figures: dict[str, dict[str, float]], jobs: int, elapsed: float) -> None:
    print(f"\ninstructions per job through 4 no-op stages ({jobs:,} jobs each; {elapsed:.0f} s)")
    print(f"{'':10} {'Redis':>10} {'4 stages':>10} {'all':>10} {'2-core bound':>13}")
    for name, row in figures.items():
        print(
            f"{name:10} {row['redis']:>10,.0f} {row['stages']:>10,.0f} "
            f"{row['redis'] + row['stages']:>10,.0f} {row['bound']:>13,.0f}"
        )
    hand, ours = figures["hand loop"]["bound"], figures["framework"]["bound"]
    print(f"throughput these counts allow, framework / hand loop: {hand / ours:.2f}")


if __name__ == "__main__":
    main()
