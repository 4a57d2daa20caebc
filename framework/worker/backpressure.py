"""Backpressure: a stage over its `max_backlog` pauses the stages that feed it.

Backlog is what the stage has not finished: undelivered plus pending. Feeding stages stop
reading while it is over the limit, so memory stays bounded without trimming unprocessed work.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import structlog

from framework import scripts
from framework.connection import AsyncClient

log = structlog.get_logger()

PAUSE_WORTH_LOGGING = 1.0  # seconds
PAUSE_LOG_EVERY = 60.0


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

    def __init__(
        self,
        client: AsyncClient,
        downstream: list[Downstream],
        recheck: float = 0.1,
        logger: Any = None,
    ):
        self.client = client
        self.log = logger if logger is not None else log
        self.downstream = downstream
        self.recheck = recheck
        self._checked_at = 0.0
        self._blocked_by: Downstream | None = None
        self._headroom = 0  # how many more we may emit before the last measure could be stale
        self._emitted = 0

    def note_emitted(self, count: int) -> None:
        """Count outputs written since the last measure, so a fast stage re-measures early."""
        self._emitted += count

    def room(self, in_hand: int) -> int | None:
        """How many more messages the worker may read without pushing a stage downstream past
        its limit, counting one output for each it holds (None: no limit downstream). So a
        worker holding many messages at once (read-ahead) overshoots by no more than that."""
        if not self.downstream:
            return None
        return max(self._headroom - self._emitted - in_hand, 0)

    async def blocked_by(self) -> Downstream | None:
        """The first stage at its limit; re-measured every `recheck` s, or sooner when our own
        outputs since the last measure could have filled it."""
        if not self.downstream:
            return None
        now = time.monotonic()
        if now - self._checked_at >= self.recheck or self._emitted >= self._headroom:
            self._checked_at = now
            self._emitted = 0
            self._blocked_by = None
            self._headroom = min(stage.limit for stage in self.downstream)
            for stage in self.downstream:
                level = await backlog(self.client, stage.stream, stage.stage, stage.limit)
                self._headroom = min(self._headroom, stage.limit - level)
                if level >= stage.limit:
                    self._blocked_by = stage
                    break
        return self._blocked_by

    async def wait_open(self, stopping: asyncio.Event) -> bool:
        """Wait until no stage downstream is full; False if stopping meanwhile. A pause is
        logged once it has lasted a second (`backpressure_paused`, then once a minute) and as
        it ends, so a stage that seems idle says why; shorter ones are the gate working as it
        should, many times a second."""
        paused_at = time.monotonic()
        told_at: float | None = None  # when the pause was last logged
        while (full := await self.blocked_by()) is not None:
            if stopping.is_set():
                return False
            now = time.monotonic()
            if now - paused_at >= PAUSE_WORTH_LOGGING and (
                told_at is None or now - told_at >= PAUSE_LOG_EVERY
            ):
                told_at = now
                self.log.info(
                    "backpressure_paused",
                    by=full.stage,
                    max_backlog=full.limit,
                    paused_s=round(now - paused_at, 1),
                )
            await asyncio.sleep(self.recheck)
        if told_at is not None:
            self.log.info("backpressure_resumed", paused_s=round(time.monotonic() - paused_at, 1))
        return True
