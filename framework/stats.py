"""Read-only statistics of a running pipeline: per stage its backlog, consumers, throughput and
dead letters, for `pipeline status` and dashboards.

Kept apart from the worker because nothing here writes: it is safe to run against production as
often as anyone likes. Every scan is capped, so it stays cheap on streams of millions of entries;
a count that hit its cap is a lower bound and says so (`exact=False`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, cast

import orjson
from redis.exceptions import ResponseError

from framework.config import PipelineSpec, StageSpec
from framework.connection import AsyncClient, Server

LAG_SCAN_CAP = 1000  # entries counted after a group's last-delivered id when XINFO has no lag
RATE_SAMPLE = 200  # newest output entries read to measure throughput
RATE_WINDOW_MS = 60_000
DEAD_SCAN_CAP = 2000  # newest dead letters read to split them by stage
RETRY_SCAN_CAP = 200  # retry members read to split them by stage (members hold payloads)
PAGE = 500


@dataclass(frozen=True, slots=True)
class Tally:
    """Counts by stage from a capped scan: `exact` when the scan saw all `total` items."""

    by_stage: dict[str, int]
    total: int
    scanned: int

    @property
    def exact(self) -> bool:
        return self.scanned >= self.total


@dataclass(frozen=True, slots=True)
class StageStats:
    """One stage, as `pipeline status` shows it."""

    stage: str
    input_stream: str
    length: int  # XLEN of the input stream (history included, up to retention)
    lag: int | None  # entries not yet delivered to the stage's group; None: no group yet
    lag_exact: bool
    pending: int  # delivered, not yet committed
    consumers: int
    active_consumers: int  # heard from within the stage's lease
    throughput: float  # outputs per second over the last minute
    dead_letters: int
    retries: int


@dataclass(frozen=True, slots=True)
class PipelineStats:
    name: str
    server_version: str
    now_ms: int  # server time of the reading
    stages: tuple[StageStats, ...]
    dead: Tally
    retries: Tally

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.name,
            "server_version": self.server_version,
            "now_ms": self.now_ms,
            "stages": [asdict(stage) for stage in self.stages],
            "dead_letters": _tally_dict(self.dead),
            "retries": _tally_dict(self.retries),
        }


def _tally_dict(tally: Tally) -> dict[str, Any]:
    return {"total": tally.total, "exact": tally.exact, "by_stage": tally.by_stage}


async def read_stats(client: AsyncClient, server: Server, spec: PipelineSpec) -> PipelineStats:
    """One consistent-enough reading of every stage (a few round trips per stage, no writes)."""
    now_ms = await server_time_ms(client)
    dead = await count_dead_letters(client, spec.keys.dead)
    retries = await count_retries(client, spec.keys.retry)
    stages = [
        await read_stage(client, server, stage, now_ms, dead, retries) for stage in spec.stages
    ]
    version = ".".join(map(str, server.version))
    return PipelineStats(spec.name, version, now_ms, tuple(stages), dead, retries)


async def server_time_ms(client: AsyncClient) -> int:
    """The server's clock, which stamps stream ids: a skewed client clock would skew rates."""
    reply: Any = await client.time()
    if isinstance(reply, dict):  # a cluster client asks every node; any will do
        reply = next(iter(reply.values()))
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


async def read_stage(
    client: AsyncClient, server: Server, stage: StageSpec, now_ms: int, dead: Tally, retries: Tally
) -> StageStats:
    group = await _group_info(client, stage)
    lag, lag_exact = (None, True) if group is None else await _lag(client, server, stage, group)
    consumers = await _consumers(client, stage) if group is not None else []
    lease_ms = stage.lease.total_seconds() * 1000
    return StageStats(
        stage=stage.name,
        input_stream=stage.input_stream,
        length=await client.xlen(stage.input_stream),
        lag=lag,
        lag_exact=lag_exact,
        pending=int(group["pending"]) if group is not None else 0,
        consumers=len(consumers),
        active_consumers=sum(1 for c in consumers if int(c.get("idle", 0)) < lease_ms),
        throughput=await throughput(client, stage.output_stream, now_ms),
        dead_letters=dead.by_stage.get(stage.name, 0),
        retries=retries.by_stage.get(stage.name, 0),
    )


async def _group_info(client: AsyncClient, stage: StageSpec) -> dict[str, Any] | None:
    try:
        groups = await client.xinfo_groups(stage.input_stream)
    except ResponseError:  # no such stream yet: nothing was ever submitted or connected
        return None
    for group in groups:
        if _text(group["name"]) == stage.name:
            return dict(group)
    return None


async def _consumers(client: AsyncClient, stage: StageSpec) -> list[dict[str, Any]]:
    try:
        return list(await client.xinfo_consumers(stage.input_stream, stage.name))
    except ResponseError:
        return []


async def _lag(
    client: AsyncClient, server: Server, stage: StageSpec, group: dict[str, Any]
) -> tuple[int, bool]:
    """XINFO's lag on 7.0+; before that (or when 7.x cannot tell) count up to a cap."""
    last = _text(group["last-delivered-id"])
    if server.has_lag and group.get("lag") is not None:
        lag = int(group["lag"])
        if lag and not entries(await client.xrange(stage.input_stream, next_id(last), count=1)):
            # Nothing follows the last delivered entry: the server's counters disagree (7.0's
            # entries-read can go stale, e.g. across an AOF reload), the stream does not.
            return 0, True
        return lag, True
    if last == "0-0":
        return int(await client.xlen(stage.input_stream)), True
    after = entries(
        await client.xrange(stage.input_stream, next_id(last), "+", count=LAG_SCAN_CAP + 1)
    )
    return min(len(after), LAG_SCAN_CAP), len(after) <= LAG_SCAN_CAP


async def throughput(client: AsyncClient, stream: str, now_ms: int) -> float:
    """Entries per second added to `stream` over the last minute, from its newest entries.

    Reads at most RATE_SAMPLE entries: when the minute holds more, the rate is measured over
    the time those newest entries span instead.
    """
    since = max(now_ms - RATE_WINDOW_MS, 0)
    newest = entries(await client.xrevrange(stream, max="+", min=f"{since}-0", count=RATE_SAMPLE))
    if len(newest) < RATE_SAMPLE:
        return len(newest) * 1000 / RATE_WINDOW_MS
    oldest_ms = int(newest[-1][0].split("-")[0])
    return len(newest) * 1000 / max(now_ms - oldest_ms, 1)


async def count_dead_letters(client: AsyncClient, dead: str) -> Tally:
    """Dead letters by stage, newest first, reading at most DEAD_SCAN_CAP of them."""
    total = int(await client.xlen(dead))
    counts: Counter[str] = Counter()
    scanned, upper = 0, "+"
    while scanned < min(total, DEAD_SCAN_CAP):
        page = entries(await client.xrevrange(dead, max=upper, min="-", count=PAGE))
        if not page:
            break
        for _id, fields in page[: DEAD_SCAN_CAP - scanned]:
            counts[_text(fields.get(b"stage", b"?"))] += 1
        scanned += min(len(page), DEAD_SCAN_CAP - scanned)
        upper = previous_id(page[-1][0])
    return Tally(dict(counts), total, scanned)


async def count_retries(client: AsyncClient, retry: str) -> Tally:
    """Messages waiting for a delayed retry, by the stage that will run them again."""
    total = int(await client.zcard(retry))
    members: list[Any] = list(await client.zrange(retry, 0, RETRY_SCAN_CAP - 1)) if total else []
    counts: Counter[str] = Counter()
    for member in members:
        try:
            counts[str(orjson.loads(member).get("stage", "?"))] += 1
        except (orjson.JSONDecodeError, AttributeError):
            counts["?"] += 1
    return Tally(dict(counts), total, len(members))


Entry = tuple[str, dict[bytes, bytes]]


def entries(reply: Any) -> list[Entry]:
    """An XRANGE/XREVRANGE reply as (id, fields) pairs; a deleted entry's fields are empty."""
    return [(_text(entry), cast(dict[bytes, bytes], fields or {})) for entry, fields in reply or ()]


def next_id(entry_id: str) -> str:
    """The smallest stream id after `entry_id` (exclusive ranges need 6.2; we serve 6.0 too)."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


def previous_id(entry_id: str) -> str:
    """The largest stream id before `entry_id`, for paging newest-first without `(`."""
    ms, _, seq = entry_id.partition("-")
    if int(seq or 0) > 0:
        return f"{ms}-{int(seq) - 1}"
    return f"{int(ms) - 1}-18446744073709551615" if int(ms) > 0 else "0-0"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
