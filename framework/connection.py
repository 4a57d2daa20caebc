"""Redis clients from a URL: standalone, Redis Cluster (detected) and TLS (`rediss://`).

The engine retries on its own terms (log, back off, carry on), so the clients made here do not
retry commands behind its back: a blind resend of XADD would break exactly-once handoff.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import hiredis
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
import structlog
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError
from redis.exceptions import TimeoutError as RedisTimeoutError

from framework.errors import ConfigError, RedisUnavailable
from framework.redact import redact

log = structlog.get_logger()

AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
SyncClient = redis.Redis | redis.cluster.RedisCluster

# Replies that mean "not now" rather than "never": memory at maxmemory, a replica being
# promoted, a cluster slot on the move (redis-py's cluster client gives up with ClusterError
# after too many redirections). A script refused for them ran nothing (the check comes before
# its first write), so running it again is safe.
BUSY_SERVER_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterError,  # ClusterDownError, MasterDownError, "TTL exhausted"
    redis.exceptions.SlotNotCoveredError,  # a cluster failover under way
)
# What a lost connection or a busy server looks like; everything else is a real error.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
    *BUSY_SERVER_ERRORS,
)
# Anything Redis or the way to it can raise: what best-effort work (housekeeping, the lease
# heartbeat) outlives.
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    *TRANSIENT_ERRORS,
    redis.exceptions.RedisError,
    redis.exceptions.RedisClusterException,  # not a RedisError
)
# What makes the first contact fail: the server is away, or refuses us (auth, TLS, protocol).
UNREACHABLE = REDIS_ERRORS
# Refusals that look like a lost connection to redis-py (AuthenticationError is a
# ConnectionError) but that no wait will cure: never retried, at start-up least of all.
WRONG_CREDENTIALS: tuple[type[BaseException], ...] = (
    redis.exceptions.AuthenticationError,
    redis.exceptions.AuthenticationWrongNumberOfArgsError,
)

# Blocking reads wait at most a second, so a socket silent for much longer is a dead peer.
SOCKET_TIMEOUT = 15.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Server:
    """What the engine needs to know of the server it talks to."""

    version: tuple[int, ...]
    cluster: bool

    @property
    def has_autoclaim(self) -> bool:
        return self.version >= (6, 2)

    @property
    def has_lag(self) -> bool:
        return self.version >= (7, 0)


class _PackedByHiredis:
    """Commands packed by hiredis in C. redis-py's asyncio connections pack every argument in
    Python, which for a commit (four arguments per message) cost more than the rest of the
    worker's work on that message; its blocking client already packs this way."""

    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0]
        if (" " if isinstance(name, str) else b" ") in name:  # "XINFO GROUPS": sent apart
            args = (*name.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as error:
            raise DataError(str(error)) from None


class FastConnection(_PackedByHiredis, Connection):
    pass


class FastSSLConnection(_PackedByHiredis, SSLConnection):
    pass


class FastUnixDomainSocketConnection(_PackedByHiredis, UnixDomainSocketConnection):
    pass


_FAST: dict[type, type] = {
    Connection: FastConnection,
    SSLConnection: FastSSLConnection,
    UnixDomainSocketConnection: FastUnixDomainSocketConnection,
}


def _pack_with_hiredis(client: redis.asyncio.Redis) -> None:
    """Swap in the hiredis-packing twin of the connection class the URL chose (TCP, TLS or a
    unix socket); before the first command, so that every connection of the pool has it."""
    pool = client.connection_pool
    pool.connection_class = _FAST.get(pool.connection_class, pool.connection_class)


def _options(
    url: str, socket_timeout: float | None = SOCKET_TIMEOUT, keepalive: dict[int, int] | None = None
) -> dict[str, Any]:
    options: dict[str, Any] = {
        # RESP2 whatever redis-py's default (8.x speaks RESP3 unless told): the replies the
        # engine reads raw keep one shape, and proxies that only speak RESP2 work too.
        "protocol": 2,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 0,
    }
    if not url.lower().startswith("unix:"):  # TCP keepalive: a unix socket has no such options
        options["socket_keepalive"] = True
        if keepalive:
            options["socket_keepalive_options"] = keepalive
    return options


def _describe(url: str) -> str:
    """The URL without its password (user info or `?password=`), for error messages and logs."""
    return redact(url)


# Connections a client opens at most, and how long a command waits for one to be free before
# it counts as Redis being unreachable (transient: the callers retry, the API answers 503).
# redis-py's own pool refuses the 101st concurrent command ("Too many connections") instead.
MAX_CONNECTIONS = 100
POOL_WAIT = 10.0


def _plain_client(
    url: str,
    socket_timeout: float | None,
    keepalive: dict[int, int] | None,
    max_connections: int | None,
) -> redis.asyncio.Redis:
    options = _options(url, socket_timeout, keepalive)
    retry = redis.asyncio.retry.Retry(NoBackoff(), 0)
    # A burst of concurrent commands (the HTTP API's requests, many runners) queues for a
    # connection instead of failing or opening one each.
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections or MAX_CONNECTIONS,
        timeout=POOL_WAIT,
        retry=retry,
        **options,
    )
    client = redis.asyncio.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # aclose() closes the pool, as from_url's does
    return client


async def connect(
    url: str,
    socket_timeout: float | None = SOCKET_TIMEOUT,
    keepalive: dict[int, int] | None = None,
    max_connections: int | None = None,
    wait: float = 0.0,
) -> tuple[AsyncClient, Server]:
    """An async client for `url`, switching to the cluster client when the server is one;
    with `max_connections`, commands beyond it wait for a connection to be free.

    A server that cannot be reached (or whose reply is lost) is tried again for up to `wait`
    seconds, as a running worker would wait; wrong credentials are one line at once.
    """
    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        try:
            return await _connect_once(url, socket_timeout, keepalive, max_connections)
        except TRANSIENT_ERRORS as error:
            if isinstance(error, WRONG_CREDENTIALS):
                raise RedisUnavailable(
                    f"Redis at {_describe(url)} refused the credentials: {error}; check the "
                    "user name and password in the URL"
                ) from None
            left = deadline - time.monotonic()
            if left <= 0:
                waited = f" (waited {wait:g}s)" if wait else ""
                raise RedisUnavailable(
                    f"cannot reach Redis at {_describe(url)}{waited}: {error}"
                ) from None
            log.info("waiting_for_redis", error=str(error), retry_in_s=round(delay, 2))
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 2.0)
        except REDIS_ERRORS as error:  # a refusal: TLS, protocol, a user without INFO
            raise RedisUnavailable(f"Redis at {_describe(url)} refused us: {error}") from None


async def _connect_once(
    url: str,
    socket_timeout: float | None,
    keepalive: dict[int, int] | None,
    max_connections: int | None,
) -> tuple[AsyncClient, Server]:
    plain = _plain_client(url, socket_timeout, keepalive, max_connections)
    _pack_with_hiredis(plain)
    _refuse_reply_options(plain.connection_pool.connection_kwargs, url)
    try:
        info = await plain.info()  # server, replication and cluster, in one round trip
    except BaseException:
        await plain.aclose()
        raise
    cluster = info.get("cluster_enabled") == 1
    if info.get("role") == "slave" and not cluster:  # writes refused READONLY, and retried for
        # ever; a cluster client finds the primaries from any node, a replica's too
        await plain.aclose()
        raise RedisUnavailable(
            f"Redis at {_describe(url)} is a replica (read-only): point redis.url at the primary"
        )
    server = Server(_parse_version(str(info.get("redis_version", "0"))), cluster)
    if not cluster:
        return plain, server
    await plain.aclose()
    client = redis.asyncio.cluster.RedisCluster.from_url(
        url, **_options(url), max_connections=max_connections or MAX_CONNECTIONS
    )
    try:
        await client.initialize()
    except BaseException:
        await client.aclose()
        raise
    return client, server


def _refuse_reply_options(options: dict[str, Any], url: str) -> None:
    """The engine reads raw RESP2 replies (bytes); URL options that change them would break it."""
    if options.get("decode_responses") or str(options.get("protocol", "2")) == "3":
        raise ConfigError(
            "redis.url",
            "",
            f"{_describe(url)}: remove decode_responses/protocol from the URL; "
            "the framework decodes replies itself",
        )


def leave_unparsed(client: AsyncClient, command: str) -> None:
    """Have redis-py hand back `command`'s replies as hiredis parsed them."""
    client.set_response_callback(command, _unparsed)


def _unparsed(response: Any, **options: Any) -> Any:
    return response


def connect_sync(url: str, server: Server) -> SyncClient:
    """A blocking client for threads that must work while the event loop is busy."""
    if server.cluster:
        return redis.cluster.RedisCluster.from_url(url, **_options(url))
    return redis.Redis.from_url(url, retry=redis.retry.Retry(NoBackoff(), 0), **_options(url))


def _parse_version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


async def retry_forever(
    attempt: Callable[[], Awaitable[T]], on_error: Callable[[BaseException, float], None]
) -> T:
    """Run `attempt` until it succeeds, backing off on lost connections.

    Used where giving up would cost more than waiting: an unacknowledged commit re-runs a stage.
    Raises `asyncio.CancelledError` only if cancelled; other Redis errors propagate.
    """
    return await retry_until(attempt, on_error, None)


async def retry_until(
    attempt: Callable[[], Awaitable[T]],
    on_error: Callable[[BaseException, float], None],
    deadline: float | None,
) -> T:
    """Run `attempt` until it succeeds, backing off on lost connections and busy servers,
    until `deadline` (time.monotonic(); None: for ever), after which the last such error is
    raised. Other errors, wrong credentials among them, propagate at once."""
    delay = 0.05
    while True:
        try:
            return await attempt()
        except TRANSIENT_ERRORS as error:
            if isinstance(error, WRONG_CREDENTIALS):
                raise
            if deadline is not None and time.monotonic() + delay > deadline:
                raise
            on_error(error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
