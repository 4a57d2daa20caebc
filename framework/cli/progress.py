"""How far `pipeline run` is: a bar on a terminal, a line every few seconds anywhere else.

A run of hundreds of documents takes minutes. On a terminal the rich bar shows it; in CI, under
nohup or in a container's log nothing redraws, so every LINE_EVERY seconds one line says what
is done, what failed, what is still in flight and the rate, and one more when the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from framework.jobs import Job

LINE_EVERY = 5.0  # seconds between lines when stderr is not a terminal


class Tracker:
    """Counts what a run submitted and what finished; shows it as it goes."""

    def __init__(self, total: int, output: TextIO) -> None:
        self.total, self.output = total, output
        self.done = self.failed = 0
        self.started = time.monotonic()
        self._bar: tuple[Progress, TaskID] | None = None

    def show_on(self, bar: Progress) -> None:
        self._bar = (bar, bar.add_task("processing", total=self.total))

    def finished(self, job: Job) -> None:
        if job.state == "failed":
            self.failed += 1
        else:
            self.done += 1
        if self._bar is not None:
            bar, task = self._bar
            bar.advance(task)

    def line(self) -> str:
        processed = self.done + self.failed
        seconds = max(time.monotonic() - self.started, 1e-9)
        return (
            f"processed {processed:,}/{self.total:,}: {self.done:,} done, {self.failed:,} failed,"
            f" {self.total - processed:,} in flight, {processed / seconds:.1f} docs/s"
        )

    async def report_every(self, seconds: float) -> None:
        """Until cancelled: a line every `seconds`."""
        while True:
            await asyncio.sleep(seconds)
            print(self.line(), file=self.output, flush=True)


@contextlib.asynccontextmanager
async def progress(total: int, output: TextIO | None = None) -> AsyncIterator[Tracker]:
    """A bar on `output` (stderr) when it is a terminal; otherwise a line every LINE_EVERY
    seconds, and a last one at the end."""
    output = output or sys.stderr
    tracker = Tracker(total, output)
    if output.isatty():
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())  # fmt: skip
        with Progress(*columns, console=Console(file=output), transient=True) as bar:
            tracker.show_on(bar)
            yield tracker
        return
    reporting = asyncio.create_task(tracker.report_every(LINE_EVERY))
    try:
        yield tracker
    finally:
        reporting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporting
        print(tracker.line(), file=output, flush=True)
