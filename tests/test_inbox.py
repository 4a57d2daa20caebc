"""The inbox wakes runners one at a time: fast calls run back to back, slow ones spread out."""

from __future__ import annotations

import asyncio

from framework.wire import Delivery
from framework.worker.inbox import Inbox


def _delivery(n: int) -> Delivery:
    return Delivery(f"1-{n}", f"job-{n}", b"{}", "", 1)


async def _runners(
    inbox: Inbox, count: int, work: object
) -> tuple[list[asyncio.Task[None]], dict[int, list[str]]]:
    taken: dict[int, list[str]] = {n: [] for n in range(count)}

    async def runner(number: int) -> None:
        while True:
            delivery = await inbox.get()
            taken[number].append(delivery.message_id)
            if work == "slow":
                await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(runner(n)) for n in range(count)]
    await asyncio.sleep(0)  # every runner is idle, waiting
    return tasks, taken


async def test_calls_that_never_wait_run_back_to_back_in_one_runner() -> None:
    inbox = Inbox()
    tasks, taken = await _runners(inbox, 50, "fast")
    for n in range(100):
        inbox.put(_delivery(n))
    await asyncio.sleep(0.01)
    busy = [ids for ids in taken.values() if ids]
    assert sum(len(ids) for ids in busy) == 100
    assert len(busy) == 1
    assert inbox.wakeups <= 2  # one to start, one that finds nothing: not one per message
    assert busy[0] == [f"1-{n}" for n in range(100)]  # in arrival order
    for task in tasks:
        task.cancel()


async def test_calls_that_wait_spread_over_every_runner() -> None:
    inbox = Inbox()
    tasks, taken = await _runners(inbox, 20, "slow")
    for n in range(20):
        inbox.put(_delivery(n))
    await asyncio.sleep(0.02)  # well under one call: all 20 must be running at once
    assert sorted(len(ids) for ids in taken.values()) == [1] * 20
    assert inbox.wakeups == 20
    assert len(inbox) == 0
    for task in tasks:
        task.cancel()


async def test_a_runner_cancelled_after_its_wake_up_passes_the_work_on() -> None:
    inbox = Inbox()
    tasks, taken = await _runners(inbox, 2, "fast")
    inbox.put(_delivery(1))  # wakes the first idle runner ...
    tasks[0].cancel()  # ... which is cancelled before it runs
    await asyncio.sleep(0.01)
    assert taken[1] == ["1-1"]
    tasks[1].cancel()


async def test_take_all_returns_what_never_started() -> None:
    inbox = Inbox()
    for n in range(3):
        inbox.put(_delivery(n))
    assert [d.message_id for d in inbox.take_all()] == ["1-0", "1-1", "1-2"]
    assert len(inbox) == 0
