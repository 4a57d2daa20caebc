"""Runners: the tasks that take a worker's deliveries from its inbox, call the stage function and
hand each finished message to the committer; `concurrency` of them per worker.

One loop per kind of function: a plain `async def f(doc)` is awaited right in the loop (the
common path, run once per message, so kept lean); any other function goes through
`StageFunction.call` (threads, ctx, timeouts); a `batch:` function gets lists of payloads.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ResponseError
from structlog.typing import FilteringBoundLogger

from framework.committer import Committer
from framework.connection import AsyncClient, retry_forever
from framework.context import Context
from framework.groups import is_missing_group
from framework.inbox import Inbox
from framework.invocation import StageFunction
from framework.leases import count_runs
from framework.outcome import DeadLetter, Outcome, Skip
from framework.specs import StageSpec
from framework.wire import Delivery

SKIP = Skip()


class Runners:
    """What each runner task of one worker runs (`run`), and the contexts handed to calls."""

    def __init__(
        self,
        stage: StageSpec,
        function: StageFunction,
        inbox: Inbox,
        committer: Committer,
        log: FilteringBoundLogger,
        client: AsyncClient,
        consumer: str,
        let_go: Callable[[Delivery], None],
    ) -> None:
        self.stage, self.function, self.inbox, self.committer = stage, function, inbox, committer
        self.log, self.client, self.consumer, self.let_go = log, client, consumer, let_go

    async def run(self) -> None:
        """One runner: until cancelled."""
        if self.stage.batch:
            await self._in_batches(self.stage.batch)
        elif self.function.direct is not None:
            await self._direct(self.function.direct)
        else:
            await self._one_by_one()

    async def _direct(self, function: Callable[[Any], Awaitable[Any]]) -> None:
        """A plain `async def f(doc)`, awaited right here; work waiting is taken without an
        await, so calls that finish at once run back to back in one runner."""
        take, get = self.inbox.take, self.inbox.get
        finished, due = self.committer.finished, self.committer.due
        prepare, outcome_of, failure = (
            self.function.prepare,
            self.function.outcome,
            self.function.failure,
        )
        stage, clock = self.stage.name, time.perf_counter
        started = clock()
        while True:
            delivery = take()
            if delivery is None:
                delivery = await get()
                started = clock()  # else a call starts as the one before it ended
            if delivery.target is not None and delivery.target != stage:
                self.committer.add((delivery, SKIP, 0.0))
                continue
            if delivery.claimed and not await self.counted([delivery]):
                continue
            argument = prepare(delivery)
            if type(argument) is DeadLetter:
                outcome: Outcome = argument
            else:
                try:
                    result = await function(argument)
                except Exception as error:  # user code: any failure is an outcome, not a crash
                    outcome = failure(error, delivery)
                else:
                    outcome = outcome_of(result)
            ended = clock()
            finished.append((delivery, outcome, ended - started))
            started = ended
            due.set()

    async def _one_by_one(self) -> None:
        inbox, add, call = self.inbox, self.committer.add, self.function.call
        stage, context, clock = self.stage.name, self.context, time.perf_counter
        while True:
            delivery = inbox.take() or await inbox.get()
            if delivery.target is not None and delivery.target != stage:
                add((delivery, SKIP, 0.0))
                continue
            if delivery.claimed and not await self.counted([delivery]):
                continue
            started = clock()
            outcome = await call(delivery, context(delivery))
            add((delivery, outcome, clock() - started))

    async def _in_batches(self, batch: int) -> None:
        while True:
            taken = [await self.inbox.get()]
            while len(taken) < batch and self.inbox:
                taken.append(self.inbox.get_nowait())
            await self._run_batch(taken)

    async def _run_batch(self, deliveries: list[Delivery]) -> None:
        mine = []
        for delivery in deliveries:
            if delivery.target is not None and delivery.target != self.stage.name:
                self.committer.add((delivery, SKIP, 0.0))
            else:
                mine.append(delivery)
        if not mine:
            return
        # A retried item runs alone: a poison payload must not keep failing its neighbours.
        fresh = [d for d in mine if d.attempt <= 1]
        groups = [fresh] if fresh else []
        groups.extend([d] for d in mine if d.attempt > 1)
        for group in groups:
            if any(d.claimed for d in group):  # counted as each group starts, not before
                group = await self.counted(group)
                if not group:
                    continue
            started = time.perf_counter()
            outcomes = await self.function.call_batch(group, self._batch_context(group))
            elapsed = (time.perf_counter() - started) / len(group)
            for delivery, outcome in zip(group, outcomes, strict=True):
                self.committer.add((delivery, outcome, elapsed))

    async def counted(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Count the runs of the reclaimed among `deliveries` before they start; returns those
        to run. One another worker has reclaimed meanwhile is not run, and nothing is
        committed for it: the worker lets go of it (were it reclaimed back to us meanwhile, a
        commit would acknowledge a message that never ran)."""
        claimed = [d for d in deliveries if d.claimed]
        stage = self.stage

        async def count() -> set[str]:
            try:
                return await count_runs(
                    self.client, stage.input_stream, stage.name, self.consumer, claimed
                )
            except ResponseError as error:
                if not is_missing_group(error):
                    raise
                return set()  # FLUSHALL, a deleted stream: in no one's hands

        def waiting(error: BaseException, delay: float) -> None:
            self.log.warning("redis_unavailable", error=str(error), retry_in_s=delay)

        ours = await retry_forever(count, waiting)  # never run one uncounted: it may kill us
        runnable = []
        for delivery in deliveries:
            if delivery.claimed:
                delivery.claimed = False
                if delivery.message_id not in ours:
                    self.let_go(delivery)
                    continue
            runnable.append(delivery)
        return runnable

    def context(self, delivery: Delivery) -> Context | None:
        """The ctx for one call, or None for a function that takes none."""
        if not self.function.wants_context:
            return None
        bound = self.log.bind(
            job_id=delivery.job, message_id=delivery.message_id, attempt=delivery.attempt
        )
        return Context(
            delivery.job, self.stage.name, delivery.attempt, delivery.message_id, bound, self.client
        )

    def _batch_context(self, group: list[Delivery]) -> Context | None:
        contexts = tuple(self.context(d) for d in group)
        if contexts[0] is None:
            return None
        items = tuple(c for c in contexts if c is not None)
        return Context(**{**_fields(items[0]), "items": items})


def _fields(context: Context) -> dict[str, Any]:
    return {
        "job_id": context.job_id,
        "stage": context.stage,
        "attempt": context.attempt,
        "message_id": context.message_id,
        "log": context.log,
        "redis": context.redis,
    }
