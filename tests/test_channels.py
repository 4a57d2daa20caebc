"""A worker's channels (its own connections for XREADGROUP and commits): raw replies, and in
step again after the connection is lost or a command is cancelled on its way."""

from __future__ import annotations

import asyncio
import socket

import pytest
import redis
from servers import RedisServer

from framework.wire import raw_read_entries
from framework.worker.channels import open_channel


async def test_replies_come_back_as_hiredis_parsed_them(
    redis_server: RedisServer, pipeline_name: str
) -> None:
    stream = f"{{{pipeline_name}}}:input"
    channel = await open_channel(redis_server.url)
    try:
        await channel.execute("XGROUP", "CREATE", stream, "g", "0", "MKSTREAM")
        entry_id = await channel.execute("XADD", stream, "*", "data", "{}")
        reply = await channel.execute("XREADGROUP", "GROUP", "g", "c", "STREAMS", stream, ">")
        # RESP2, whatever redis-py's default: a list of [stream, entries], not RESP3's map.
        assert reply == [[stream.encode(), [[entry_id, [b"data", b"{}"]]]]]
        hello = await channel.execute("HELLO")
        assert dict(zip(hello[::2], hello[1::2], strict=True))[b"proto"] == 2
        # Each entry is a list as hiredis parsed it, typed as the pair it unpacks like.
        assert [[id_, fields] for id_, fields in raw_read_entries(reply)] == [
            [entry_id, [b"data", b"{}"]]
        ]
        assert await channel.execute("XACK", stream, "g", entry_id) == 1
    finally:
        await channel.aclose()
        with redis_server.client() as client:
            client.delete(stream)


async def test_an_error_reply_leaves_the_connection_in_step(redis_server: RedisServer) -> None:
    channel = await open_channel(redis_server.url)
    try:
        before = await channel.execute("CLIENT", "ID")
        with pytest.raises(redis.ResponseError):
            await channel.execute("NO-SUCH-COMMAND")
        assert await channel.execute("CLIENT", "ID") == before
    finally:
        await channel.aclose()


async def test_a_lost_connection_fails_one_command_and_the_next_reconnects(
    redis_server: RedisServer,
) -> None:
    channel = await open_channel(redis_server.url)
    try:
        first = await channel.execute("CLIENT", "ID")
        with redis_server.client() as client:
            client.client_kill_filter(_id=first)
        with pytest.raises(redis.ConnectionError):
            await channel.execute("PING")
        assert await channel.execute("CLIENT", "ID") != first
    finally:
        await channel.aclose()


async def test_a_command_cancelled_mid_wait_does_not_hand_its_reply_to_the_next(
    redis_server: RedisServer, pipeline_name: str
) -> None:
    stream = f"{{{pipeline_name}}}:input"
    channel = await open_channel(redis_server.url)
    try:
        await channel.execute("XGROUP", "CREATE", stream, "g", "$", "MKSTREAM")
        blocked = asyncio.ensure_future(
            channel.execute("XREADGROUP", "GROUP", "g", "c", "BLOCK", 300, "STREAMS", stream, ">")
        )
        await asyncio.sleep(0.05)
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        assert await channel.execute("ECHO", "mine") == b"mine"
    finally:
        await channel.aclose()
        with redis_server.client() as client:
            client.delete(stream)


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="TCP_USER_TIMEOUT is Linux's")
async def test_a_silent_network_is_given_up_on_by_keepalive_and_user_timeout(
    redis_server: RedisServer,
) -> None:
    """A channel has no read timeout; the socket options are what end a wait on a dead peer."""
    channel = await open_channel(redis_server.url)
    try:
        await channel.execute("PING")
        connection = channel._connection
        assert connection is not None
        assert connection._writer is not None
        sock = connection._writer.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 5
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 20_000
    finally:
        await channel.aclose()
