"""StageWorker: one stage's consumer. Reader, runners, committer and housekeeper run as sibling
tasks; the lease keeper runs in a thread so that a stalled event loop cannot lose a lease.

    reader ──inbox──> runners (concurrency) ──finished──> committer (commit.lua, batched)
       └─ XAUTOCLAIM expired leases, then XREADGROUP for free room only

This module holds the reader and what the worker holds (leases, hand-back, settling committed
messages); `runners.py` and `committer.py` hold the other two tasks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

import structlog
from redis.exceptions import ResponseError

from framework.backpressure import Downstream, Gate
from framework.channels import Channel
from framework.commits import Finished
from framework.committer import Committer
from framework.connection import (
    TRANSIENT_ERRORS,
    UNREACHABLE,
    AsyncClient,
    Server,
    SyncClient,
    retry_forever,
)
from framework.groups import (
    announce_consumer,
    ensure_groups,
    is_missing_group,
    is_unblocked,
    retire_consumers,
)
from framework.inbox import Inbox
from framework.invocation import StageFunction
from framework.keys import consumer_name
from framework.leases import LeaseKeeper, hand_back, reclaim
from framework.logs import logging_enabled
from framework.maintenance import Housekeeper
from framework.outcome import DeadLetter, Drop, Emit, Outcome, RetryLater, Skip
from framework.runners import Runners
from framework.specs import PipelineSpec, StageSpec
from framework.wire import Delivery, decode_flat_entry, raw_read_entries

log = structlog.get_logger()

READ_BLOCK_MS = 500  # how long a read waits for work; also bounds how late a stop is noticed


class StageWorker:
    """Consumes one stage's input with the stage's function until told to stop."""

    def __init__(
        self,
        pipeline: PipelineSpec,
        stage: StageSpec,
        client: AsyncClient,
        server: Server,
        lease_client: SyncClient,
        reads: Channel,
        commits: Channel,
        function: StageFunction,
        grace_period: timedelta = timedelta(seconds=30),
    ) -> None:
        self.pipeline, self.stage, self.client, self.server = pipeline, stage, client, server
        self.function = function
        self._reads = reads  # a connection of its own, as the committer has (channels.py)
        self.grace_period = grace_period
        self.consumer = consumer_name()
        self.capacity = 2 * stage.concurrency * (stage.batch or 1)
        self.log = log.bind(pipeline=pipeline.name, stage=stage.name, consumer=self.consumer)
        self._held: dict[str, Delivery] = {}
        self._lost: set[str] = set()
        self._inbox = Inbox()
        self._room = asyncio.Event()
        self._log_info = logging_enabled(logging.INFO)
        self._committer = Committer(
            commits, pipeline, stage, self.consumer, self._settle, self._redis_down
        )
        self._runners = Runners(
            stage,
            function,
            self._inbox,
            self._committer,
            self.log,
            client,
            self.consumer,
            self._let_go,
        )
        self._leases = LeaseKeeper(
            lease_client,
            stage.input_stream,
            stage.name,
            self.consumer,
            stage.lease,
            held=lambda: [i for i in tuple(self._held) if i not in self._lost],
            on_lost=self._on_lost_threadsafe,
        )
        downstream = [
            Downstream(s.name, s.input_stream, s.max_backlog)
            for s in pipeline.stages
            if s.input_stage == stage.name and s.max_backlog is not None
        ]
        self._gate = Gate(client, downstream, logger=self.log)
        streams = [stage.output_stream, pipeline.keys.dead, pipeline.keys.done]
        if stage.input_stage is not None or stage.input_stream == pipeline.keys.input:
            streams.insert(0, stage.input_stream)  # never trim another application's stream
        self._housekeeper = Housekeeper(client, pipeline, streams, stage.name)

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Work until `stopping` is set, then drain within the grace period and return."""
        self._loop = asyncio.get_running_loop()
        # Each step is safe to repeat, and repeated after a lost reply, as a running worker
        # waits for Redis: a lost connection at start is no reason to exit.
        stream, name, local = self.stage.input_stream, self.stage.name, self._local
        await retry_forever(lambda: ensure_groups(self.client, self.pipeline), self._redis_down)
        await retry_forever(
            lambda: announce_consumer(self.client, self.server, stream, name, self.consumer),
            self._redis_down,
        )
        await retry_forever(
            lambda: retire_consumers(self.client, stream, name, local=local), self._redis_down
        )
        self._leases.start()
        self.log.info("worker_started", concurrency=self.stage.concurrency, batch=self.stage.batch)
        try:
            async with asyncio.TaskGroup() as group:
                reader = group.create_task(self._read(stopping))
                runners = [
                    group.create_task(self._runners.run()) for _ in range(self.stage.concurrency)
                ]
                committer = group.create_task(self._committer.run())
                housekeeper = group.create_task(self._housekeeper.run(stopping))
                await stopping.wait()
                await reader
                await self._drain()
                for task in (*runners, housekeeper):
                    task.cancel()
                await self._committer.close(committer)
        finally:
            await self._release_held()
            self._leases.stop()
            self.function.close()
            await self._retire()
        self.log.info("worker_stopped")

    async def _drain(self) -> None:
        """Hand back what never started; give running calls the grace period to finish."""
        await self._hand_back(self._inbox.take_all())
        deadline = time.monotonic() + self.grace_period.total_seconds()
        while self._held and time.monotonic() < deadline:
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), timeout=0.1)
            except TimeoutError:
                pass
        if self._held:
            self.log.warning("grace_period_over", unfinished=len(self._held))

    async def _release_held(self) -> None:
        """At the very end: what never started gives its delivery back; a call still running
        after the grace period keeps its attempt (it may be what hangs every worker)."""
        await self._hand_back(self._inbox.take_all())
        await self._hand_back(list(self._held.values()), started=True)

    async def _hand_back(self, deliveries: list[Delivery], started: bool = False) -> None:
        mine = [d for d in deliveries if d.message_id not in self._lost]
        for delivery in deliveries:
            self._held.pop(delivery.message_id, None)
        if not mine:
            return
        try:
            released = await hand_back(
                self.client,
                self.stage.input_stream,
                self.stage.name,
                self.consumer,
                mine,
                self.stage.lease,
                started=started,
            )
            self.log.info("messages_handed_back", count=released)
        except TRANSIENT_ERRORS as error:  # they stay pending; reclaim moves them after the lease
            self.log.warning("hand_back_failed", count=len(mine), error=str(error))

    async def _retire(self) -> None:
        """Leave XINFO CONSUMERS if we hold nothing (and tidy consumers long gone)."""
        try:
            await retire_consumers(
                self.client, self.stage.input_stream, self.stage.name, self.consumer
            )
        except UNREACHABLE as error:  # harmless: a later stop tidies it
            self.log.warning("retire_failed", error=str(error))

    @property
    def _local(self) -> bool:
        """On the embedded Redis, which only this host's processes use (groups.retire_consumers)."""
        return self.pipeline.redis_url == "embedded"

    def _redis_down(self, error: BaseException, delay: float) -> None:
        self.log.warning("redis_unavailable", error=str(error), retry_in_s=round(delay, 2))

    # -- reader ------------------------------------------------------------------------------

    async def _read(self, stopping: asyncio.Event) -> None:
        cursor, next_reclaim = "0-0", 0.0
        delay = 0.05
        while not stopping.is_set():
            room = self.capacity - len(self._held)
            if room <= 0:
                self._room.clear()
                try:
                    # A timeout, not wait_for: a full worker waits here once per batch, and
                    # wait_for would start a task for each wait.
                    async with asyncio.timeout(READ_BLOCK_MS / 1000):
                        await self._room.wait()
                except TimeoutError:
                    pass
                continue
            try:
                if not await self._gate.wait_open(stopping):
                    break
                if time.monotonic() >= next_reclaim:
                    cursor, claimed = await reclaim(
                        self.client,
                        self.server,
                        self.stage.input_stream,
                        self.stage.name,
                        self.consumer,
                        self.stage.lease,
                        cursor,
                        room,
                    )
                    for delivery in claimed:
                        self.log.info(
                            "lease_reclaimed",
                            message_id=delivery.message_id,
                            job_id=delivery.job,
                            attempt=delivery.attempt,
                        )
                        self._accept(delivery)
                    if cursor == "0-0" or not claimed:
                        next_reclaim = time.monotonic() + self.stage.lease.total_seconds() / 4
                    room -= len(claimed)
                    if room <= 0:
                        continue
                reply = await self._reads.execute(
                    *("XREADGROUP", "GROUP", self.stage.name, self.consumer, "COUNT", room),
                    *("BLOCK", READ_BLOCK_MS, "STREAMS", self.stage.input_stream, ">"),
                )
                delay = 0.05
            except TRANSIENT_ERRORS as error:
                self._redis_down(error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            except ResponseError as error:
                if is_unblocked(error):  # the key moved to another cluster node, or was deleted
                    self._redis_down(error, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                if not is_missing_group(error):
                    raise
                self.log.warning("group_missing_recreating", error=str(error))
                await retry_forever(
                    lambda: ensure_groups(self.client, self.pipeline), self._redis_down
                )
                continue
            entries = raw_read_entries(reply)
            for message_id, flat in entries:
                self._accept(decode_flat_entry(message_id, flat))
            if entries:
                # Two turns of the loop before the next read: a runner's, then the committer's.
                # A call that finishes at once then has its commit sent before the next read
                # is, which takes a command's send off each stage's path; under load this is
                # two loop turns per read.
                await asyncio.sleep(0)
                await asyncio.sleep(0)

    def _accept(self, delivery: Delivery) -> None:
        if delivery.message_id in self._held:
            # Reclaimed from ourselves (our renewals failed for a lease): it is already here.
            self._lost.discard(delivery.message_id)
            return
        self._held[delivery.message_id] = delivery
        if self._lost:
            self._lost.discard(delivery.message_id)
        self._inbox.put(delivery)

    def _let_go(self, delivery: Delivery) -> None:
        """A reclaimed message another worker took before we started it: not ours to run."""
        self._held.pop(delivery.message_id, None)
        self._lost.discard(delivery.message_id)
        self._room.set()
        self.log.info("lease_lost", message_id=delivery.message_id, job_id=delivery.job)

    def _on_lost_threadsafe(self, ids: list[str]) -> None:
        # Most "lost" ids were just committed (renewal raced the commit): keep the others.
        still_held = [i for i in ids if i in self._held]
        if still_held:
            self._loop.call_soon_threadsafe(self._on_lost, still_held)

    def _on_lost(self, ids: list[str]) -> None:
        # A renewal that missed a message being committed just saw the commit's XACK; if the
        # lease was in fact lost, the commit says so (late_result_dropped).
        committing = {delivery.message_id for delivery, _, _ in self._committer.committing}
        lost = self._lost
        for message_id in ids:
            if message_id in self._held and message_id not in lost and message_id not in committing:
                lost.add(message_id)
                self.log.warning("lease_lost", message_id=message_id)

    # -- committed messages -----------------------------------------------------------------

    def _settle(self, finished: list[Finished], statuses: list[bool]) -> None:
        """Forget committed messages; log the ones worth a line. Runs once per message."""
        release, quiet, emitted = self._held.pop, not self._log_info, 0
        counting = bool(self._gate.downstream)  # outputs matter only to a backpressure gate
        for (delivery, outcome, elapsed), owned in zip(finished, statuses, strict=True):
            release(delivery.message_id, None)
            if owned and type(outcome) is Emit:
                if counting:
                    emitted += len(outcome.payloads)
                if quiet:
                    continue
            self._log_outcome(delivery, outcome, owned, elapsed)
        if emitted:
            self._gate.note_emitted(emitted)
        if self._lost:
            self._lost.difference_update(d.message_id for d, _, _ in finished)
        self._room.set()

    def _log_outcome(
        self, delivery: Delivery, outcome: Outcome, owned: bool, elapsed: float
    ) -> None:
        if owned and not self._log_info and isinstance(outcome, Emit | Drop | Skip):
            return  # the common case, when info lines are off: no fields to build
        fields: dict[str, Any] = {
            "job_id": delivery.job,
            "message_id": delivery.message_id,
            "attempt": delivery.attempt,
            "duration_ms": round(elapsed * 1000, 2),
        }
        if not owned:
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
