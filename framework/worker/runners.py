"""Runners: call the stage function on the messages the worker holds, and hand each finished
message to the committer.

`Calls` is what every runner needs whatever kind the function is: the ctx for a call, the
count of a reclaimed message's run before it starts, a batch split so that a retried item
runs alone. `AsyncRunners` are `concurrency` tasks on the event loop, for `async def`
functions; plain functions run in threads (thread_runners.py).

An async function's runner takes from the inbox one message at a time, without an await while
work is waiting, so calls that finish at once run back to back in one runner.
"""

from __future__ import annotations

import time
from typing import Any

from redis.exceptions import ResponseError
from structlog.typing import FilteringBoundLogger

from framework.cancellation import cancel_check
from framework.connection import AsyncClient, retry_forever
from framework.context import Context
from framework.groups import is_missing_group
from framework.invocation import StageFunction
from framework.outcome import Outcome, Skip
from framework.specs import StageSpec
from framework.wire import Delivery
from framework.worker.commit_call import Finished
from framework.worker.committer import Committer
from framework.worker.holdings import Holdings
from framework.worker.inbox import Inbox
from framework.worker.leases import mark_started

SKIP = Skip()


class Calls:
    """What runners of every kind share."""

    def __init__(
        self,
        stage: StageSpec,
        function: StageFunction,
        holdings: Holdings,
        committer: Committer,
        client: AsyncClient,
        consumer: str,
        log: FilteringBoundLogger,
    ) -> None:
        self.stage, self.function, self.holdings = stage, function, holdings
        self.committer, self.client, self.consumer, self.log = committer, client, consumer, log

    def not_for_us(self, delivery: Delivery) -> bool:
        """A retry addressed to another stage that reads the same stream: acknowledge only."""
        return delivery.target is not None and delivery.target != self.stage.name

    async def runnable(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Count the runs of the reclaimed among `deliveries` before they start; returns those
        to run. One another worker has reclaimed meanwhile is not run, and nothing is
        committed for it: the worker lets go of it (were it reclaimed back to us meanwhile, a
        commit would acknowledge a message that never ran)."""
        claimed = [d for d in deliveries if d.claimed]
        if not claimed:
            return deliveries
        stage = self.stage

        async def count() -> set[str]:
            try:
                return await mark_started(
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
                    self.holdings.let_go(delivery)
                    continue
            runnable.append(delivery)
        return runnable

    def plan(self, deliveries: list[Delivery]) -> tuple[list[Delivery], list[list[Delivery]]]:
        """The skips, and the rest in groups to call: each message alone, or for a `batch:`
        function the fresh ones together and each retried one alone (a poison payload must not
        keep failing its neighbours)."""
        skips: list[Delivery] = []
        mine: list[Delivery] = []
        for delivery in deliveries:
            (skips if self.not_for_us(delivery) else mine).append(delivery)
        if not self.stage.batch:
            return skips, [[delivery] for delivery in mine]
        fresh = [d for d in mine if d.attempt <= 1]
        groups = [fresh] if fresh else []
        groups.extend([d] for d in mine if d.attempt > 1)
        return skips, groups

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

    def batch_context(self, group: list[Delivery]) -> Context | None:
        contexts = tuple(self.context(d) for d in group)
        if contexts[0] is None:
            return None
        items = tuple(c for c in contexts if c is not None)
        first = items[0]
        return Context(
            first.job_id, first.stage, first.attempt, first.message_id, first.log, first.redis,
            items,
        )  # fmt: skip


class AsyncRunners(Calls):
    """What each runner task of a worker with an `async def` function runs (`run`)."""

    def __init__(self, inbox: Inbox, *args: Any) -> None:
        super().__init__(*args)
        self.inbox = inbox

    async def run(self) -> None:
        """One runner: until cancelled."""
        if self.stage.batch:
            await self._in_batches(self.stage.batch)
        else:
            await self._one_by_one()

    async def _one_by_one(self) -> None:
        """Work waiting is taken without an await, so calls that finish at once run back to
        back in one runner."""
        inbox, add, call = self.inbox, self.committer.add, self.function.call
        context, clock, cancelled = self.context, time.perf_counter, cancel_check()
        while True:
            cancelled()  # after the grace period, and lost in a call's timeout or a command
            delivery = inbox.take() or await inbox.get()
            if self.not_for_us(delivery):
                add(((delivery, SKIP, 0.0),))
                continue
            if delivery.claimed and not await self.runnable([delivery]):
                continue
            started = clock()
            outcome = await call(delivery, context(delivery))
            add(((delivery, outcome, clock() - started),))

    async def _in_batches(self, batch: int) -> None:
        cancelled = cancel_check()
        while True:
            cancelled()
            taken = [await self.inbox.get()]
            while len(taken) < batch and self.inbox:
                taken.append(self.inbox.get_nowait())
            skips, groups = self.plan(taken)
            if skips:
                self.committer.add((delivery, SKIP, 0.0) for delivery in skips)
            for group in groups:
                group = await self.runnable(group)  # counted as each group starts
                if not group:
                    continue
                started = time.perf_counter()
                outcomes = await self.function.call_batch(group, self.batch_context(group))
                seconds = time.perf_counter() - started
                self.committer.add(finished_batch(group, outcomes, seconds))


def finished_batch(
    group: list[Delivery], outcomes: list[Outcome], seconds: float
) -> list[Finished]:
    """A batch call's messages as the committer takes them: the call's time shared out."""
    each = seconds / len(group)
    return [(delivery, outcome, each) for delivery, outcome in zip(group, outcomes, strict=True)]
