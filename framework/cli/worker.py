"""`pipeline worker STAGE | --all`: a stage's consumer, for a container.

SIGTERM or SIGINT (cli/signals.py) sets the stopping event, so the worker stops reading and
finishes or hands back what it holds within the grace period, then exits 0. A second signal
exits at once with 130; what was in flight stays pending and is reclaimed after its lease.
"""

from __future__ import annotations

import asyncio
import gc
import os
from datetime import timedelta
from typing import Annotated

import structlog
import typer

from framework.cli.common import (
    DEFAULT_STARTUP_WAIT,
    FileOption,
    StartupWaitOption,
    UsageProblem,
    check_stage,
    load_pipeline,
    parse_startup_wait,
    run,
)
from framework.cli.signals import install_stop_handlers, stop_with_parent
from framework.durations import parse_duration
from framework.pipeline import Pipeline

log = structlog.get_logger()


def freeze_startup_heap() -> None:
    """Move what the process holds before its first read out of the cyclic collector's sight.

    Modules, classes, the stage module's imports (a model it loads, torch) live as long as the
    worker. Left to the collector, every full collection walks them all (about 57,000 objects
    and 25 ms in a no-op worker, more with torch), and per-message garbage triggers one every
    few tens of thousands of messages: a sixth of a no-op worker's CPU. Frozen, collections
    look at what messages left behind. The price: an object made before the first read that
    later becomes garbage inside a reference cycle (a model swapped for another, a cache
    filled at import and emptied later) is never freed; `PIPELINE_GC_FREEZE=0` keeps the
    collector's default for such a stage.
    """
    if os.environ.get("PIPELINE_GC_FREEZE", "1") == "0":
        return
    gc.collect()
    gc.freeze()


async def run_workers(
    pipeline: Pipeline, stages: list[str] | None, concurrency: int | None, grace: timedelta
) -> None:
    stopping = asyncio.Event()
    install_stop_handlers(stopping)
    try:
        await pipeline.run_workers_async(
            stages, stopping, concurrency, grace, ready=freeze_startup_heap
        )
    finally:
        await pipeline.close_async()


def parse_grace_period(value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as error:
        raise UsageProblem(f"--grace-period: {error}") from None


def worker(
    ctx: typer.Context,
    stages: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[STAGE]...", help="Stage(s) to consume; or --all.", show_default=False
        ),
    ] = None,
    all_stages: Annotated[bool, typer.Option("--all", help="Run every stage.")] = False,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Messages in flight per stage (overrides the YAML).")
    ] = None,
    grace_period: Annotated[
        str, typer.Option(help="How long in-flight messages may finish after SIGTERM.")
    ] = "30s",
    startup_wait: StartupWaitOption = DEFAULT_STARTUP_WAIT,
    file: FileOption = None,
) -> None:
    """Consume STAGE's input until SIGTERM/SIGINT (graceful; a second signal exits at once)."""
    stop_with_parent()
    if bool(stages) == all_stages:
        raise UsageProblem("name a STAGE to run, or --all (not both)")
    grace = parse_grace_period(grace_period)
    pipeline = load_pipeline(ctx, redis_wait=parse_startup_wait(startup_wait))
    names = list(dict.fromkeys(stages or ()))
    for name in names:
        check_stage(pipeline, name)
    run(run_workers(pipeline, None if all_stages else names, concurrency, grace))
