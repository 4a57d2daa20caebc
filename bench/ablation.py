"""`make bench-ablation`: what the guarantees cost in case 1, measured by taking them out.

Case 1 (4 no-op stages, one process each) runs against the hand loop once per variant of the
engine, each a copy whose `commit.lua` leaves out more than the one before:

- as shipped: every guarantee (the job hash written when a job is submitted, starts and ends;
  per-stage timings travel in the messages);
- without the job hash: no job state, timings or fan-out count (the done stream stays: the
  benchmark counts finished jobs on it);
- without the ownership check as well: no XPENDING, so a late result would no longer be
  dropped.

Besides jobs/s it reads the CPU that Redis and the 4 stage processes spend per job (from
/proc), which moves less from run to run than jobs/s. The copies live in a temporary folder and
are never installed: they show where Redis's time goes, they are not a mode to run.

    python bench/ablation.py [--jobs 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases
import redis
from harness import (
    ROOT,
    Framework,
    HandLoop,
    System,
    cpu_seconds,
    noop_stages,
    start_redis,
)

COMMIT = Path("framework") / "lua" / "commit.lua"

# (what the script says, what it says instead): each must match commit.lua exactly once.
WITHOUT_JOB_HASH = (
    """local function finish(jobkey, job, state, fields)
""",
    """local function finish(jobkey, job, state, fields)
  if true then call("XADD", done, "*", "job", job, "state", state) return end
""",
)
NO_JOB_START = (
    """local function start(jobkey, job, id)
""",
    """local function start(jobkey, job, id)
  if true then return end
""",
)
WITHOUT_OWNERSHIP = (
    'for _, entry in ipairs(call("XPENDING", input, group, ARGV[9], ARGV[10], 1000000, consumer))'
    " do\n  mine[entry[1]] = true\nend",
    """for i = 1, n do mine[ARGV[ids + i]] = true end""",
)
VARIANTS: dict[str, tuple[tuple[str, str], ...]] = {
    "as shipped": (),
    "without the job hash": (WITHOUT_JOB_HASH, NO_JOB_START),
    "without job hash and ownership": (WITHOUT_JOB_HASH, NO_JOB_START, WITHOUT_OWNERSHIP),
}


class PatchDoesNotApply(Exception):
    pass


def patched(script: str, patches: tuple[tuple[str, str], ...]) -> str:
    for old, new in patches:
        if script.count(old) != 1:
            raise PatchDoesNotApply(
                f"bench/ablation.py: commit.lua no longer holds this once, update the patch:\n{old}"
            )
        script = script.replace(old, new)
    return script


def engine_copy(folder: Path, patches: tuple[tuple[str, str], ...]) -> Path:
    """A copy of framework/ under `folder`, its commit.lua patched."""
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "framework", folder / "framework", ignore=skip)
    (folder / COMMIT).write_text(patched((ROOT / COMMIT).read_text(), patches))
    return folder


@dataclass
class Drain:
    rate: float  # jobs/s
    redis_us: float  # Redis CPU per job
    stages_us: float  # the 4 stage processes' CPU per job
    feeder_us: float  # this script's CPU per job (feeding and watching), the same for both


class NotThisEngine(Exception):
    pass


def drain(system: System, url: str, server_pid: int, jobs: int, script: str = "") -> Drain:
    """N jobs through `system` as case 1 drains them; `script`, when given, is the commit.lua
    its workers must have loaded (proof that they run the engine copy, not the installed one)."""
    client = redis.Redis.from_url(url)
    client.script_flush()  # so that the script found after warm-up is this run's
    try:
        cases._ready(system, client)
        if script and not client.script_exists(hashlib.sha1(script.encode()).hexdigest())[0]:
            raise NotThisEngine("the workers run another engine than the patched copy")
        pids = [server_pid] + [p.pid for p in system.processes]
        before = [cpu_seconds(pid) for pid in pids]
        mine = time.process_time()
        rate = cases._drain(system, client, jobs, payload=1000).rate
        spent = [cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
        feeder = time.process_time() - mine
    finally:
        system.stop(graceful=False)
    per_job = 1e6 / jobs
    return Drain(rate, spent[0] * per_job, sum(spent[1:]) * per_job, feeder * per_job)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant (median)")
    options = parser.parse_args()
    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ablation-") as tmp:
        workdir = Path(tmp)
        try:
            engines = {
                name: engine_copy(workdir / f"engine-{n}", patches)
                for n, (name, patches) in enumerate(VARIANTS.items())
            }
        except PatchDoesNotApply as error:
            sys.exit(str(error))
        server, url = start_redis(workdir)
        try:
            for name, engine in engines.items():
                framework = Framework("bench", url, workdir, noop_stages(100))
                framework.engine = engine
                script = (engine / COMMIT).read_text()
                hand = HandLoop("hand", url, workdir)
                ours, theirs = [], []
                for _ in range(options.repeat):  # interleaved, as in case 1
                    ours.append(drain(framework, url, server.pid, options.jobs, script))
                    theirs.append(drain(hand, url, server.pid, options.jobs))
                rows.append((name, ours, theirs))
        except NotThisEngine as error:
            sys.exit(f"bench/ablation.py: {error}")
        finally:
            server.terminate()
            server.wait()
    print_table(rows, options.jobs, time.monotonic() - started)


Measured = list[tuple[str, list[Drain], list[Drain]]]  # variant, its runs, the hand loop's


def median(drains: list[Drain], field: str) -> float:
    return float(statistics.median(getattr(drain, field) for drain in drains))


def print_table(rows: Measured, jobs: int, elapsed: float) -> None:
    print(
        f"\ncase 1, parts of the engine taken out ({jobs:,} jobs a run; medians; {elapsed:.0f} s)"
    )
    header = (
        f"{'engine':32} {'jobs/s':>8} {'hand loop':>10} {'ratio':>6} {'Redis':>9} {'stages':>9}"
    )
    print(header)
    print(f"{'':60} {'(CPU us per job)':>19}")
    print("-" * len(header))
    for name, ours, theirs in rows:
        rate, hand = median(ours, "rate"), median(theirs, "rate")
        cpu = f"{median(ours, 'redis_us'):>9.1f} {median(ours, 'stages_us'):>9.1f}"
        print(f"{name:32} {rate:>8,.0f} {hand:>10,.0f} {rate / hand:>6.2f} {cpu}")
    hand_loop = [drain for _, _, theirs in rows for drain in theirs]
    cpu = f"{median(hand_loop, 'redis_us'):>9.1f} {median(hand_loop, 'stages_us'):>9.1f}"
    print(f"{'the hand loop':32} {'':>8} {'':>10} {'':>6} {cpu}")
    everyone = hand_loop + [drain for _, ours, _ in rows for drain in ours]
    print(f"this script, feeding and watching either: {median(everyone, 'feeder_us'):.1f} us/job")


if __name__ == "__main__":
    main()
