"""Dead letters: read them, send them back to the stage that failed them, or delete them; for
`pipeline dead` (cli/dead.py) and the HTTP API alike.

Re-driving goes through `redrive.lua`, one atomic step per letter: back onto the stage's input
stream (for that stage only, as a fresh first attempt), job reopened, dead entry deleted; a
letter re-driven twice at once goes back once. The stream is the one pipeline.yaml gives the
stage now (the letter's `stream` field, unless the YAML changed since): the stage's group reads
only that one. Letters of stages no longer in the YAML are left in place, and counted as
skipped. Retry and purge only touch letters that existed when they started, so a letter that
fails again while a retry of all runs is not retried twice.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from framework import scripts
from framework.connection import AsyncClient
from framework.errors import DeadLetterNotFound, UsageProblem
from framework.specs import PipelineSpec
from framework.wire import ENTRY_ID, entries, next_id, previous_id

PAGE = 200


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


@dataclass(frozen=True, slots=True)
class Selection:
    """Which letters: the named `ids`, or every one (of `stage`, when given)."""

    ids: tuple[str, ...] = ()
    stage: str | None = None
    everything: bool = False

    def check(self) -> None:
        """One of the two ways, and ids that are stream entry ids."""
        if self.ids and (self.stage or self.everything):
            raise UsageProblem("name dead-letter IDs, or select with --stage/--all, not both")
        if not (self.ids or self.stage or self.everything):
            raise UsageProblem("name dead-letter IDs, or use --stage STAGE or --all")
        for entry_id in self.ids:
            if not ENTRY_ID.match(entry_id):
                raise UsageProblem(f"{entry_id!r} is not a stream entry id like 1718000000000-0")


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


# -- re-driving and deleting -----------------------------------------------------------------


async def retry(client: AsyncClient, spec: PipelineSpec, selection: Selection) -> tuple[int, int]:
    """Send the selected letters back; returns (re-driven, skipped: of stages not in the YAML)."""
    selection.check()
    retried = skipped = 0
    async for page in selected_pages(client, spec, list(selection.ids), selection.stage):
        known = [letter for letter in page if _has_stage(spec, letter.stage)]
        skipped += len(page) - len(known)
        retried += await redrive(client, spec, known)
    return retried, skipped


async def purge_selected(client: AsyncClient, spec: PipelineSpec, selection: Selection) -> int:
    """Delete the selected letters for good; returns how many went."""
    selection.check()
    purged = 0
    async for page in selected_pages(client, spec, list(selection.ids), selection.stage):
        if page:
            purged += await purge(client, spec, page)
    return purged


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
