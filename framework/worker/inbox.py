"""Inbox: the deliveries a worker has read and not yet started, waiting for a free runner.

Unlike `asyncio.Queue`, which wakes one waiting runner per item put, the inbox keeps at most
one runner on its way at a time: a runner that takes a delivery wakes the next only if work is
left. Calls that finish without waiting (a no-op, a transform, a cache hit) then run back to
back in one runner, instead of costing a task wake-up each, which was the largest single cost
of a fast stage; calls that wait (a model endpoint) still spread over every runner, each
woken by the one before.
"""

from __future__ import annotations

import asyncio
import collections

from framework.wire import Delivery


class Inbox:
    def __init__(self) -> None:
        self._items: collections.deque[Delivery] = collections.deque()
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._waking = 0  # runners woken that have not yet looked at the items
        self.wakeups = 0  # idle runners woken so far: about one per read when calls are fast

    def __len__(self) -> int:
        return len(self._items)

    def put(self, delivery: Delivery) -> None:
        self._items.append(delivery)
        if not self._waking:
            self._wake_one()

    def put_many(self, deliveries: list[Delivery]) -> None:
        self._items.extend(deliveries)
        if not self._waking:
            self._wake_one()

    async def get(self) -> Delivery:
        items = self._items
        while not items:
            waiter = asyncio.get_running_loop().create_future()
            self._idle.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():  # woken, then cancelled: pass it on
                    self._waking -= 1
                    if items:
                        self._wake_one()
                raise
            self._waking -= 1
        delivery = items.popleft()
        if items and not self._waking:
            self._wake_one()
        return delivery

    def take(self) -> Delivery | None:
        """The next delivery if one is waiting, else None: `get()` without a coroutine, for a
        runner that keeps finding work (it wakes the next runner just as `get()` does)."""
        items = self._items
        if not items:
            return None
        delivery = items.popleft()
        if items and not self._waking:
            self._wake_one()
        return delivery

    def get_nowait(self) -> Delivery:
        return self._items.popleft()

    def take_all(self) -> list[Delivery]:
        """Everything not started (at shutdown, to hand back)."""
        taken = list(self._items)
        self._items.clear()
        return taken

    def _wake_one(self) -> None:
        idle = self._idle
        while idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._waking += 1
                self.wakeups += 1
                return
