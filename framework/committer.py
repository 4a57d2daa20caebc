"""Committer: the task that turns a worker's finished messages into `commit.lua` calls.

Each call takes every message that finished while the previous call was on its way (up to
MAX_COMMIT), so the number of round trips per message falls as the load rises. Messages reach it
through a list and an event, which cost less than an asyncio.Queue on a path taken once per
message.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Awaitable, Callable

import structlog
from redis.exceptions import ResponseError

from framework.commits import Committed, Finished, commit
from framework.connection import retry_forever
from framework.groups import is_missing_group
from framework.scripts import AsyncRedis
from framework.specs import PipelineSpec, StageSpec

log = structlog.get_logger()

MAX_COMMIT = 500  # messages per commit.lua call
CLOSE_TIMEOUT = 10.0  # how long a stopping worker waits for the commit on its way

Settle = Callable[[list[Finished], list[bool]], None]  # the messages, and which were still ours
RedisDown = Callable[[BaseException, float], None]


class Committer:
    """Commits what runners `add`, in finishing order, and hands each result to `settle`."""

    def __init__(
        self,
        channel: AsyncRedis,
        pipeline: PipelineSpec,
        stage: StageSpec,
        consumer: str,
        settle: Settle,
        redis_down: RedisDown,
    ) -> None:
        self._commit = functools.partial(commit, channel, pipeline, stage, consumer)
        self._settle, self._redis_down = settle, redis_down
        self.log = log.bind(pipeline=pipeline.name, stage=stage.name, consumer=consumer)
        self.finished: list[Finished] = []  # to commit, in finishing order
        self.due = asyncio.Event()  # set while `finished` holds something
        self.committing: list[Finished] = []  # in a commit.lua call right now
        self._closing = False

    def add(self, item: Finished) -> None:
        self.finished.append(item)
        self.due.set()

    async def run(self) -> None:
        """Until `close`: each commit is awaited right here, not in a task of its own, so that
        its command leaves in the same turn of the loop as the committer wakes."""
        while True:
            await self.due.wait()
            if self._closing and not self.finished:
                return
            batch = self.finished[:MAX_COMMIT]
            del self.finished[:MAX_COMMIT]
            if not self.finished and not self._closing:  # closing: go on until all is done
                self.due.clear()
            self.committing = batch
            try:
                committed = await self._commit_until_answered(batch)
            finally:
                self.committing = []
            for message_id in sorted(committed.before):
                self.log.info("commit_confirmed_after_lost_reply", message_id=message_id)
            self._settle(batch, committed.owned)

    async def _commit_until_answered(self, batch: list[Finished]) -> Committed:
        """Retried until it answers: giving up would run the stage again. Every attempt sends
        the first one's time, so that a repeat after a lost reply can tell what that first
        attempt committed (commit.lua) from what another worker took over meanwhile."""
        now_ms, attempts = int(time.time() * 1000), itertools.count()

        def attempt() -> Awaitable[Committed]:
            return self._commit_or_drop(batch, now_ms, next(attempts) > 0)

        return await retry_forever(attempt, self._redis_down)

    async def _commit_or_drop(
        self, batch: list[Finished], now_ms: int, repeated: bool
    ) -> Committed:
        try:
            return await self._commit(batch, now_ms, repeated)
        except ResponseError as error:
            if not is_missing_group(error):
                raise
            # Redis came back empty (no persistence, FLUSHALL, a failover to an empty replica):
            # these messages are in no pending list any more, ours least of all.
            self.log.warning("group_missing_results_dropped", count=len(batch), error=str(error))
            return Committed([False] * len(batch))

    async def close(self, task: asyncio.Task[None]) -> None:
        """Commit what has finished, then stop `task` (the one running `run`). A commit still
        unanswered after CLOSE_TIMEOUT (Redis away) is cut short: its messages stay pending,
        and a later commit, hand-back or reclaim finds out whether it happened."""
        self._closing = True
        self.due.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), CLOSE_TIMEOUT)
        except TimeoutError:
            task.cancel()
