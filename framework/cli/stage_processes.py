"""The stage workers of `pipeline run`: one `pipeline worker STAGE` process per stage.

Why processes and not tasks of the run's own process: stages in one process share its GIL. A
stage of pure Python (analyze) and one that drives PyTorch (embed: the model's forward pass
runs hundreds of small operators, each dispatched from Python) then wait for each other's
hold on it, and the PyTorch threads wait with them. On 2 cores, 200 real documents took 58-60 s
in one process against 51-54 s in processes of their own, and 53-55 s one document after
another in a plain script. So each stage runs as it runs in production, one worker process
per stage, and the OS shares the cores between them.

The processes are the run's: in a session of their own (a Ctrl-C at the terminal reaches the
run only, which stops each of them with one SIGTERM: a second would make a worker drop what it
holds), and stopped by the kernel if the run dies without stopping them
(signals.stop_with_parent).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

from framework.cli.signals import PARENT_VARIABLE
from framework.errors import PipelineError

LOG_LEVEL = "error"  # a run's own output is its progress and results; workers say what fails
KILL_AFTER = 10.0  # seconds past the grace period before a worker that has not stopped is killed


class WorkerExited(PipelineError):
    """A stage's worker process ended while the run still needed it."""

    def __init__(self, stage: str, code: int) -> None:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        super().__init__(f"the worker of stage {stage!r} {how}; its log is above")


class StageProcesses:
    """Start them, notice one ending before its time, stop them all."""

    def __init__(self, pipeline_file: Path, stages: list[str], grace_period: timedelta) -> None:
        self.pipeline_file = pipeline_file
        self.stages = stages
        self.grace_period = grace_period
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._stopping = False

    async def start(self) -> None:
        env = {**os.environ, PARENT_VARIABLE: str(os.getpid())}
        env.setdefault("PIPELINE_LOG_LEVEL", LOG_LEVEL)
        grace = f"{self.grace_period.total_seconds():g}s"
        try:
            for stage in self.stages:
                self._processes[stage] = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "framework", "-f", str(self.pipeline_file),
                    "worker", stage, "--grace-period", grace,
                    env=env, stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
        except BaseException:  # those started stop now, not when the run exits
            await self.stop()
            raise

    async def watch(self) -> None:
        """Return once they are stopped; raise WorkerExited if one ends before."""
        waits = {
            asyncio.create_task(process.wait()): stage for stage, process in self._processes.items()
        }
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        if self._stopping:
            return
        ended = next(iter(done))
        raise WorkerExited(waits[ended], ended.result())

    async def stop(self) -> None:
        """SIGTERM to each (it finishes or hands back what it holds), then wait; a worker still
        up KILL_AFTER seconds past its grace period is killed (its messages are reclaimed after
        their lease by the next run)."""
        self._stopping = True
        running = [p for p in self._processes.values() if p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        waiting = asyncio.gather(*(process.wait() for process in running))
        try:
            await asyncio.wait_for(waiting, self.grace_period.total_seconds() + KILL_AFTER)
        except TimeoutError:
            for process in running:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)  # and what its stage started
            await asyncio.gather(*(process.wait() for process in running))
