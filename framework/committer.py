"""Committer: the task that turns a worker's finished messages into `commit.lua` calls.

Each call takes every message that finished while the previous call was on its way (up to
MAX_COMMIT), so the number of round trips per message falls as the load rises. Messages reach it
through a list and an event, which cost less than an asyncio.Queue on a path taken once per
message.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from framework.commits import Finished, commit
from framework.config import PipelineSpec, StageSpec
from framework.connection import retry_forever
from framework.scripts import AsyncRedis

MAX_COMMIT = 500  # messages per commit.lua call

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
        self.finished: list[Finished] = []  # to commit, in finishing order
        self.due = asyncio.Event()  # set while `finished` holds something
        self.committing: list[Finished] = []  # in a commit.lua call right now

    def add(self, item: Finished) -> None:
        self.finished.append(item)
        self.due.set()

    async def run(self) -> None:
        while True:
            await self.due.wait()
            batch = self.finished[:MAX_COMMIT]
            del self.finished[:MAX_COMMIT]
            if not self.finished:
                self.due.clear()
            self.committing = batch
            try:
                # Shielded: a commit cut short by shutdown would leave its outcome unknown.
                # Retried until it answers: giving up would run the stage again.
                statuses = await asyncio.shield(
                    retry_forever(functools.partial(self._commit, batch), self._redis_down)
                )
            finally:
                self.committing = []
            self._settle(batch, statuses)
