"""`pipeline status [JOB] [--watch] [--json]`: how each stage is doing, or where one job is.

Reads only (framework/stats.py), so it is safe to leave `--watch` running against production.
Tables go to stdout through rich; `--json` prints one JSON object (one per second with --watch).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Annotated

import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from framework.cli.common import FileOption, connected, load_pipeline, run
from framework.cli.display import duration_ms, json_line, result_lines, timestamp
from framework.jobs import Job
from framework.pipeline import Pipeline
from framework.stats import STAGE_COLUMNS, PipelineStats, StageStats, Tally, read_stats

REFRESH_SECONDS = 1.0


def _count(value: int, exact: bool) -> str:
    return f"{value}" if exact else f"{value}+"


def stage_row(stage: StageStats, prefix: str, dead: Tally, retries: Tally) -> list[str]:
    return [
        stage.stage,
        stage.input_stream.removeprefix(prefix),  # `input`, or the stage above; --json: full key
        str(stage.length),
        "-" if stage.lag is None else _count(stage.lag, stage.lag_exact),
        str(stage.pending),
        f"{stage.active_consumers}/{stage.consumers}",
        f"{stage.throughput:.1f}",
        _count(stage.dead_letters, dead.exact),
        _count(stage.retries, retries.exact),
    ]


def stats_view(stats: PipelineStats) -> RenderableType:
    """One row per stage; `workers` is active/all consumers, `out/s` over the last 10-20 s."""
    title = f"pipeline {stats.name} (Redis {stats.server_version})"
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        collapse_padding=True,
    )
    for header in STAGE_COLUMNS:
        if header == "input":  # the only column that may wrap: a long external stream key
            table.add_column(header, overflow="fold", min_width=12)
        else:
            table.add_column(header, justify="left" if header == "stage" else "right", no_wrap=True)
    for stage in stats.stages:
        table.add_row(*stage_row(stage, "{" + stats.name + "}:", stats.dead, stats.retries))
    footer = Text(
        f"dead letters: {stats.dead.total}   waiting retries: {stats.retries.total}", style="dim"
    )
    return Group(table, footer)


def job_view(job: Job) -> RenderableType:
    """The job's state and times, a row per stage it went through, its error and result."""
    parts: list[RenderableType] = [Text(f"job {job.id}: {job.state}", style="bold")]
    if job.stages:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True)
        for header in ("stage", "took", "left at"):
            table.add_column(header, justify="left" if header == "stage" else "right")
        for timing in job.stages:
            last = duration_ms(timing.last_at_ms - job.submitted_ms) if timing.last_at_ms else ""
            busy = duration_ms(timing.busy_ms)
            table.add_row(timing.stage, busy, f"+{last}" if last else "-")
        parts.append(table)
    lines = [f"submitted {timestamp(job.submitted_ms)}"] if job.submitted_ms else []
    if job.finished_ms:
        lines.append(f"finished after {duration_ms(job.finished_ms - job.submitted_ms)}")
    if job.error:
        lines.append(f"error: {job.error}")
    if job.results:
        lines += ["result:", *result_lines(job.result)]
    return Group(*parts, *(Text(line) for line in lines))


async def snapshot(pipeline: Pipeline, job_id: str | None) -> tuple[RenderableType, str, bool]:
    """(view, JSON, finished): one reading of the job, or of every stage."""
    if job_id is not None:
        job = await pipeline.status_async(job_id)
        return job_view(job), json_line(job.to_dict()), job.finished
    stats = await read_stats(await pipeline.client(), await pipeline.server(), pipeline.spec)
    return stats_view(stats), json_line(stats.to_dict()), False


async def show(pipeline: Pipeline, job_id: str | None, as_json: bool) -> None:
    async with connected(pipeline):
        view, text, _ = await snapshot(pipeline, job_id)
    if as_json:
        typer.echo(text)
    else:
        Console().print(view)


async def watch(pipeline: Pipeline, job_id: str | None, as_json: bool) -> None:
    """Redraw every second until Ctrl-C (a job view stops once the job has finished)."""
    async with connected(pipeline):
        if as_json:
            while True:
                _, text, finished = await snapshot(pipeline, job_id)
                typer.echo(text)
                if finished:
                    return
                await asyncio.sleep(REFRESH_SECONDS)
        view, _, finished = await snapshot(pipeline, job_id)
        console = Console()
        if not console.is_terminal:  # a pipe or a container's log: one table per reading
            console.print(view)
            while not finished:
                await asyncio.sleep(REFRESH_SECONDS)
                view, _, finished = await snapshot(pipeline, job_id)
                console.print(view)
                sys.stdout.flush()
            return
        with Live(view, auto_refresh=False, console=console) as live:
            while not finished:
                await asyncio.sleep(REFRESH_SECONDS)
                view, _, finished = await snapshot(pipeline, job_id)
                live.update(view, refresh=True)


def status(
    ctx: typer.Context,
    job_id: Annotated[str | None, typer.Argument(metavar="JOB", help="A job id.")] = None,
    watch_: Annotated[bool, typer.Option("--watch", "-w", help="Redraw every second.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, in full.")] = False,
    file: FileOption = None,
) -> None:
    """Per stage: length, lag, pending, consumers, throughput, dead letters; or one JOB."""
    pipeline = load_pipeline(ctx)
    if not watch_:
        run(show(pipeline, job_id, as_json))
        return
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a watch ends: exit 0
        run(watch(pipeline, job_id, as_json))
