"""Committer: the task that turns a worker's finished messages into `commit.lua` calls.

Each call takes every message that finished while the previous call was on its way (up to
MAX_COMMIT), so the number of round trips per message falls as the load rises. Runners hand
finished messages over through `add` only; a list and an event cost less than an asyncio.Queue
on a path taken once per message. What each commit did is logged here, then settled in the
worker's holdings.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import Awaitable, Iterable
from typing import Any

from redis.exceptions import ResponseError
from structlog.typing import FilteringBoundLogger

from framework.cancellation import cancel_check
from framework.connection import retry_forever
from framework.groups import is_missing_group
from framework.logs import logging_enabled
from framework.outcome import DeadLetter, Drop, Emit, Outcome, RetryLater, Skip
from framework.scripts import AsyncRedis
from framework.specs import PipelineSpec, StageSpec
from framework.wire import Delivery
from framework.worker.commit_call import Committed, Finished, commit
from framework.worker.holdings import Holdings

MAX_COMMIT = 500  # messages per commit.lua call
CLOSE_TIMEOUT = 10.0  # how long a stopping worker waits for the commit on its way


class Committer:
    """Commits what runners `add`, in finishing order, and settles each batch in `holdings`."""

    def __init__(
        self,
        channel: AsyncRedis,
        pipeline: PipelineSpec,
        stage: StageSpec,
        consumer: str,
        holdings: Holdings,
        log: FilteringBoundLogger,
    ) -> None:
        self._commit = functools.partial(commit, channel, pipeline, stage, consumer)
        self._holdings = holdings
        self.log = log
        self._finished: list[Finished] = []  # to commit, in finishing order
        self._due = asyncio.Event()  # set while `_finished` holds something
        self._closing = False
        self._log_info = logging_enabled(logging.INFO)

    def add(self, items: Iterable[Finished]) -> None:
        """Finished messages, to commit in the next call."""
        self._finished.extend(items)
        self._due.set()

    async def run(self) -> None:
        """Until `close`: each commit is awaited right here, not in a task of its own, so that
        its command leaves in the same turn of the loop as the committer wakes."""
        cancelled = cancel_check()
        while True:
            cancelled()  # by close(), and lost in the last commit's send
            await self._due.wait()
            if self._closing and not self._finished:
                return
            batch = self._finished[:MAX_COMMIT]
            del self._finished[:MAX_COMMIT]
            if not self._finished and not self._closing:  # closing: go on until all is done
                self._due.clear()
            self._holdings.committing(batch)
            committed = await self._commit_until_answered(batch)
            self._log_outcomes(batch, committed)
            self._holdings.settle(batch, committed.owned)

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

    def _redis_down(self, error: BaseException, delay: float) -> None:
        self.log.warning("redis_unavailable", error=str(error), retry_in_s=round(delay, 2))

    async def close(self, task: asyncio.Task[None]) -> None:
        """Commit what has finished, then stop `task` (the one running `run`). A commit still
        unanswered after CLOSE_TIMEOUT (Redis away) is cut short: its messages stay pending,
        and a later commit, hand-back or reclaim finds out whether it happened."""
        self._closing = True
        self._due.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), CLOSE_TIMEOUT)
        except TimeoutError:
            task.cancel()

    # -- one line per message worth one ----------------------------------------------------

    def _log_outcomes(self, batch: list[Finished], committed: Committed) -> None:
        quiet = not self._log_info
        plain = quiet and not committed.before and all(committed.owned)
        if plain and all(type(outcome) is Emit for _, outcome, _ in batch):
            return  # the common case, when info lines are off: nothing to say
        for (delivery, outcome, elapsed), owned in zip(batch, committed.owned, strict=True):
            if quiet and owned and isinstance(outcome, Emit | Drop | Skip):
                continue  # the common case, when info lines are off: no fields to build
            self._log_outcome(
                delivery, outcome, owned, elapsed, delivery.message_id in committed.before
            )

    def _log_outcome(
        self, delivery: Delivery, outcome: Outcome, owned: bool, elapsed: float, before: bool
    ) -> None:
        fields: dict[str, Any] = {
            "job_id": delivery.job,
            "message_id": delivery.message_id,
            "attempt": delivery.attempt,
            "duration_ms": round(elapsed * 1000, 2),
        }
        if before:
            self.log.info("commit_confirmed_after_lost_reply", **fields)
        elif not owned:
            self.log.warning("late_result_dropped", **fields)
        elif isinstance(outcome, Emit):
            self.log.info("message_done", outputs=len(outcome.payloads), **fields)
        elif isinstance(outcome, Drop):
            self.log.info("message_dropped", **fields)
        elif isinstance(outcome, RetryLater):
            self.log.warning(
                "retry_scheduled",
                error=outcome.error,
                delay_ms=int(outcome.delay.total_seconds() * 1000),
                **fields,
            )
        elif isinstance(outcome, DeadLetter):
            self.log.error("dead_lettered", error=outcome.error, **fields)
