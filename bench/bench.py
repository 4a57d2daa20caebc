"""`make bench`: the framework against a hand-written redis-py loop, and against the ideal.

Starts its own redis-server, runs every case of `cases.py`, prints one table (case, framework,
hand loop or ideal, ratio, target, met?) and what Redis did per job, and writes it as JSON with
the machine. Quick by default (under 4 minutes on 2 cores); `--full` runs the memory case with
1,000,000 jobs.

    python bench/bench.py [--full] [--repeat 3] [--jobs 10000] [--only throughput,memory]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases
from harness import ROOT, machine, start_redis

CASES = ("throughput", "latency", "io", "batch", "memory", "scaling")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="memory case with 1,000,000 jobs")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per case (median)")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per throughput run")
    parser.add_argument("--concurrency", type=int, default=100, help="of each no-op stage")
    parser.add_argument("--memory-jobs", type=int, help="jobs in the memory case")
    parser.add_argument("--only", default=",".join(CASES), help=f"some of {','.join(CASES)}")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    options = parser.parse_args()
    chosen = [c.strip() for c in options.only.split(",") if c.strip()]
    unknown = sorted(set(chosen) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    memory_jobs = options.memory_jobs or (cases.FULL_MEMORY_JOBS if options.full else 45_000)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        server, url = start_redis(Path(tmp))
        try:
            settings = cases.Settings(
                url=url,
                workdir=Path(tmp),
                repeat=options.repeat,
                jobs=options.jobs,
                concurrency=options.concurrency,
                memory_jobs=memory_jobs,
                redis_pid=server.pid,
            )
            rows = run(settings, chosen)
            info = machine(url)
        finally:
            server.terminate()
            server.wait()
    elapsed = time.monotonic() - started
    print_table(rows, info, options.repeat, elapsed)
    options.json.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": info,
        "repeat": options.repeat,
        "full": options.full,
        "seconds": round(elapsed, 1),
        "rows": [asdict(row) for row in rows],
    }
    options.json.write_text(json.dumps(report, indent=2))
    print(f"written to {options.json}")


def run(settings: cases.Settings, chosen: list[str]) -> list[cases.Row]:
    rows: list[cases.Row] = []
    max_rate = None
    if "throughput" in chosen or "latency" in chosen:
        found, max_rate = cases.throughput(settings)
        if "throughput" in chosen:
            rows += found
            rows += cases.throughput_own_core(settings)
    if "latency" in chosen and max_rate is not None:
        rows += cases.latency(settings, max_rate)
    if "io" in chosen:
        rows += cases.io_bound(settings)
    if "batch" in chosen:
        rows += cases.batching(settings)
    if "memory" in chosen:
        rows += cases.memory(settings)
    if "scaling" in chosen:
        rows += cases.scaling(settings)
    return rows


def print_table(
    rows: list[cases.Row], info: dict[str, object], repeat: int, elapsed: float
) -> None:
    print(
        f"\nmachine: {info['cores']} cores, {info['cpu']}, Python {info['python']}, "
        f"Redis {info['redis']}; medians of {repeat} runs; {elapsed:.0f} s"
    )
    width = max(len(row.case) for row in rows)
    header = (
        f"{'case':{width}} {'framework':>10} {'hand loop/ideal':>16} {'ratio':>6} {'target':>8}"
        "  met"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.case:{width}} {row.framework:>10} {row.baseline:>16} {row.ratio:>6.2f} "
            f"{row.target:>8}  {_verdict(row.met)}"
        )
    print_redis_work(rows)


def print_redis_work(rows: list[cases.Row]) -> None:
    """What Redis did per job in each throughput row: its CPU, and the commands it ran (those
    of scripts included, feeding included), framework against hand loop."""
    measured = [row for row in rows if "redis_us_per_job" in row.detail]
    if not measured:
        return
    print("\nRedis per job (framework / hand loop): CPU us, commands")
    for row in measured:
        cpu, commands = row.detail["redis_us_per_job"], row.detail["commands_per_job"]
        print(
            f"  {row.case:60} {cpu['framework']:6.1f} / {cpu['hand']:5.1f}   "
            f"{commands['framework']:5.2f} / {commands['hand']:5.2f}"
        )


def _verdict(met: bool | None) -> str:
    if met is None:
        return "-"
    return "yes" if met else "NO"


if __name__ == "__main__":
    main()
