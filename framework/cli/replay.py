"""`pipeline replay STAGE --from ID|TIME [--to ID|TIME] [--yes]`: run a stage again over history.

The work is in framework/replay.py; here are the bounds as people write them, the guard against
replaying a large range by accident, and the one line that says what was done.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from framework.cli.common import (
    FileOption,
    UsageProblem,
    check_stage,
    connected,
    load_pipeline,
    run,
)
from framework.pipeline import Pipeline
from framework.replay import (
    Point,
    Replayed,
    Span,
    count_entries,
    parse_point,
    replay,
    resolve_span,
)

CONFIRM_ABOVE = 1000  # entries a replay queues without --yes

POINT_HELP = (
    "An entry id (1700000000000-0; 0 for the beginning), an ISO-8601 time (UTC unless it "
    "says), or a duration ago (10m, 2h, 1d)."
)


def _point(option: str, text: str) -> Point:
    try:
        return parse_point(text)
    except ValueError as error:
        raise UsageProblem(f"{option}: {error}") from None


async def _replay(
    pipeline: Pipeline, stage: str, start: Point, end: Point | None, yes: bool
) -> tuple[Span | None, Replayed]:
    spec = pipeline.spec.stage(stage)
    async with connected(pipeline) as client:
        span = await resolve_span(client, spec, start, end)
        if span is None:
            return None, Replayed(0, 0)
        if not yes and await count_entries(client, spec, span, CONFIRM_ABOVE) > CONFIRM_ABOVE:
            raise UsageProblem(
                f"replay of {stage} would queue more than {CONFIRM_ABOVE} entries; "
                "add --yes to go ahead"
            )
        return span, await replay(client, pipeline.spec, spec, span)


def replay_command(
    ctx: typer.Context,
    stage: Annotated[str, typer.Argument(help="The stage to run again.")],
    start: Annotated[str, typer.Option("--from", help=POINT_HELP, show_default=False)],
    end: Annotated[
        str | None, typer.Option("--to", help="As --from; default: the newest entry now.")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help=f"Go ahead above {CONFIRM_ABOVE} entries.")
    ] = False,
    file: FileOption = None,
) -> None:
    """Queue the entries of STAGE's input in a range again, for STAGE only; reopens their jobs."""
    pipeline = load_pipeline(ctx)
    check_stage(pipeline, stage)
    first = _point("--from", start)
    last = _point("--to", end) if end is not None else None
    span, done = run(_replay(pipeline, stage, first, last, yes))
    if done.skipped:
        reruns = "retries, re-drives, replays"
        print(
            f"skipped {done.skipped} entries that re-ran earlier ones ({reruns})", file=sys.stderr
        )
    shown = f"{span.start} .. {span.end}" if span is not None else f"{start} .. {end or 'now'}"
    typer.echo(f"replayed {done.replayed} entries of {stage} ({shown})")
