"""Runner threads for plain (`def`) stage functions: each takes the messages waiting for it one
after another, on its own thread, and hands what it finished to the event loop in bunches.

A plain function cannot run on the event loop (one slow call would stall the reader, the
committer and every other runner), so it runs in `concurrency` threads. What a thread costs
is the hop between the loop and it: a thread that takes one message per hop, as a thread pool
does, pays a wake-up and a callback for every message, which for a fast function costs more
than the function. So a runner thread goes on taking messages while any wait (the inbox is a
deque the reader fills a read at a time), and hands its finished messages back once they have
waited HANDOVER (a millisecond) or the inbox is empty: one hop per bunch, in both directions.

A thread cannot be stopped. A call that runs past the stage's `timeout` is given up by the
watch on the loop: its message is committed as a failed attempt at once, the thread is left to
finish on its own (what it returns then is dropped) and a fresh thread takes its place, so the
messages behind it are not held up.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from framework.wire import Delivery
from framework.worker.commit_call import Finished
from framework.worker.runners import SKIP, Calls, finished_batch

HANDOVER = 0.001  # seconds a finished message may wait for others to go to the loop with it
IDLE_WAIT = 0.5  # how long an idle thread sleeps before it looks at `stopping` again


class ThreadInbox:
    """Deliveries waiting for a runner thread: put by the loop, taken by the threads."""

    def __init__(self) -> None:
        self._items: collections.deque[Delivery] = collections.deque()
        self._ready = threading.Condition()
        self._idle = 0  # threads waiting in `get`

    def __len__(self) -> int:
        return len(self._items)

    def put_many(self, deliveries: list[Delivery]) -> None:
        with self._ready:  # under the lock: a thread about to wait must see them, or be woken
            self._items.extend(deliveries)
            if self._idle:  # wake one: it wakes the next if work is left (see `get`)
                self._ready.notify()

    def take(self) -> Delivery | None:
        """The next delivery if one waits, else None; never blocks."""
        try:
            return self._items.popleft()
        except IndexError:
            return None

    def get(self, timeout: float) -> Delivery | None:
        """The next delivery, waiting up to `timeout` seconds for one."""
        with self._ready:
            if not self._items:
                self._idle += 1
                try:
                    self._ready.wait(timeout)
                finally:
                    self._idle -= 1
            delivery = self.take()
            if delivery is not None and self._items and self._idle:
                self._ready.notify()
            return delivery

    def take_all(self) -> list[Delivery]:
        """Everything not started (at shutdown, to hand back)."""
        taken = []
        while (delivery := self.take()) is not None:
            taken.append(delivery)
        return taken

    def wake_all(self) -> None:
        with self._ready:
            self._ready.notify_all()


@dataclass
class Slot:
    """One runner thread, and the call it is in (for the timeout watch)."""

    thread: threading.Thread | None = None
    current: list[Delivery] = field(default_factory=list)  # the call's messages; [] when idle
    started: float = 0.0
    abandoned: bool = False  # its call ran past the timeout: what it returns is dropped
    lock: threading.Lock = field(default_factory=threading.Lock)


class ThreadRunners(Calls):
    """`concurrency` runner threads and, with a `timeout:`, the watch over their calls."""

    def __init__(self, inbox: ThreadInbox, *args: Any) -> None:
        super().__init__(*args)
        self.inbox = inbox
        self._slots: list[Slot] = []
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for index in range(self.stage.concurrency):
            self._slots.append(self._start(Slot(), index))

    def _start(self, slot: Slot, index: int) -> Slot:
        name = f"stage-{self.stage.name}-{index}"
        slot.thread = threading.Thread(target=self._run, args=(slot,), name=name)
        slot.thread.start()
        return slot

    def stop(self) -> None:
        """Take no more messages; calls under way finish (or are left behind when hung)."""
        self._stopping.set()
        self.inbox.wake_all()

    async def watch(self) -> None:
        """Give up calls that run past the timeout (a task on the loop, until cancelled)."""
        timeout = self.stage.timeout
        if timeout is None:
            return
        limit = timeout.total_seconds()
        while True:
            await asyncio.sleep(min(limit / 4, 0.25))
            now = time.monotonic()
            for index, slot in enumerate(self._slots):
                with slot.lock:
                    late = slot.current and not slot.abandoned and now - slot.started > limit
                    if late:
                        slot.abandoned = True
                        given_up, elapsed = slot.current, now - slot.started
                if late:
                    self.committer.add(
                        (d, self.function.timed_out(d), elapsed / len(given_up)) for d in given_up
                    )
                    self._slots[index] = self._start(Slot(), index)

    # -- in the thread ---------------------------------------------------------------------

    def _run(self, slot: Slot) -> None:
        finished: list[Finished] = []
        handed_at = time.monotonic()
        batch = self.stage.batch
        while not self._stopping.is_set():
            delivery = self.inbox.take()
            if delivery is None:
                self._hand_over(finished)
                delivery = self.inbox.get(IDLE_WAIT)
                if delivery is None:
                    continue
                handed_at = time.monotonic()
            taken = [delivery]
            while batch and len(taken) < batch and (more := self.inbox.take()) is not None:
                taken.append(more)
            done = self._call(slot, taken)
            if done is None:  # given up by the watch: this thread ends here
                break
            finished.extend(done)
            if time.monotonic() - handed_at >= HANDOVER:
                self._hand_over(finished)
                handed_at = time.monotonic()
        self._hand_over(finished)

    def _call(self, slot: Slot, taken: list[Delivery]) -> list[Finished] | None:
        """Run the function on `taken` (one message, or a batch); None when the watch gave the
        call up meanwhile."""
        done: list[Finished] = []
        skips, groups = self.plan(taken)
        if skips:
            self._call_soon(self.committer.add, [(delivery, SKIP, 0.0) for delivery in skips])
        for planned in groups:
            group = self._counted(planned)
            if not group:
                continue
            with slot.lock:
                slot.current, slot.started = group, time.monotonic()
            started = time.perf_counter()
            if self.stage.batch:
                outcomes = self.function.call_batch_in_thread(group, self.batch_context(group))
            else:
                outcomes = [self.function.call_in_thread(group[0], self.context(group[0]))]
            elapsed = time.perf_counter() - started
            with slot.lock:
                if slot.abandoned:
                    return None
                slot.current = []
            done.extend(finished_batch(group, outcomes, elapsed))
        return done

    def _counted(self, group: list[Delivery]) -> list[Delivery]:
        """The group as it may start: a reclaimed message is counted (on the loop) as its
        group starts, not before (a run that kills the worker must not count the others)."""
        if not any(delivery.claimed for delivery in group):
            return group
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(self.runnable(group), self._loop).result()

    def _call_soon(self, callback: Any, argument: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(callback, argument)

    def _hand_over(self, finished: list[Finished]) -> None:
        if finished:
            bunch = finished.copy()
            finished.clear()
            self._call_soon(self.committer.add, bunch)
