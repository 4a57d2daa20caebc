"""Test helpers: write a pipeline (yaml + stage module) into a folder, run worker processes.

Each test's stage module gets a name of its own (`stages_<pipeline name>`), because a module
imported once stays in `sys.modules` for the whole pytest process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import redis

from framework.wire import range_reply

ROOT = Path(__file__).resolve().parent.parent


def write_pipeline(folder: Path, name: str, stages: str, code: str, top: str = "") -> Path:
    """Write pipeline.yaml and its stage module; `{mod}` in `stages` names that module."""
    module = "stages_" + name.replace("-", "_")
    package = folder / module
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "fns.py").write_text(textwrap.dedent(code))
    body = textwrap.dedent(stages).replace("{mod}", f"{module}.fns").strip("\n")
    text = f"name: {name}\nredis:\n  url: ${{REDIS_URL}}\n{textwrap.dedent(top).strip()}\n"
    text += "stages:\n" + textwrap.indent(body, "  ") + "\n"
    path = folder / "pipeline.yaml"
    path.write_text(text)
    return path


def worker_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "REDIS_URL": redis_url, "PIPELINE_LOG_LEVEL": "warning", **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def start_worker(
    pipeline: Path, stage: str, redis_url: str, *args: str, log: Path | None = None, **env: str
) -> subprocess.Popen[bytes]:
    """`pipeline worker STAGE` as its own process, the way a container runs it."""
    command = [sys.executable, "-m", "framework", "-f", str(pipeline), "worker", stage, *args]
    if log is None:
        return subprocess.Popen(
            command,
            env=worker_env(redis_url, **env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=pipeline.parent,
        )
    with open(log, "ab") as output:  # the child keeps its own descriptor
        return subprocess.Popen(
            command,
            env=worker_env(redis_url, **env),
            stdout=output,
            stderr=output,
            cwd=pipeline.parent,
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> int:
    """SIGTERM, then wait; returns the exit status (SIGKILL if it does not stop in time)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def outputs_per_job(client: redis.Redis, stream: str) -> Counter[str]:
    """How many entries each job has in `stream` (exactly-once means one per input)."""
    counts: Counter[str] = Counter()
    for _id, fields in range_reply(client.xrange(stream)):
        counts[fields[b"job"].decode()] += 1
    return counts


def job_states(client: redis.Redis, name: str, job_ids: list[str]) -> Counter[str]:
    pipe = client.pipeline(transaction=False)
    for job in job_ids:
        pipe.hget(f"{{{name}}}:job:{job}", "state")
    return Counter((state or b"missing").decode() for state in pipe.execute())
