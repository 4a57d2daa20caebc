"""`pipeline run PATH...`: the whole pipeline on one machine, from files to printed results.

Every stage runs in a worker process of its own, as in production (stage_processes.py),
against embedded Redis unless REDIS_URL is set; the files are submitted as jobs, and each job's
result is printed once all have finished. Stage functions are imported here before anything is
submitted, so a broken stage module costs no queued jobs.
Every file is one job: one that cannot travel as a payload goes as a reference, read where the
stages run, and a file they may not read fails as its own job with the reason (documents.py).
A stop signal ends the run as a normal end does, and the next run finishes what it left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from framework import logs
from framework.cli.check import import_stages
from framework.cli.common import FileOption, UsageProblem, connected, load_pipeline, run
from framework.cli.display import first_line, json_line, result_lines
from framework.cli.documents import Document, find_documents
from framework.cli.progress import Tracker, progress
from framework.cli.signals import STOP_SIGNALS, noted
from framework.cli.stage_processes import StageProcesses, WorkerExited
from framework.errors import BacklogFull, PipelineError, WaitTimeout
from framework.files import ROOTS_VARIABLE
from framework.jobs import Job
from framework.pipeline import Pipeline
from framework.worker.backpressure import backlog

SUBMIT_CHUNK = 100  # documents read and submitted per round trip
GRACE_PERIOD = timedelta(seconds=10)
BACKLOG_PAUSE = 0.2  # seconds to wait when the first stage's max_backlog refuses a document


@dataclass(frozen=True, slots=True)
class Outcome:
    document: Document
    job: Job


class JobsUnfinished(PipelineError):
    """`--timeout` passed with jobs still queued or running."""

    def __init__(self, unfinished: int, total: int, timeout: float) -> None:
        super().__init__(f"{unfinished} of {total} jobs not finished after {timeout:g}s")


async def submit_documents(
    pipeline: Pipeline,
    documents: list[Document],
    workers: asyncio.Task[None],
    interrupted: asyncio.Event,
) -> list[str]:
    """Submit in chunks; with `max_backlog` on the first stage, one at a time, waiting for room
    (while the workers that make it are up, and until a stop signal). A file too large to
    travel as a payload goes as a reference (Document.job)."""
    limit = pipeline.spec.max_payload
    chunk = 1 if pipeline.spec.first.max_backlog is not None else SUBMIT_CHUNK
    ids: list[str] = []
    for start in range(0, len(documents), chunk):
        payloads = [document.job(limit) for document in documents[start : start + chunk]]
        while True:
            try:
                ids += await pipeline.submit_many_async(payloads)
                break
            except BacklogFull:  # one document per call: nothing of it was written
                if interrupted.is_set():
                    raise SubmitInterrupted(len(ids), len(documents)) from None
                if workers.done():
                    workers.result()  # raises what stopped them
                await asyncio.sleep(BACKLOG_PAUSE)
    return ids


async def wait_for_jobs(
    pipeline: Pipeline,
    ids: list[str],
    timeout: float | None,
    tracker: Tracker,
    workers: asyncio.Task[None],
    interrupted: asyncio.Event,
) -> dict[str, Job]:
    """Every job, finished or (after `timeout`) as it stands; a crashed worker ends the wait,
    and so does a stop signal (RunInterrupted)."""
    finished: dict[str, Job] = {}

    def note(job: Job) -> None:
        finished[job.id] = job
        tracker.finished(job)

    waiting = asyncio.create_task(pipeline.wait_all_async(ids, timeout, note))
    stopped = asyncio.create_task(interrupted.wait())
    try:
        await asyncio.wait({waiting, workers, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # the client closes next, under a still-blocked XREAD
        for task in (waiting, stopped):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    if interrupted.is_set():
        raise RunInterrupted(len(ids) - len(finished), len(ids))
    if waiting.cancelled():
        workers.result()  # raises what stopped the workers
        raise PipelineError("the workers stopped before every job finished")
    with contextlib.suppress(WaitTimeout):
        return waiting.result()
    for job_id in ids:
        if job_id not in finished:
            finished[job_id] = await pipeline.status_async(job_id)
    return finished


def on_stop_signals(interrupted: asyncio.Event) -> None:
    """SIGTERM or Ctrl-C: stop the run as a normal end does (workers drain, the embedded Redis
    stops; what is unfinished stays queued in its AOF for the next run). A second one exits
    at once."""
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        if interrupted.is_set():
            print("interrupted again: exiting at once", file=sys.stderr, flush=True)
            os._exit(130)
        interrupted.set()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop, signum)
    if noted:  # stopped while still starting
        stop(noted[0])


async def process(
    pipeline: Pipeline, documents: list[Document], timeout: float | None
) -> list[Outcome]:
    interrupted = asyncio.Event()
    on_stop_signals(interrupted)
    async with connected(pipeline):  # the embedded Redis starts here, before its users
        leftovers = await mention_leftovers(pipeline)
        stages = StageProcesses(pipeline.spec.source, list(pipeline.stage_names), GRACE_PERIOD)
        await stages.start()
        workers = asyncio.create_task(stages.watch())
        try:
            async with progress(len(documents)) as tracker:
                ids = await submit_documents(pipeline, documents, workers, interrupted)
                jobs = await wait_for_jobs(pipeline, ids, timeout, tracker, workers, interrupted)
            if leftovers:
                await finish_leftovers(pipeline, timeout, workers, interrupted)
                if workers.done() and not interrupted.is_set():
                    workers.result()  # a worker died with an earlier run's work still queued
        finally:
            await stages.stop()
            with contextlib.suppress(WorkerExited):  # raised above if it cost any job
                await workers
    return [Outcome(doc, jobs[job_id]) for doc, job_id in zip(documents, ids, strict=True)]


class RunInterrupted(PipelineError):
    """A stop signal ended the run; what was not finished stays queued for the next one."""

    exit_code = 130

    def __init__(self, unfinished: int, total: int) -> None:
        super().__init__(
            f"interrupted: {unfinished} of {total} documents not finished; they stay queued "
            "and the next run finishes them"
        )


class SubmitInterrupted(PipelineError):
    """A stop signal came while documents waited for room in the first stage (`max_backlog`)."""

    exit_code = 130

    def __init__(self, queued: int, total: int) -> None:
        super().__init__(
            f"interrupted while submitting: {queued} of {total} documents were queued; they "
            "stay queued and the next run finishes them"
        )


LEFTOVER_CAP = 10_000  # counting further costs more than the figure is worth


async def waiting_messages(pipeline: Pipeline) -> int:
    """Messages in the pipeline's stages not yet done (counted up to about LEFTOVER_CAP)."""
    client = await pipeline.client()
    waiting = 0
    for stage in pipeline.spec.stages:
        waiting += max(await backlog(client, stage.input_stream, stage.name, LEFTOVER_CAP), 0)
    return waiting


async def mention_leftovers(pipeline: Pipeline) -> int:
    """Work an earlier run left (stopped, or Ctrl-C; the embedded Redis keeps it in its AOF)
    is finished by this one, which says so; returns how many messages it is."""
    waiting = await waiting_messages(pipeline)
    if waiting:
        shown = f"{waiting:,}" if waiting < LEFTOVER_CAP else f"over {LEFTOVER_CAP:,}"
        print(
            f"note: an earlier run left {shown} message{'' if waiting == 1 else 's'} unfinished "
            f"in {pipeline.name}; this run finishes them too (pipeline status shows them)",
            file=sys.stderr,
        )
    return waiting


async def finish_leftovers(
    pipeline: Pipeline,
    timeout: float | None,
    workers: asyncio.Task[None],
    interrupted: asyncio.Event,
) -> None:
    """Until no stage has work waiting (an earlier run's), or the timeout, or a stop."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while await waiting_messages(pipeline):
        if interrupted.is_set() or workers.done():
            return
        if deadline is not None and time.monotonic() > deadline:
            return
        await asyncio.sleep(0.2)


def print_outcome(outcome: Outcome) -> None:
    """`PATH  STATE` and the error, or the result below it, one line per key, abbreviated."""
    job, header = outcome.job, f"{outcome.document.path}  {outcome.job.state}"
    if job.state == "failed":
        typer.echo(f"{header}  {first_line(job.error, limit=500)}")
    elif not job.finished:
        typer.echo(f"{header}  (not finished)")
    elif not job.results:
        typer.echo(f"{header}  (no result)")
    else:
        typer.echo("\n".join([header, *result_lines(job.result)]))


def write_output(path: Path, outcomes: list[Outcome]) -> None:
    with path.open("w", encoding="utf-8") as output:
        for outcome in outcomes:
            job = outcome.job
            record = {"job": job.id, "filename": outcome.document.name, "state": job.state,
                      "result": job.result, "error": job.error,
                      "stages": job.to_dict()["stages"]}  # fmt: skip
            output.write(json_line(record) + "\n")


def allow_reading_from(paths: list[Path]) -> None:
    """The stages here may read exactly the folders given (a file's own folder for a file):
    what a job names by `path` is read only there (framework.files), whatever it says."""
    folders = [path if path.is_dir() else path.parent for path in paths]
    os.environ[ROOTS_VARIABLE] = os.pathsep.join(str(folder.resolve()) for folder in folders)


def run_command(
    ctx: typer.Context,
    paths: Annotated[
        list[Path], typer.Argument(metavar="PATH...", help="Files or folders; each file one job.")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write full results as JSON Lines.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="Seconds to wait for all jobs (default: no limit).")
    ] = None,
    file: FileOption = None,
) -> None:
    """Run every stage here, process the documents, print each result; exit 1 if any failed."""
    documents = find_documents(paths)
    if output is not None and not output.parent.is_dir():
        raise UsageProblem(f"--output {output}: no folder {output.parent}")
    allow_reading_from(paths)
    logs.configure(level=os.environ.get("PIPELINE_LOG_LEVEL") or "error")
    pipeline = load_pipeline(ctx)
    import_stages(pipeline)
    outcomes = run(process(pipeline, documents, timeout))
    for outcome in outcomes:
        print_outcome(outcome)
    if output is not None:
        write_output(output, outcomes)
    unfinished = sum(1 for outcome in outcomes if not outcome.job.finished)
    if unfinished:
        raise JobsUnfinished(unfinished, len(outcomes), timeout or 0.0)
    if any(outcome.job.state == "failed" for outcome in outcomes):
        raise typer.Exit(1)
