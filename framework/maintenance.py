"""Housekeeping every worker shares: promoting due retries, and trimming to retention.

Any live worker may promote any stage's retry (the entry names its stage), so retries move on
even while the failing stage has no worker; promotion is one atomic script, safe to race.
"""

from __future__ import annotations

import asyncio
import time
from typing import cast

import structlog

from framework import scripts
from framework.config import PipelineSpec
from framework.connection import TRANSIENT_ERRORS, AsyncClient
from framework.retention import trim

log = structlog.get_logger()

PROMOTE_BATCH = 500
TRIM_EVERY = 1.0
MAX_NAP = 1.0


async def promote_due_retries(client: AsyncClient, spec: PipelineSpec) -> int:
    """Move every due retry back to its stage; returns how many moved."""
    moved = 0
    while True:
        now_ms = int(time.time() * 1000)
        count = int(
            await scripts.script(scripts.PROMOTE)(
                client, [spec.keys.retry], [now_ms, PROMOTE_BATCH]
            )
        )
        moved += count
        if count < PROMOTE_BATCH:
            return moved


async def seconds_to_next_retry(client: AsyncClient, spec: PipelineSpec) -> float:
    reply = await client.zrange(spec.keys.retry, 0, 0, withscores=True)
    first = cast(list[tuple[bytes, float]], reply)  # WITHSCORES: (member, score) pairs
    if not first:
        return MAX_NAP
    return max(0.0, min(MAX_NAP, first[0][1] / 1000 - time.time()))


class Housekeeper:
    """Runs until `stopping`: promotes retries when due and trims this worker's streams."""

    def __init__(self, client: AsyncClient, spec: PipelineSpec, streams: list[str]) -> None:
        self.client = client
        self.spec = spec
        self.streams = streams
        self._trimmed_at = 0.0

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            nap = MAX_NAP
            try:
                await promote_due_retries(self.client, self.spec)
                await self._trim_if_due()
                nap = await seconds_to_next_retry(self.client, self.spec)
            except TRANSIENT_ERRORS as error:
                log.warning("housekeeping_failed", pipeline=self.spec.name, error=str(error))
            try:
                await asyncio.wait_for(stopping.wait(), timeout=max(nap, 0.01))
            except TimeoutError:
                pass

    async def _trim_if_due(self) -> None:
        now = time.monotonic()
        if now - self._trimmed_at < TRIM_EVERY:
            return
        self._trimmed_at = now
        for stream in self.streams:
            removed = await trim(self.client, stream, self.spec.retention)
            if removed:
                log.debug("stream_trimmed", stream=stream, removed=removed)
