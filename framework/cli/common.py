"""What every command shares: the global `-f` file, loading the pipeline, and connecting to it.

One place, so each command module holds only its own command; and so that every command finds
pipeline.yaml (and the stage modules beside it) the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from framework.connection import AsyncClient
from framework.durations import parse_duration
from framework.errors import UsageProblem

__all__ = ["UsageProblem"]  # the commands import it from here, beside what they share
from framework.pipeline import Pipeline

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Options:
    """The global options, given before the command: `pipeline -f other.yaml status`."""

    file: Path


# `-f` after the command too (`pipeline status -f other.yaml`): every command declares it, and
# it wins over the one given before the command.
FileOption = Annotated[
    Path | None,
    typer.Option(
        "--file",
        "-f",
        help="The pipeline definition to use (default: pipeline.yaml).",
        show_default=False,
    ),
]


def pipeline_file(ctx: typer.Context) -> Path:
    given = ctx.params.get("file")
    if isinstance(given, Path):
        return given
    options = ctx.find_object(Options)
    return options.file if options is not None else Path("pipeline.yaml")


# How long a one-shot command (submit, status, dead, replay) waits for an unreachable Redis,
# or retries a submit whose reply was lost, before it says so in one line. Workers and
# `serve`, which an orchestrator may start before Redis, wait longer: --startup-wait.
COMMAND_REDIS_WAIT = 3.0


def load_pipeline(ctx: typer.Context, redis_wait: float = COMMAND_REDIS_WAIT) -> Pipeline:
    """Load the global `-f` file; its folder goes first on sys.path for the stage modules."""
    pipeline = Pipeline.load(pipeline_file(ctx), redis_wait=redis_wait)
    folder = str(pipeline.spec.base_dir)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return pipeline


def check_stage(pipeline: Pipeline, name: str) -> None:
    """A stage named on the command line: a typo there is the command's mistake (exit 2,
    before Redis is touched), not the file's."""
    known = [stage.name for stage in pipeline.spec.stages]
    if name not in known:
        raise UsageProblem(
            f"unknown stage {name!r}; {pipeline.spec.source.name} has: {', '.join(known)}"
        )


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine on a fresh event loop.

    uvloop where installed: a stage's trip from socket to function to commit is a handful of
    loop iterations, and uvloop makes each cheaper (idle latency through 4 stages -13%).
    """
    try:
        import uvloop  # Linux and macOS; asyncio's own loop elsewhere
    except ImportError:  # pragma: no cover - Windows
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


@contextlib.asynccontextmanager
async def connected(pipeline: Pipeline) -> AsyncIterator[AsyncClient]:
    """The pipeline's client (starting embedded Redis if configured); closed on the way out."""
    try:
        yield await pipeline.client()
    finally:
        await pipeline.close_async()


# Workers and `serve` start in containers that may come up before Redis does: an unreachable
# server (or a reply lost on the way) is waited for this long at start, then one line, exit 1.
# Once running, a worker waits for Redis for as long as it takes.
DEFAULT_STARTUP_WAIT = "60s"
StartupWaitOption = Annotated[
    str,
    typer.Option(
        envvar="PIPELINE_STARTUP_WAIT",
        help="How long to wait for an unreachable Redis at start before exiting 1.",
    ),
]


def parse_startup_wait(value: str) -> float:
    try:
        return parse_duration(value).total_seconds()
    except ValueError as error:
        raise UsageProblem(f"--startup-wait: {error}") from None
