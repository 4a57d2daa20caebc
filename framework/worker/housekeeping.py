"""Housekeeping every worker shares: promoting due retries, trimming to retention, a reading of
the output counters now and then, and saying when its output has readers its pipeline.yaml
does not know.

Any live worker may promote any stage's retry (the entry names its stage), so retries move on
even while the failing stage has no worker; promotion is one atomic script, safe to race.

A worker counts a job's messages in flight by the stages its pipeline.yaml says read its
output. A stage added to the file later, whose workers run while this one still has the old
file, reads the output too, but this worker does not count it: jobs would end before that
stage has run. Nothing in Redis tells a stage's group from another application's, so the
worker cannot adopt it on its own; it says so, once per group, and keeps the count it has.
"""

from __future__ import annotations

import asyncio
import time
from typing import cast

import structlog

from framework import scripts
from framework.connection import REDIS_ERRORS, TRANSIENT_ERRORS, AsyncClient
from framework.groups import reader_groups
from framework.retention import trim
from framework.specs import PipelineSpec

log = structlog.get_logger()

PROMOTE_BATCH = 500
TRIM_EVERY = 1.0
SNAPSHOT_EVERY = 10.0  # seconds between readings of the output counters (status's out/s)
READERS_EVERY = 10.0
FAILURE_LOG_EVERY = 60.0
MAX_NAP = 1.0


async def promote_due_retries(client: AsyncClient, spec: PipelineSpec) -> int:
    """Move every due retry back to its stage; returns how many moved."""
    moved = 0
    while True:
        now_ms = int(time.time() * 1000)
        count = int(
            await scripts.script(scripts.PROMOTE)(
                client, [spec.keys.retry, spec.keys.stats], [now_ms, PROMOTE_BATCH]
            )
        )
        moved += count
        if count < PROMOTE_BATCH:
            return moved


async def take_snapshot(client: AsyncClient, spec: PipelineSpec) -> bool:
    """Let the stats hash record its output counters if its last reading is SNAPSHOT_EVERY
    old: what status measures outputs per second against. True when it took one."""
    now_ms = int(time.time() * 1000)
    every_ms = int(SNAPSHOT_EVERY * 1000)
    return bool(
        await scripts.script(scripts.SNAPSHOT)(client, [spec.keys.stats], [now_ms, every_ms])
    )


async def seconds_to_next_retry(client: AsyncClient, spec: PipelineSpec) -> float:
    reply = await client.zrange(spec.keys.retry, 0, 0, withscores=True)
    first = cast(list[tuple[bytes, float]], reply)  # WITHSCORES: (member, score) pairs
    if not first:
        return MAX_NAP
    return max(0.0, min(MAX_NAP, first[0][1] / 1000 - time.time()))


class Housekeeper:
    """Runs until `stopping`: promotes retries when due and trims this worker's streams."""

    def __init__(
        self,
        client: AsyncClient,
        spec: PipelineSpec,
        streams: list[str],
        stage: str | None = None,
    ) -> None:
        self.client = client
        self.spec = spec
        self.streams = streams
        self.stage = stage  # whose output's readers to watch
        self._trimmed_at = 0.0
        self._readers_at = 0.0
        self._unknown_readers: set[str] = set()
        self._failing_since: float | None = None
        self._logged_at = 0.0

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            nap = MAX_NAP
            try:
                await promote_due_retries(self.client, self.spec)
                await self._trim_if_due()
                await self._check_readers_if_due()
                nap = await seconds_to_next_retry(self.client, self.spec)
                self._failing_since = None
            except REDIS_ERRORS as error:  # best effort: it never stops a worker
                self._failed(error)
            try:
                await asyncio.wait_for(stopping.wait(), timeout=max(nap, 0.01))
            except TimeoutError:
                pass

    def _failed(self, error: BaseException) -> None:
        """Once when it starts failing, then every FAILURE_LOG_EVERY: Redis away for a minute
        is one line a minute here (the reader and committer say so too), not sixty."""
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = self._logged_at = now
        elif now - self._logged_at < FAILURE_LOG_EVERY:
            return
        self._logged_at = now
        failing_s = round(now - self._failing_since)
        if isinstance(error, TRANSIENT_ERRORS):
            log.warning(
                "housekeeping_failed", pipeline=self.spec.name, error=str(error), for_s=failing_s
            )
        else:  # a refusal that waiting will not cure (a script of ours, a key of another type)
            log.error(
                "housekeeping_failed",
                pipeline=self.spec.name,
                error=str(error),
                for_s=failing_s,
                exc_info=error,
            )

    async def _trim_if_due(self) -> None:
        now = time.monotonic()
        if now - self._trimmed_at < TRIM_EVERY:
            return
        self._trimmed_at = now
        results = {s.output_stream for s in self.spec.stages if not s.consumers}
        for stream in self.streams:
            stats = self.spec.keys.stats if stream == self.spec.keys.dead else None
            results_for = self.spec.result_ttl if stream in results else None
            removed = await trim(self.client, stream, self.spec.retention, stats, results_for)
            if removed:
                log.debug("stream_trimmed", stream=stream, removed=removed)
        await take_snapshot(self.client, self.spec)

    async def _check_readers_if_due(self) -> None:
        now = time.monotonic()
        if self.stage is None or now - self._readers_at < READERS_EVERY:
            return
        self._readers_at = now
        spec = self.spec.stage(self.stage)
        known = {s.name for s in self.spec.stages if s.input_stage == self.stage}
        for group in sorted(await reader_groups(self.client, spec.output_stream) - known):
            if group not in self._unknown_readers:
                self._unknown_readers.add(group)
                log.warning(
                    "unknown_reader_group",
                    pipeline=self.spec.name,
                    stage=self.stage,
                    stream=spec.output_stream,
                    group=group,
                    hint=(
                        f"group {group!r} reads {spec.output_stream} but this worker's "
                        "pipeline.yaml has no such stage, so jobs are counted done without it: "
                        "restart this worker with the pipeline.yaml that has it (if another "
                        "application reads this stream with that group, this worker cannot tell "
                        "and jobs do not wait for it: ignore this)"
                    ),
                )
