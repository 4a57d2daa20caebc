"""Replay: run one stage again over a range of its input stream's history.

Each entry in the range goes back onto the same stream addressed to that stage alone (`for`,
as retries are), so the other groups reading the stream skip it, through `replay.lua`, which
also reopens the entry's job in the same atomic step. Entries that already carry a `for` field
(retries, re-drives, earlier replays) are not queued again: each is a re-run of an earlier
entry in the history, and queuing both would run that message twice. Entries trimmed away by
retention are simply not there; the caller reports how many were found.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from framework import scripts
from framework.connection import AsyncClient
from framework.durations import parse_duration
from framework.specs import PipelineSpec, StageSpec
from framework.stats import server_time_ms
from framework.wire import ENTRY_ID, MAX_SEQUENCE, Entry, decode_entry, entries, next_id

PAGE = 200
MS_DIGITS = 10  # a bare number this long is milliseconds since 1970 (2001-09-09 and later)
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")

Point = str | timedelta
"""A bound as given: an XRANGE bound (an entry id, or a time as ms), or a duration ago."""


@dataclass(frozen=True, slots=True)
class Span:
    """XRANGE bounds, both inclusive; a bare `ms` is `ms-0` as a start, `ms-<max>` as an end."""

    start: str
    end: str


@dataclass(frozen=True, slots=True)
class Replayed:
    replayed: int
    skipped: int  # entries that were themselves re-runs (retries, re-drives, replays)


def parse_point(text: str) -> Point:
    """An entry id (`1700000000000-0`, or its milliseconds alone, as XRANGE takes it; `0` or
    `-` for the beginning), an ISO-8601 time (UTC when no offset is given), or a duration ago
    (`10m`, `1h ago`, a number of seconds).

    Raises:
        ValueError: with a one-line message saying what is accepted.
    """
    text = text.strip()
    if ENTRY_ID.match(text):
        return text
    if text in ("0", "-"):  # what Redis users write for the start of a stream
        return "0-0"
    if text.isdigit() and len(text) >= MS_DIGITS:  # no one means 50 years ago: an entry's ms
        return text
    text = text.removesuffix(" ago").strip()
    if ISO_DATE.match(text):
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            example = "2026-11-27T10:00:00Z"
            raise ValueError(f"{text!r} is not an ISO-8601 time like {example}") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return str(max(int(when.timestamp() * 1000), 0))
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an entry id (1700000000000-0, 0 for the beginning), an ISO-8601 "
            "time (2026-11-27T10:00:00Z) or a duration ago (10m, 1h)"
        ) from None


def bound(point: Point, now_ms: int) -> str:
    """The point as an XRANGE bound, a duration counted back from `now_ms` (the server clock)."""
    if isinstance(point, str):
        return point
    return str(max(now_ms - int(point.total_seconds() * 1000), 0))


def _order(bound: str, as_end: bool) -> tuple[int, int]:
    ms, _, seq = bound.partition("-")
    return int(ms), int(seq) if seq else (MAX_SEQUENCE if as_end else 0)


async def resolve_span(
    client: AsyncClient, stage: StageSpec, start: Point, end: Point | None
) -> Span | None:
    """The bounds to read; without `end`, up to the newest entry now (what replay adds later is
    not replayed again). None when there is nothing to read: an empty stream, or start > end.
    """
    now_ms = await server_time_ms(client)
    first = bound(start, now_ms)
    if end is None:
        newest = entries(await client.xrevrange(stage.input_stream, count=1))
        if not newest:
            return None
        last = newest[0][0]
    else:
        last = bound(end, now_ms)
    if _order(first, as_end=False) > _order(last, as_end=True):
        return None
    return Span(first, last)


async def pages(client: AsyncClient, stream: str, span: Span) -> AsyncIterator[list[Entry]]:
    lower = span.start
    while page := entries(await client.xrange(stream, lower, span.end, count=PAGE)):
        yield page
        lower = next_id(page[-1][0])


def _original(fields: dict[bytes, bytes]) -> bool:
    return b"for" not in fields or b"data" not in fields  # a bare entry's fields are its payload


async def count_entries(client: AsyncClient, stage: StageSpec, span: Span, cap: int) -> int:
    """How many entries a replay of `span` would queue, counting no further than `cap` + 1."""
    found = 0
    async for page in pages(client, stage.input_stream, span):
        found += sum(1 for _, fields in page if _original(fields))
        if found > cap:
            break
    return found


async def replay(client: AsyncClient, spec: PipelineSpec, stage: StageSpec, span: Span) -> Replayed:
    """Queue every original entry of `span` again for `stage`, one pipelined call per page."""
    replay_script = scripts.script(scripts.REPLAY)
    ttl = spec.result_ttl_seconds
    replayed = skipped = 0
    async for page in pages(client, stage.input_stream, span):
        now_ms = int(time.time() * 1000)
        calls: list[tuple[list[str], list[Any]]] = []
        for entry_id, fields in page:
            if not _original(fields):
                skipped += 1
                continue
            entry = decode_entry(entry_id, fields)  # the bare-entry rule lives there
            if entry.problem is not None:  # unreadable (not UTF-8): dead-lettered, not rerun
                skipped += 1
                continue
            keys = [stage.input_stream, spec.keys.job(entry.job)]
            args = [entry.job, entry.data, stage.name, entry.trace, now_ms, ttl, entry.timings]
            calls.append((keys, args))
        if calls:
            await replay_script.many(client, calls)
        replayed += len(calls)
    return Replayed(replayed, skipped)
