"""Read-only statistics of a running pipeline: per stage its backlog, consumers, throughput and
dead letters, for `pipeline status` and dashboards.

Kept apart from the worker because nothing here writes: it is safe to run against production as
often as anyone likes (the dashboard polls it every 2 s). No stream entry is read here: they
hold payloads, which can be megabytes each. Outputs, dead letters and waiting retries are
counted by stage in the `{name}:stats` hash as they happen (commit.lua and the scripts that
re-drive, purge, promote and trim), and outputs per second come from two readings of those
counters that workers take every ten seconds. Lag is Redis 7's own count; before 7.0 it is
counted inside Redis (lag.lua), capped. A count that hit its cap, or a tally that does not add
up to its total (letters written before the tally existed), is a lower bound and says so
(`exact=False`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, cast

from redis.exceptions import ResponseError

from framework import scripts
from framework.connection import AsyncClient, Server
from framework.specs import PipelineSpec, StageSpec
from framework.wire import text

LAG_SCAN_CAP = 1000  # entries counted after a group's last-delivered id when XINFO has no lag
# How `pipeline status` and the dashboard head the table of stages, one column each in order.
STAGE_COLUMNS = ("stage", "input", "length", "lag", "pending", "workers", "out/s", "dead", "retry")


@dataclass(frozen=True, slots=True)
class Tally:
    """Counts by stage, and the total: `exact` when they add up to it."""

    by_stage: dict[str, int]
    total: int

    @property
    def exact(self) -> bool:
        return sum(self.by_stage.values()) == self.total


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
    counters = await read_counters(client, spec.keys.stats)
    dead = tally(counters, "dead", int(await client.xlen(spec.keys.dead)))
    retries = tally(counters, "retry", int(await client.zcard(spec.keys.retry)))
    stages = [
        await read_stage(client, stage, now_ms, dead, retries, counters) for stage in spec.stages
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
    client: AsyncClient,
    stage: StageSpec,
    now_ms: int,
    dead: Tally,
    retries: Tally,
    counters: dict[str, int],
) -> StageStats:
    group = await _group_info(client, stage)
    lag, lag_exact = (None, True) if group is None else await _lag(client, stage)
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
        throughput=throughput(counters, stage.name, now_ms),
        dead_letters=dead.by_stage.get(stage.name, 0),
        retries=retries.by_stage.get(stage.name, 0),
    )


async def _group_info(client: AsyncClient, stage: StageSpec) -> dict[str, Any] | None:
    try:
        groups = await client.xinfo_groups(stage.input_stream)
    except ResponseError:  # no such stream yet: nothing was ever submitted or connected
        return None
    for group in groups:
        if text(group["name"]) == stage.name:
            return dict(group)
    return None


async def _consumers(client: AsyncClient, stage: StageSpec) -> list[dict[str, Any]]:
    try:
        return list(await client.xinfo_consumers(stage.input_stream, stage.name))
    except ResponseError:
        return []


async def _lag(client: AsyncClient, stage: StageSpec) -> tuple[int, bool]:
    """Entries not yet handed to the stage's group, counted by lag.lua (capped before 7.0)."""
    lag, exact = await scripts.script(scripts.LAG)(
        client, [stage.input_stream], [stage.name, LAG_SCAN_CAP]
    )
    return max(int(lag), 0), bool(int(exact))


async def read_counters(client: AsyncClient, stats: str) -> dict[str, int]:
    """The stats hash: `out.STAGE`, `dead.STAGE`, `retry.STAGE` and the two readings."""
    raw = cast(dict[bytes, bytes], await client.hgetall(stats))
    counters = {}
    for name, value in raw.items():
        try:
            counters[text(name)] = int(value)
        except ValueError:
            continue  # not ours: nothing else writes here, but a stray field must not break status
    return counters


def tally(counters: dict[str, int], kind: str, total: int) -> Tally:
    """`kind.STAGE` counters as a Tally of `total` items."""
    prefix = kind + "."
    by_stage = {
        name[len(prefix) :]: count
        for name, count in counters.items()
        if name.startswith(prefix) and count > 0
    }
    return Tally(by_stage, total)


def throughput(counters: dict[str, int], stage: str, now_ms: int) -> float:
    """Outputs per second of `stage` since the older of the two readings workers keep (10 to
    20 s ago while any worker runs; further back, so the rate falls, when none does)."""
    current = counters.get(f"out.{stage}", 0)
    for reading in ("prev", "snap"):
        at = counters.get(f"{reading}.at")
        if at is not None and now_ms > at:
            before = counters.get(f"{reading}.out.{stage}", 0)
            return max(current - before, 0) * 1000 / (now_ms - at)
    return 0.0
