"""The reader: the task that fills a worker's holdings, never past the room they have.

Each turn it first reclaims messages whose holders went silent for a lease (XAUTOCLAIM, at
most every quarter lease while there is none to reclaim), then reads new ones (XREADGROUP
COUNT room BLOCK 500 ms) on a connection of its own. A full worker waits for room; a feeding
stage waits while a stage downstream is at its `max_backlog` (backpressure.py). A lost
connection, a busy server or a released block is waited out; a group that vanished (an empty
restart, FLUSHALL) is made again.
"""

from __future__ import annotations

import asyncio
import time

from redis.exceptions import ResponseError
from structlog.typing import FilteringBoundLogger

from framework.connection import TRANSIENT_ERRORS, AsyncClient, Server, retry_forever
from framework.groups import ensure_groups, is_missing_group, is_unblocked
from framework.specs import PipelineSpec, StageSpec
from framework.wire import decode_flat_entry, raw_read_entries
from framework.worker.backpressure import Gate
from framework.worker.channels import Channel
from framework.worker.holdings import Holdings
from framework.worker.leases import reclaim

READ_BLOCK_MS = 500  # how long a read waits for work; also bounds how late a stop is noticed


class Reader:
    def __init__(
        self,
        pipeline: PipelineSpec,
        stage: StageSpec,
        client: AsyncClient,
        server: Server,
        channel: Channel,
        consumer: str,
        holdings: Holdings,
        gate: Gate,
        log: FilteringBoundLogger,
    ) -> None:
        self.pipeline, self.stage, self.client, self.server = pipeline, stage, client, server
        self._channel, self.consumer = channel, consumer
        self.holdings, self.gate, self.log = holdings, gate, log

    async def run(self, stopping: asyncio.Event) -> None:
        """Until `stopping` is set."""
        cursor, next_reclaim, delay = "0-0", 0.0, 0.05
        holdings = self.holdings
        while not stopping.is_set():
            room = holdings.room()
            if room <= 0:
                await holdings.room_made(READ_BLOCK_MS / 1000)
                continue
            try:
                if not await self.gate.wait_open(stopping):
                    break
                downstream = self.gate.room(len(holdings))
                if downstream is not None:
                    room = min(room, max(downstream, 1))  # one at least: the gate is open
                if time.monotonic() >= next_reclaim:
                    cursor, claimed = await self._reclaim(cursor, room)
                    if cursor == "0-0" or not claimed:
                        next_reclaim = time.monotonic() + self.stage.lease.total_seconds() / 4
                    room -= claimed
                    if room <= 0:
                        continue
                read = await self._read(room)
                delay = 0.05
            except TRANSIENT_ERRORS as error:
                delay = await self._wait_out(error, delay)
                continue
            except ResponseError as error:
                if is_unblocked(error):  # the key moved to another cluster node, or was deleted
                    delay = await self._wait_out(error, delay)
                    continue
                if not is_missing_group(error):
                    raise
                self.log.warning("group_missing_recreating", error=str(error))
                await retry_forever(
                    lambda: ensure_groups(self.client, self.pipeline), self._redis_down
                )
                continue
            if read:
                # Two turns of the loop before the next read: a runner's, then the committer's.
                # A call that finishes at once then has its commit sent before the next read
                # is, which takes a command's send off each stage's path; under load this is
                # two loop turns per read.
                await asyncio.sleep(0)
                await asyncio.sleep(0)

    async def _reclaim(self, cursor: str, room: int) -> tuple[str, int]:
        stage = self.stage
        cursor, claimed = await reclaim(
            self.client,
            self.server,
            stage.input_stream,
            stage.name,
            self.consumer,
            stage.lease,
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
        self.holdings.accept(claimed)
        return cursor, len(claimed)

    async def _read(self, room: int) -> int:
        reply = await self._channel.execute(
            *("XREADGROUP", "GROUP", self.stage.name, self.consumer, "COUNT", room),
            *("BLOCK", READ_BLOCK_MS, "STREAMS", self.stage.input_stream, ">"),
        )
        entries = raw_read_entries(reply)
        if entries:
            self.holdings.accept(
                [decode_flat_entry(message_id, flat) for message_id, flat in entries]
            )
        return len(entries)

    async def _wait_out(self, error: BaseException, delay: float) -> float:
        self._redis_down(error, delay)
        await asyncio.sleep(delay)
        return min(delay * 2, 5.0)

    def _redis_down(self, error: BaseException, delay: float) -> None:
        self.log.warning("redis_unavailable", error=str(error), retry_in_s=round(delay, 2))
