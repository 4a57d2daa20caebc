"""Holdings: everything one worker holds, and the only code that changes it.

A message is held from the moment the reader accepts it until its commit settles it (or the
worker lets go of it, or hands it back). Held messages are waiting in the inbox, running, or
being committed; their leases are renewed all that time. The reader asks here how many more to
read (the read-ahead rule), the runners let go of a reclaimed message another worker took
first, the committer marks what it is committing and settles what it committed, the lease
keeper (a thread) asks which ids to renew and reports the ones renewal found lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Protocol

from structlog.typing import FilteringBoundLogger

from framework.outcome import Emit
from framework.specs import StageSpec
from framework.wire import Delivery
from framework.worker.backpressure import Gate
from framework.worker.commit_call import Finished
from framework.worker.read_ahead import ReadAhead


class Waiting(Protocol):
    """Where accepted messages wait for a runner (worker/inbox.py, thread_runners.py)."""

    def put_many(self, deliveries: list[Delivery]) -> None: ...
    def take_all(self) -> list[Delivery]: ...


class Holdings:
    """Held, lost and committing messages of one worker, and how many more it may read."""

    def __init__(
        self, stage: StageSpec, waiting: Waiting, gate: Gate, log: FilteringBoundLogger
    ) -> None:
        self.read_ahead = ReadAhead(stage.concurrency, stage.batch, stage.lease, stage.prefetch)
        self._held: dict[str, Delivery] = {}
        self._lost: set[str] = set()  # held, but renewal found another consumer has it
        self._committing: set[str] = set()
        self._waiting = waiting
        self._gate = gate
        self._room = asyncio.Event()
        self._log = log
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._held)

    # -- the reader ------------------------------------------------------------------------

    def room(self) -> int:
        """How many more messages to read now (0: wait for `room_made`)."""
        return self.read_ahead.capacity - len(self._held)

    async def room_made(self, timeout: float) -> None:
        """Until a settle or a let-go frees room, or `timeout` seconds."""
        self._room.clear()
        try:
            # A timeout, not wait_for: a full worker waits here once per batch, and wait_for
            # would start a task for each wait.
            async with asyncio.timeout(timeout):
                await self._room.wait()
        except TimeoutError:
            pass

    def accept(self, deliveries: list[Delivery]) -> None:
        """Messages read or reclaimed: held, and waiting for a runner."""
        held, lost, new = self._held, self._lost, []
        for delivery in deliveries:
            message_id = delivery.message_id
            if message_id in held:
                # Reclaimed from ourselves (our renewals failed for a lease): it is here.
                lost.discard(message_id)
                continue
            held[message_id] = delivery
            if lost:
                lost.discard(message_id)
            new.append(delivery)
        if new:
            self._waiting.put_many(new)

    # -- the runners -----------------------------------------------------------------------

    def let_go(self, delivery: Delivery) -> None:
        """A reclaimed message another worker took before we started it: not ours to run."""
        self._held.pop(delivery.message_id, None)
        self._lost.discard(delivery.message_id)
        self._room.set()
        self._log.info("lease_lost", message_id=delivery.message_id, job_id=delivery.job)

    # -- the committer ---------------------------------------------------------------------

    def committing(self, batch: list[Finished]) -> None:
        """These are in a commit.lua call now: a renewal that misses one saw its XACK."""
        self._committing = {delivery.message_id for delivery, _, _ in batch}

    def settle(self, batch: list[Finished], owned: list[bool]) -> None:
        """Forget committed messages, free their room, and learn from how long calls took."""
        release, emitted, busy = self._held.pop, 0, 0.0
        counting = bool(self._gate.downstream)  # outputs matter only to a backpressure gate
        for (delivery, outcome, elapsed), ours in zip(batch, owned, strict=True):
            release(delivery.message_id, None)
            busy += elapsed
            if counting and ours and type(outcome) is Emit:
                emitted += len(outcome.payloads)
        if emitted:
            self._gate.note_emitted(emitted)
        if self._lost:
            self._lost.difference_update(d.message_id for d, _, _ in batch)
        self._committing = set()
        self.read_ahead.observe(busy, len(batch))
        self._room.set()

    # -- the lease keeper (a thread) -------------------------------------------------------

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop that owns this state: the lease thread's reports are handed to it."""
        self._loop = loop

    def renewable(self) -> list[str]:
        """Ids to renew: held and not known lost. A copy, taken from another thread."""
        return [message_id for message_id in tuple(self._held) if message_id not in self._lost]

    def lost_from_thread(self, ids: list[str]) -> None:
        # Most "lost" ids were just committed (renewal raced the commit): keep the others.
        still_held = [message_id for message_id in ids if message_id in self._held]
        if still_held and self._loop is not None:
            self._loop.call_soon_threadsafe(self._mark_lost, still_held)

    def _mark_lost(self, ids: list[str]) -> None:
        # A renewal that missed a message being committed just saw the commit's XACK; if the
        # lease was in fact lost, the commit says so (late_result_dropped).
        for message_id in ids:
            if (
                message_id in self._held
                and message_id not in self._lost
                and message_id not in self._committing
            ):
                self._lost.add(message_id)
                self._log.warning("lease_lost", message_id=message_id)

    # -- stopping --------------------------------------------------------------------------

    def unstarted(self) -> list[Delivery]:
        """Everything still waiting for a runner, taken out of the inbox."""
        return self._waiting.take_all()

    def running(self) -> list[Delivery]:
        """Held messages not waiting in the inbox: running, or finished and not yet settled."""
        return list(self._held.values())

    def forget(self, deliveries: Iterable[Delivery]) -> list[Delivery]:
        """Stop holding `deliveries` (handed back); returns those still ours to hand back."""
        mine = []
        for delivery in deliveries:
            self._held.pop(delivery.message_id, None)
            if delivery.message_id not in self._lost:
                mine.append(delivery)
        return mine

    async def emptied(self, deadline: float) -> bool:
        """Wait until nothing is held, or time.monotonic() passes `deadline`; True if empty."""
        while self._held and time.monotonic() < deadline:
            await self.room_made(min(0.1, max(deadline - time.monotonic(), 0.0)))
        return not self._held
