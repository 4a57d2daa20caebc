"""Backpressure: a stage over its `max_backlog` pauses the stages that feed it.

Backlog is what the stage has not finished: undelivered plus pending. Feeding stages stop
reading while it is over the limit, so memory stays bounded without trimming unprocessed work.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from framework import scripts
from framework.connection import AsyncClient


@dataclass(frozen=True, slots=True)
class Downstream:
    """A stage this worker feeds, with the limit it declared."""

    stage: str
    stream: str
    limit: int


async def backlog(client: AsyncClient, stream: str, group: str, cap: int) -> int:
    """Undelivered plus pending entries of `group` (counted up to about `cap`)."""
    return int(await scripts.script(scripts.BACKLOG)(client, [stream], [group, cap]))


class Gate:
    """Holds a reader back while any stage downstream is over its max_backlog."""

    def __init__(self, client: AsyncClient, downstream: list[Downstream], recheck: float = 0.1):
        self.client = client
        self.downstream = downstream
        self.recheck = recheck
        self._checked_at = 0.0
        self._blocked_by: Downstream | None = None

    async def blocked_by(self) -> Downstream | None:
        """The first stage over its limit, re-measured at most every `recheck` seconds."""
        if not self.downstream:
            return None
        now = time.monotonic()
        if now - self._checked_at >= self.recheck:
            self._checked_at = now
            self._blocked_by = None
            for stage in self.downstream:
                if await backlog(self.client, stage.stream, stage.stage, stage.limit) >= stage.limit:
                    self._blocked_by = stage
                    break
        return self._blocked_by

    async def wait_open(self, stopping: asyncio.Event) -> bool:
        """Wait until no stage downstream is full; False if stopping meanwhile."""
        while await self.blocked_by() is not None:
            if stopping.is_set():
                return False
            await asyncio.sleep(self.recheck)
        return True
