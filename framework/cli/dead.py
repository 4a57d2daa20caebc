"""`pipeline dead list|retry|purge`: inspect the dead-letter stream, send letters back, drop them.

The work is in framework/dead_letters.py (the HTTP API uses it too); here are the options,
the checks of a stage named on the command line, and the lines printed.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from framework.cli.common import (
    FileOption,
    check_stage,
    connected,
    load_pipeline,
    run,
)
from framework.cli.display import duration_ms, first_line, json_line
from framework.dead_letters import DeadLetter, Selection, newest_first, purge_selected, retry
from framework.pipeline import Pipeline

app = typer.Typer(help="Inspect and re-drive the dead-letter stream.", no_args_is_help=True)

StageOption = Annotated[
    str | None, typer.Option("--stage", "-s", help="Only this stage's letters.")
]
IdsArgument = Annotated[list[str] | None, typer.Argument(metavar="[ID]...", help="Letter ids.")]
AllOption = Annotated[bool, typer.Option("--all", help="Every dead letter (of --stage).")]


@app.command("list")
def list_letters(
    ctx: typer.Context,
    stage: StageOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One full JSON object per line.")] = False,
    file: FileOption = None,
) -> None:
    """Show dead letters, newest first."""
    pipeline = load_pipeline(ctx)

    async def body() -> None:
        async with connected(pipeline) as client:
            shown = 0
            async for letter in newest_first(client, pipeline.spec, stage):
                typer.echo(json_line(letter.to_dict()) if as_json else summary(letter))
                shown += 1
                if shown >= limit:
                    break
        if not shown and stage is not None:
            check_stage(pipeline, stage)  # none of a stage the file does not have: a typo?
        if not shown and not as_json:
            print("no dead letters", file=sys.stderr)

    run(body())


def summary(letter: DeadLetter) -> str:
    fields = letter.fields
    age = duration_ms(max(time.time() * 1000 - int(fields.get("failed_at", "0") or 0), 0))
    return (
        f"{letter.id}  {letter.stage}  job {fields.get('job', '?')}  "
        f"attempts {fields.get('attempts', '?')}  {age} ago  {first_line(fields.get('error'))}"
    )


def _selected(
    ctx: typer.Context, ids: list[str] | None, stage: str | None, everything: bool
) -> tuple[Pipeline, Selection]:
    """The pipeline, and the letters named on the command line (ids, `--stage`, `--all`)."""
    pipeline = load_pipeline(ctx)
    selection = Selection(tuple(ids or ()), stage, everything)
    selection.check()
    return pipeline, selection


@app.command("retry")
def retry_letters(
    ctx: typer.Context,
    ids: IdsArgument = None,
    stage: StageOption = None,
    everything: AllOption = False,
    file: FileOption = None,
) -> None:
    """Send dead letters back to the stage that failed them, as a fresh first attempt."""
    pipeline, selection = _selected(ctx, ids, stage, everything)
    if stage is not None:
        check_stage(pipeline, stage)  # a letter goes back to a stage the file still has

    async def body() -> tuple[int, int]:
        async with connected(pipeline) as client:
            return await retry(client, pipeline.spec, selection)

    retried, skipped = run(body())
    if skipped:
        print(f"left {skipped} dead letters of stages not in pipeline.yaml", file=sys.stderr)
    typer.echo(f"retried {retried} dead letters")


@app.command("purge")
def purge_letters(
    ctx: typer.Context,
    ids: IdsArgument = None,
    stage: StageOption = None,
    everything: AllOption = False,
    file: FileOption = None,
) -> None:
    """Delete dead letters for good: the named IDs, those of --stage, or with --all every one."""
    pipeline, selection = _selected(ctx, ids, stage, everything)  # any --stage: also a gone one

    async def body() -> int:
        async with connected(pipeline) as client:
            return await purge_selected(client, pipeline.spec, selection)

    typer.echo(f"purged {run(body())} dead letters")
