"""Channel: one connection held by one task of a worker for its hot commands (the reader's
XREADGROUP, the committer's commit.lua), sent without redis-py's per-command layers.

A command through the redis-py client costs about 170 us of CPU on a 2-core machine (pool,
retry, observability, a timeout context and a wait_for task per call); the same command on a
connection of its own costs about 45 us, and a worker sends two of them per batch, so this is
a fifth of the CPU a message costs and much of a stage's idle latency. What is left of
redis-py is the part worth having: connecting (TLS, AUTH, SELECT), hiredis parsing and the
error classes (NoScriptError, ResponseError, ConnectionError).

Such a connection has no read timeout: a reply is awaited for as long as the server takes
(XREADGROUP BLOCK answers within its block time), and a dead peer or a silent network is
found by TCP keepalive within about 11 s, or within 20 s while a command is unacknowledged.
On Redis Cluster, where commands go to the node that owns the slot, a channel sends through
the cluster client instead.
"""

from __future__ import annotations

import socket
from typing import Any

import hiredis
import redis.asyncio
import redis.asyncio.cluster
from redis.asyncio.connection import AbstractConnection

from framework.connection import AsyncClient, connect, leave_unparsed

# Probe after 5 s of silence, every 2 s, give up after 3 unanswered probes. Probes go only on
# an idle connection: a command whose bytes the peer never acknowledges is given up after 20 s
# (TCP_USER_TIMEOUT, ms) instead of the kernel's ~15 minutes of retransmission.
KEEPALIVE = {
    option: value
    for name, value in (
        ("TCP_KEEPIDLE", 5),
        ("TCP_KEEPINTVL", 2),
        ("TCP_KEEPCNT", 3),
        ("TCP_USER_TIMEOUT", 20_000),
    )
    if (option := getattr(socket, name, None)) is not None
}


class Channel:
    """Commands one at a time over a connection of its own; raw RESP2 replies (connections
    are opened with protocol 2, `connection._options`)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._connection: AbstractConnection | None = None
        # None on a cluster, known once: isinstance on the cluster client goes through typing's
        # Protocol checks, too slow for every command.
        self._pool: redis.asyncio.ConnectionPool | None = (
            None
            if isinstance(client, redis.asyncio.cluster.RedisCluster)
            else client.connection_pool
        )

    async def execute(self, *args: Any) -> Any:
        """Send one command and return its reply, unparsed (bytes, lists, ints, None)."""
        pool = self._pool
        if pool is None:
            return await self._client.execute_command(*args)
        connection = self._connection
        if connection is None:
            connection = self._connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.send_packed_command(hiredis.pack_command(args), check_health=False)
            return await connection.read_response()
        except redis.exceptions.ReadOnlyError:
            # A failover demoted this node (a name or address that now leads to the new
            # primary): the next command goes out on a fresh connection, as redis-py's Sentinel
            # connections do, and the pool's idle ones go too.
            self._connection = None
            await pool.release(connection)
            await pool.disconnect(inuse_connections=False)
            raise
        except redis.exceptions.ResponseError:
            raise  # the server answered: the connection is in step
        except BaseException:
            # Lost, or cancelled while a reply was on its way: the next command must not read
            # this one's reply, so start again on a fresh connection.
            self._connection = None
            await connection.disconnect()
            await pool.release(connection)
            raise

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self.execute("EVALSHA", sha, numkeys, *keys_and_args)

    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self.execute("EVAL", script, numkeys, *keys_and_args)

    async def aclose(self) -> None:
        if self._connection is not None and self._pool is not None:
            await self._pool.release(self._connection)
        self._connection = None
        await self._client.aclose()


async def open_channel(url: str, wait: float = 0.0) -> Channel:
    """A channel to `url`: no read timeout, keepalive probes; raw replies on a cluster too.
    An unreachable server is tried again for `wait` seconds (connection.connect)."""
    client, server = await connect(url, socket_timeout=None, keepalive=KEEPALIVE, wait=wait)
    if server.cluster:
        await client.aclose()
        client, _ = await connect(url, wait=wait)  # the cluster client keeps its timeouts
        leave_unparsed(client, "XREADGROUP")
    return Channel(client)
