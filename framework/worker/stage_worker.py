"""StageWorker: one stage's consumer, from start-up to a graceful stop.

It builds the parts (worker/__init__.py draws them), takes its place in Redis (groups, its
consumer, stale consumers retired: each step repeated after a lost reply, as a running worker
waits for Redis), runs them as sibling tasks until told to stop, then drains: what never
started is handed back at once, running calls get the grace period, and what still runs
after it is handed back keeping its attempt.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import structlog

from framework.connection import (
    TRANSIENT_ERRORS,
    UNREACHABLE,
    AsyncClient,
    Server,
    SyncClient,
    retry_forever,
)
from framework.groups import announce_consumer, ensure_groups, retire_consumers
from framework.invocation import StageFunction
from framework.keys import consumer_name
from framework.specs import PipelineSpec, StageSpec
from framework.wire import Delivery
from framework.worker.backpressure import Downstream, Gate
from framework.worker.channels import Channel
from framework.worker.committer import Committer
from framework.worker.holdings import Holdings
from framework.worker.housekeeping import Housekeeper
from framework.worker.inbox import Inbox
from framework.worker.leases import LeaseKeeper, hand_back
from framework.worker.reader import Reader
from framework.worker.runners import AsyncRunners
from framework.worker.thread_runners import ThreadInbox, ThreadRunners

log = structlog.get_logger()


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
        self.grace_period = grace_period
        self.consumer = consumer_name()
        self.log = log.bind(pipeline=pipeline.name, stage=stage.name, consumer=self.consumer)
        downstream = [
            Downstream(s.name, s.input_stream, s.max_backlog)
            for s in pipeline.stages
            if s.input_stage == stage.name and s.max_backlog is not None
        ]
        gate = Gate(client, downstream, logger=self.log)
        inbox: Inbox | ThreadInbox = Inbox() if function.is_async else ThreadInbox()
        self.holdings = Holdings(stage, inbox, gate, self.log)
        self.committer = Committer(commits, pipeline, stage, self.consumer, self.holdings, self.log)
        calls = (stage, function, self.holdings, self.committer, client, self.consumer, self.log)
        self.runners: AsyncRunners | ThreadRunners = (
            AsyncRunners(inbox, *calls)
            if isinstance(inbox, Inbox)
            else ThreadRunners(inbox, *calls)
        )
        self.reader = Reader(
            pipeline, stage, client, server, reads, self.consumer, self.holdings, gate, self.log
        )
        self.leases = LeaseKeeper(
            lease_client,
            stage.input_stream,
            stage.name,
            self.consumer,
            stage.lease,
            held=self.holdings.renewable,
            on_lost=self.holdings.lost_from_thread,
        )
        streams = [stage.output_stream, pipeline.keys.dead, pipeline.keys.done]
        if stage.input_stage is not None or stage.input_stream == pipeline.keys.input:
            streams.insert(0, stage.input_stream)  # never trim another application's stream
        self.housekeeper = Housekeeper(client, pipeline, streams, stage.name)

    async def run(self, stopping: asyncio.Event) -> None:
        """Work until `stopping` is set, then drain within the grace period and return."""
        self.holdings.bind(asyncio.get_running_loop())
        await self._take_place()
        self.leases.start()
        self.log.info("worker_started", concurrency=self.stage.concurrency, batch=self.stage.batch)
        try:
            async with asyncio.TaskGroup() as group:
                reader = group.create_task(self.reader.run(stopping))
                runners = self._start_runners(group)
                committer = group.create_task(self.committer.run())
                housekeeper = group.create_task(self.housekeeper.run(stopping))
                await stopping.wait()
                await reader
                await self._drain()
                for task in (*runners, housekeeper):
                    task.cancel()
                await self.committer.close(committer)
        finally:
            self._stop_runners()  # also when a task failed or the worker was cancelled
            await self._release_held()
            self.leases.stop()
            await self._retire()
        self.log.info("worker_stopped")

    async def _take_place(self) -> None:
        """Groups, this worker's consumer, stale consumers retired: each step is safe to
        repeat, and repeated after a lost reply as a running worker's commands are."""
        stream, name, consumer = self.stage.input_stream, self.stage.name, self.consumer
        local = self.pipeline.redis_url == "embedded"  # only this host's processes use it
        await retry_forever(lambda: ensure_groups(self.client, self.pipeline), self._redis_down)
        await retry_forever(
            lambda: announce_consumer(self.client, self.server, stream, name, consumer),
            self._redis_down,
        )
        await retry_forever(
            lambda: retire_consumers(self.client, stream, name, local=local), self._redis_down
        )

    def _start_runners(self, group: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        runners = self.runners
        if isinstance(runners, ThreadRunners):
            runners.start()
            return [group.create_task(runners.watch())]
        return [group.create_task(runners.run()) for _ in range(self.stage.concurrency)]

    def _stop_runners(self) -> None:
        """Runner threads take no more; what they run finishes. An idle thread would otherwise
        wait for work for ever, and the process would not exit."""
        if isinstance(self.runners, ThreadRunners):
            self.runners.stop()

    async def _drain(self) -> None:
        """Hand back what never started; give running calls the grace period to finish."""
        self._stop_runners()
        await self._hand_back(self.holdings.unstarted())
        deadline = time.monotonic() + self.grace_period.total_seconds()
        if not await self.holdings.emptied(deadline):
            self.log.warning("grace_period_over", unfinished=len(self.holdings))

    async def _release_held(self) -> None:
        """At the very end: what never started gives its delivery back; a call still running
        after the grace period keeps its attempt (it may be what hangs every worker)."""
        await self._hand_back(self.holdings.unstarted())
        await self._hand_back(self.holdings.running(), started=True)

    async def _hand_back(self, deliveries: list[Delivery], started: bool = False) -> None:
        mine = self.holdings.forget(deliveries)
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

    def _redis_down(self, error: BaseException, delay: float) -> None:
        self.log.warning("redis_unavailable", error=str(error), retry_in_s=round(delay, 2))
