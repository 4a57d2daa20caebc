"""The inbox wakes runners one at a time: fast calls run back to back, slow ones spread out.

No test sleeps to let runners work: each waits until the runners have taken the deliveries it
expects (bounded by a timeout), and a call that "waits" waits on an event never set, so what
runs at once does not depend on the machine's speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from framework.wire import Delivery
from framework.worker.inbox import Inbox

Call = Callable[[], Awaitable[None]]


def _delivery(n: int) -> Delivery:
    return Delivery(f"1-{n}", f"job-{n}", b"{}", "", 1)


async def _returns_at_once() -> None:
    """A call that never waits (a no-op, a transform): awaiting it does not yield."""


class Runners:
    """Runners taking from one inbox, each noting the message ids it took, in order."""

    def __init__(self, inbox: Inbox, count: int, call: Call) -> None:
        self.inbox = inbox
        self.call = call
        self.taken: dict[int, list[str]] = {n: [] for n in range(count)}
        self.tasks: list[asyncio.Task[None]] = []
        self._waiting = 0
        self._all_waiting = asyncio.Event()
        self._wanted: int | None = None
        self._reached = asyncio.Event()

    def total(self) -> int:
        return sum(len(ids) for ids in self.taken.values())

    async def start(self) -> None:
        """Start every runner and return once each waits on the empty inbox."""
        self.tasks = [asyncio.create_task(self._run(n)) for n in range(len(self.taken))]
        await self._all_waiting.wait()

    async def until_taken(self, count: int, timeout: float = 5.0) -> None:
        """Return once `count` deliveries have been taken in all."""
        self._wanted = count
        self._reached.clear()
        if self.total() >= count:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._reached.wait()
        except TimeoutError:
            raise AssertionError(
                f"after {timeout}s, {self.total()} of {count} deliveries taken: {self.taken}"
            ) from None

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _run(self, number: int) -> None:
        self._waiting += 1
        if self._waiting == len(self.taken):
            self._all_waiting.set()  # this runner's get() below waits before anyone runs again
        while True:
            delivery = await self.inbox.get()
            self.taken[number].append(delivery.message_id)
            if self._wanted is not None and self.total() >= self._wanted:
                self._reached.set()  # no await: a fast runner goes on without yielding
            await self.call()


@asynccontextmanager
async def running(
    inbox: Inbox, count: int, call: Call = _returns_at_once
) -> AsyncIterator[Runners]:
    runners = Runners(inbox, count, call)
    await runners.start()
    try:
        yield runners
    finally:
        await runners.stop()


async def test_calls_that_never_wait_run_back_to_back_in_one_runner() -> None:
    inbox = Inbox()
    async with running(inbox, 50) as runners:
        for n in range(100):
            inbox.put(_delivery(n))
        await runners.until_taken(100)
    busy = [ids for ids in runners.taken.values() if ids]
    assert len(busy) == 1
    assert inbox.wakeups <= 2  # one to start, one that finds nothing: not one per message
    assert busy[0] == [f"1-{n}" for n in range(100)]  # in arrival order


async def test_calls_that_wait_spread_over_every_runner() -> None:
    inbox = Inbox()
    never_answered = asyncio.Event()  # a model endpoint that has not replied yet

    async def waits() -> None:
        await never_answered.wait()

    async with running(inbox, 20, waits) as runners:
        for n in range(20):
            inbox.put(_delivery(n))
        await runners.until_taken(20)  # every call still waiting: all 20 run at once
        assert sorted(len(ids) for ids in runners.taken.values()) == [1] * 20
        assert inbox.wakeups == 20
        assert len(inbox) == 0


async def test_a_runner_cancelled_after_its_wake_up_passes_the_work_on() -> None:
    inbox = Inbox()
    async with running(inbox, 2) as runners:
        inbox.put(_delivery(1))  # wakes the first idle runner ...
        runners.tasks[0].cancel()  # ... which is cancelled before it runs
        await runners.until_taken(1)
        await asyncio.gather(runners.tasks[0], return_exceptions=True)
        assert runners.tasks[0].cancelled()
    assert runners.taken == {0: [], 1: ["1-1"]}


async def test_take_all_returns_what_never_started() -> None:
    inbox = Inbox()
    for n in range(3):
        inbox.put(_delivery(n))
    assert [d.message_id for d in inbox.take_all()] == ["1-0", "1-1", "1-2"]
    assert len(inbox) == 0
