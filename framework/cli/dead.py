"""`pipeline dead list|retry|purge`: inspect the dead-letter stream, send letters back, drop them.

Re-driving goes through `redrive.lua`, one atomic step per letter: back onto the stage's input
stream (for that stage only, as a fresh first attempt), job reopened, dead entry deleted; a
letter re-driven twice at once goes back once. The stream is the one pipeline.yaml gives the
stage now (the letter's `stream` field, unless the YAML changed since): the stage's group reads
only that one. Letters of stages no longer in the YAML are left in place, and said so. Retry
and purge only touch letters that existed when they started, so a letter that fails again
while `retry --all` runs is not retried twice.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
import typer

from framework import scripts
from framework.cli.common import (
    FileOption,
    UsageProblem,
    check_stage,
    connected,
    load_pipeline,
    run,
)
from framework.cli.display import duration_ms, first_line, json_line
from framework.connection import AsyncClient
from framework.errors import DeadLetterNotFound
from framework.specs import PipelineSpec
from framework.wire import ENTRY_ID, entries, next_id, previous_id

PAGE = 200

app = typer.Typer(help="Inspect and re-drive the dead-letter stream.", no_args_is_help=True)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of `{name}:dead` (fields as commit.lua writes them)."""

    id: str
    fields: dict[str, str]

    @classmethod
    def from_entry(cls, entry_id: str, fields: dict[bytes, bytes]) -> DeadLetter:
        text = {key.decode(): value.decode(errors="replace") for key, value in fields.items()}
        return cls(entry_id, text)

    @property
    def stage(self) -> str:
        return self.fields.get("stage", "")

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"dead_id": self.id, **self.fields}
        try:
            record["data"] = orjson.loads(self.fields.get("data", ""))
        except orjson.JSONDecodeError:
            pass  # shown as the text it is
        return record


# -- reading ---------------------------------------------------------------------------------


async def newest_first(
    client: AsyncClient, spec: PipelineSpec, stage: str | None
) -> AsyncIterator[DeadLetter]:
    upper = "+"
    while page := entries(await client.xrevrange(spec.keys.dead, max=upper, min="-", count=PAGE)):
        for entry_id, fields in page:
            letter = DeadLetter.from_entry(entry_id, fields)
            if stage is None or letter.stage == stage:
                yield letter
        upper = previous_id(page[-1][0])


async def selected_pages(
    client: AsyncClient, spec: PipelineSpec, ids: list[str], stage: str | None
) -> AsyncIterator[list[DeadLetter]]:
    """The named letters (all must exist), or every letter (of `stage`) there is now."""
    dead = spec.keys.dead
    if ids:
        letters = []
        for entry_id in ids:
            found = entries(await client.xrange(dead, entry_id, entry_id))
            if not found:
                async for letter in newest_first(client, spec, None):
                    if letter.fields.get("id") == entry_id:
                        raise DeadLetterNotFound(entry_id, letter.id)
                raise DeadLetterNotFound(entry_id)
            letters.append(DeadLetter.from_entry(*found[0]))
        yield letters
        return
    newest = entries(await client.xrevrange(dead, count=1))
    end, lower = (newest[0][0] if newest else "0-0"), "-"
    while newest and (page := entries(await client.xrange(dead, lower, end, count=PAGE))):
        yield [
            letter
            for letter in (DeadLetter.from_entry(i, f) for i, f in page)
            if stage is None or letter.stage == stage
        ]
        lower = next_id(page[-1][0])


def check_selection(ids: list[str], stage: str | None, everything: bool) -> None:
    if ids and (stage or everything):
        raise UsageProblem("name dead-letter IDs, or select with --stage/--all, not both")
    if not (ids or stage or everything):
        raise UsageProblem("name dead-letter IDs, or use --stage STAGE or --all")
    for entry_id in ids:
        if not ENTRY_ID.match(entry_id):
            raise UsageProblem(f"{entry_id!r} is not a stream entry id like 1718000000000-0")


# -- commands --------------------------------------------------------------------------------

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


@app.command("retry")
def retry_letters(
    ctx: typer.Context,
    ids: IdsArgument = None,
    stage: StageOption = None,
    everything: AllOption = False,
    file: FileOption = None,
) -> None:
    """Send dead letters back to the stage that failed them, as a fresh first attempt."""
    pipeline = load_pipeline(ctx)
    check_selection(ids or [], stage, everything)
    if stage is not None:
        check_stage(pipeline, stage)

    async def body() -> tuple[int, int]:
        retried = skipped = 0
        async with connected(pipeline) as client:
            async for page in selected_pages(client, pipeline.spec, ids or [], stage):
                known = [letter for letter in page if _has_stage(pipeline.spec, letter.stage)]
                skipped += len(page) - len(known)
                retried += await redrive(client, pipeline.spec, known)
        return retried, skipped

    retried, skipped = run(body())
    if skipped:
        print(f"left {skipped} dead letters of stages not in pipeline.yaml", file=sys.stderr)
    typer.echo(f"retried {retried} dead letters")


def _has_stage(spec: PipelineSpec, stage: str) -> bool:
    return any(s.name == stage for s in spec.stages)


async def redrive(client: AsyncClient, spec: PipelineSpec, letters: list[DeadLetter]) -> int:
    """Re-drive letters in one pipelined round trip; returns how many went back."""
    if not letters:
        return 0
    now_ms = int(time.time() * 1000)
    ttl = spec.result_ttl_seconds
    calls: list[tuple[list[str], list[Any]]] = []
    for letter in letters:
        stage, fields = spec.stage(letter.stage), letter.fields
        job = fields.get("job", letter.id)
        keys = [spec.keys.dead, stage.input_stream, spec.keys.job(job), spec.keys.stats]
        data, trace = fields.get("data", ""), fields.get("trace", "")
        calls.append((keys, [letter.id, stage.name, job, data, trace, now_ms, ttl]))
    replies = await scripts.script(scripts.REDRIVE).many(client, calls)
    return sum(int(reply) for reply in replies)


async def purge(client: AsyncClient, spec: PipelineSpec, letters: list[DeadLetter]) -> int:
    """Delete letters, and their count from their stage's tally; returns how many went."""
    args = [value for letter in letters for value in (letter.id, letter.stage)]
    keys = [spec.keys.dead, spec.keys.stats]
    return int(await scripts.script(scripts.PURGE)(client, keys, args))


@app.command("purge")
def purge_letters(
    ctx: typer.Context,
    ids: IdsArgument = None,
    stage: StageOption = None,
    everything: AllOption = False,
    file: FileOption = None,
) -> None:
    """Delete dead letters for good: the named IDs, those of --stage, or with --all every one."""
    pipeline = load_pipeline(ctx)
    check_selection(ids or [], stage, everything)  # any --stage: also one no longer in the YAML

    async def body() -> int:
        purged = 0
        async with connected(pipeline) as client:
            async for page in selected_pages(client, pipeline.spec, ids or [], stage):
                if page:
                    purged += await purge(client, pipeline.spec, page)
        return purged

    typer.echo(f"purged {run(body())} dead letters")
