"""Redis 6.0 (Azure Cache for Redis Basic/Standard/Premium) has no XAUTOCLAIM: the engine
reclaims with XPENDING + XCLAIM there. No 6.0 binary is at hand, so the 6.0 path is driven on
both real servers we have by telling the engine it talks to 6.0."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from servers import RedisServer

from framework.connection import Server, connect
from framework.worker.leases import reclaim


async def test_reclaim_without_xautoclaim_takes_idle_messages_with_their_delivery_count(
    redis_server: RedisServer, pipeline_name: str
) -> None:
    client, _ = await connect(redis_server.url)
    stream = f"{{{pipeline_name}}}:input"
    try:
        await client.xgroup_create(stream, "only", id="0", mkstream=True)
        await client.xadd(stream, {"job": "a", "data": '{"n": 1}'})
        await client.xadd(stream, {"job": "b", "data": '{"n": 2}'})
        await client.xreadgroup("only", "dead-worker", {stream: ">"})
        await asyncio.sleep(0.05)  # the first two go idle for longer than the 40 ms lease
        fresh = await client.xadd(stream, {"job": "c", "data": '{"n": 3}'})
        await client.xreadgroup("only", "live-worker", {stream: ">"})
        old_server = Server(version=(6, 0, 9), cluster=False)
        _, claimed = await reclaim(
            client, old_server, stream, "only", "rescuer", timedelta(milliseconds=40), "0-0", 10
        )
        assert [d.job for d in claimed] == ["a", "b"]
        assert [d.attempt for d in claimed] == [2, 2], "the lost delivery counts"
        pending = await client.xpending_range(stream, "only", "-", "+", 10)
        owners = {p["message_id"]: p["consumer"] for p in pending}
        assert owners[fresh] == b"live-worker", "a message not idle for the lease stays put"
        assert sorted(set(owners.values())) == [b"live-worker", b"rescuer"]
    finally:
        await client.delete(stream)
        await client.aclose()
