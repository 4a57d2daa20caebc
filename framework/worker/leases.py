"""Leases on held messages: heartbeat (XCLAIM JUSTID) and reclaim of silent workers' messages.

The heartbeat runs in a thread with its own blocking connection, not on the event loop: a stage
that hogs the CPU, or a synchronous model call inside an `async def`, stalls the loop, and a
lease that lapsed then would let another worker run the same message a second time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import structlog

from framework import scripts
from framework.connection import REDIS_ERRORS, AsyncClient, Server, SyncClient
from framework.wire import Delivery, decode_entry, text

log = structlog.get_logger()

RENEW_CHUNK = 500


class LeaseKeeper:
    """Renews this consumer's held messages every `lease / 3`, from a thread of its own."""

    def __init__(
        self,
        client: SyncClient,
        stream: str,
        group: str,
        consumer: str,
        lease: timedelta,
        held: Callable[[], Iterable[str]],
        on_lost: Callable[[list[str]], None],
    ) -> None:
        self.client = client
        self.stream, self.group, self.consumer = stream, group, consumer
        self.interval = lease.total_seconds() / 3
        self.held = held
        self.on_lost = on_lost
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{consumer}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self.client.close()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            ids = list(self.held())
            try:
                lost = self.renew(ids)
            except REDIS_ERRORS as error:  # the heartbeat must outlive any reply: NOGROUP
                # after an empty restart (the worker makes the group again), a busy server
                log.warning("lease_renewal_failed", consumer=self.consumer, error=str(error))
                continue
            except Exception:  # a bug of ours: say so loudly, and keep the heartbeat going
                log.exception("lease_renewal_crashed", consumer=self.consumer)
                continue
            if lost:
                self.on_lost(lost)

    def renew(self, ids: list[str]) -> list[str]:
        """Renew `ids`; returns those no longer ours."""
        lost: list[str] = []
        renew = scripts.script(scripts.RENEW)
        for start in range(0, len(ids), RENEW_CHUNK):
            chunk = ids[start : start + RENEW_CHUNK]
            reply = renew.call_sync(self.client, [self.stream], [self.group, self.consumer, *chunk])
            lost.extend(text(message_id) for message_id in reply)
        return lost


async def reclaim(
    client: AsyncClient,
    server: Server,
    stream: str,
    group: str,
    consumer: str,
    lease: timedelta,
    cursor: str,
    count: int,
) -> tuple[str, list[Delivery]]:
    """Claim messages idle for at least `lease`; returns the next cursor and the deliveries."""
    min_idle = int(lease.total_seconds() * 1000)
    args: list[Any] = [group, consumer, min_idle, cursor, count, 1 if server.has_autoclaim else 0]
    reply = await scripts.script(scripts.RECLAIM)(client, [stream], args)
    next_cursor = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
    deliveries = []
    for message_id, run, flat in reply[1:]:
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        deliveries.append(decode_entry(message_id, fields, int(run), claimed=True))
    return next_cursor, deliveries


async def hand_back(
    client: AsyncClient,
    stream: str,
    group: str,
    consumer: str,
    held: list[Delivery],
    lease: timedelta,
    *,
    started: bool = False,
) -> int:
    """Make messages we will not run (on) claimable at once; one that never `started` does
    not count this delivery.

    One script call (`release.lua`) checks each is still ours, so a message another worker
    reclaimed meanwhile is never pulled back. Returns how many were handed back.
    """
    args: list[Any] = [group, consumer, int(lease.total_seconds() * 1000)]
    for delivery in held:
        count = delivery.deliveries if started else max(delivery.deliveries - 1, 0)
        args += [delivery.message_id, count]
    return len(await scripts.script(scripts.RELEASE)(client, [stream], args))


async def mark_started(
    client: AsyncClient, stream: str, group: str, consumer: str, claimed: list[Delivery]
) -> set[str]:
    """Count the runs of reclaimed messages that are about to start (reclaim.lua did not count
    their claim) with release.lua, setting each one's delivery count forward; returns the ids
    still ours. Awaited before the call: a run that kills its worker must have been counted,
    or a poison message would be run forever."""
    args: list[Any] = [group, consumer, 0]
    for delivery in claimed:
        args += [delivery.message_id, delivery.deliveries]
    reply = await scripts.script(scripts.RELEASE)(client, [stream], args)
    return {text(message_id) for message_id in reply}
