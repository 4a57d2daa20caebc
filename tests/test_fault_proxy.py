"""The fault proxy (tests/proxy.py, faults.py, resp.py) itself: invisible at rate 0, and each
fault lands on one definite command with the effect it promises, so chaos tests can take its
counters as the record of what Redis applied without the client hearing of it.

Against real servers of both supported versions. Clients here never retry on their own
(`through()` passes no-retry): `redis.Redis(host=..., port=...)` resends a command whose reply
was lost, up to ten times by default, which applies it again behind the test's back
(`test_redis_py_resends_a_command_whose_reply_was_lost_unless_told_not_to` shows it).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
from faults import Fault, only
from proxy import FaultProxy, ProxyFactory
from redis.backoff import NoBackoff
from redis.retry import Retry
from resp import Command, ProtocolError, read_command, read_reply
from servers import RedisServer, async_wait_until, wait_until

BIG = 5_000_000
# Nested arrays with a nil, an empty array and a status reply among the elements.
NESTED_SCRIPT = "return {1, {2, {3, 'x', false}}, 'y', {}, redis.status_reply('fine')}"
NESTED_REPLY = [1, [2, [3, b"x", None]], b"y", [], b"fine"]

Key = Callable[[str], str]


@pytest.fixture
def key(redis_server: RedisServer) -> Iterator[Key]:
    """`key("n")`: a key name of this test's own, in db 0; every such key is deleted after."""
    prefix = f"fault-proxy-test:{secrets.token_hex(4)}:"
    yield lambda name: prefix + name
    with redis_server.client() as direct:
        if found := list(direct.scan_iter(match=prefix + "*")):
            direct.delete(*found)


def through(proxy: FaultProxy, **options: Any) -> redis.Redis:
    """A sync client of the proxy that never retries: each fault surfaces exactly once."""
    options = {"socket_timeout": 5, **options}
    return redis.Redis.from_url(proxy.url, retry=Retry(NoBackoff(), 0), **options)


def async_through(proxy: FaultProxy, **options: Any) -> redis.asyncio.Redis:
    options = {"socket_timeout": 5, **options}
    no_retry = redis.asyncio.retry.Retry(NoBackoff(), 0)
    return redis.asyncio.Redis.from_url(proxy.url, retry=no_retry, **options)


def blocked_on(direct: redis.Redis, command: str) -> bool:
    """Some client of Redis is blocked in `command` (as CLIENT LIST spells it: 'xreadgroup')."""
    return any(c["cmd"] == command and "b" in c["flags"] for c in direct.client_list())


def named(direct: redis.Redis, name: str) -> int:
    return sum(c["name"] == name for c in direct.client_list())


# ---------------------------------------------------------------------------------------------
# Rate 0: what goes through is what Redis said
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3])
def test_at_rate_zero_a_sync_client_sees_redis_unchanged(
    redis_server: RedisServer, fault_proxy: ProxyFactory, key: Key, protocol: int
) -> None:
    proxy = fault_proxy(redis_server)
    big = os.urandom(BIG)  # random bytes hold CRLFs: framing must go by lengths
    with through(proxy, protocol=protocol) as client:
        assert client.set(key("s"), "v") is True
        assert client.get(key("s")) == b"v"
        assert client.get(key("missing")) is None
        assert client.hset(key("h"), mapping={"a": "1", "b": "2"}) == 2
        assert client.hgetall(key("h")) == {b"a": b"1", b"b": b"2"}
        with pytest.raises(redis.ResponseError, match="not an integer"):
            client.incr(key("s"))
        batch = client.pipeline(transaction=False)
        for _ in range(1000):
            batch.incr(key("n"))
        assert batch.execute() == list(range(1, 1001))
        assert client.set(key("big"), big) is True
        assert client.get(key("big")) == big
        assert client.eval(NESTED_SCRIPT, 0) == NESTED_REPLY
    stats = proxy.stats()
    assert stats.forwarded["INCRBY"] == 1001
    assert not stats.injected


async def test_at_rate_zero_an_async_client_sees_redis_unchanged_and_blocking_reads_wait(
    redis_server: RedisServer, fault_proxy: ProxyFactory, key: Key
) -> None:
    proxy = fault_proxy(redis_server)
    big = os.urandom(BIG)
    stream = key("stream")
    client = async_through(proxy, protocol=2)
    try:
        assert await client.set(key("s"), "v") is True
        assert await client.get(key("s")) == b"v"
        async with client.pipeline(transaction=False) as batch:
            for _ in range(1000):
                batch.incr(key("n"))
            assert await batch.execute() == list(range(1, 1001))
        assert await client.set(key("big"), big) is True
        assert await client.get(key("big")) == big
        assert await client.eval(NESTED_SCRIPT, 0) == NESTED_REPLY

        with redis_server.client() as direct:
            direct.xgroup_create(stream, "g", id="$", mkstream=True)
            assert not await client.xreadgroup("g", "c", {stream: ">"}, block=100)  # times out
            group_read = asyncio.ensure_future(
                client.xreadgroup("g", "c", {stream: ">"}, block=5000)
            )
            await async_wait_until(lambda: blocked_on(direct, "xreadgroup"), what="XREADGROUP")
            first = direct.xadd(stream, {"f": "1"})
            assert await group_read == [[stream.encode(), [(first, {b"f": b"1"})]]]

            plain_read = asyncio.ensure_future(client.xread({stream: "$"}, block=5000))
            await async_wait_until(lambda: blocked_on(direct, "xread"), what="XREAD BLOCK")
            second = direct.xadd(stream, {"f": "2"})
            assert await plain_read == [[stream.encode(), [(second, {b"f": b"2"})]]]
    finally:
        await client.aclose()
    assert not proxy.stats().injected


def test_raw_inline_and_byte_by_byte_commands_get_one_reply_each(
    redis_server: RedisServer, fault_proxy: ProxyFactory, key: Key
) -> None:
    """Inline commands, blank lines and `*0` (Redis answers neither), sent a byte per write."""
    proxy = fault_proxy(redis_server)
    name = key("k").encode()
    get = b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(name), name)
    sent = b"PING\r\n\r\n*0\r\nSET " + name + b" v\r\n" + get + get
    expected = b"+PONG\r\n+OK\r\n$1\r\nv\r\n$1\r\nv\r\n"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in sent:
            raw.sendall(bytes([byte]))
        received = b""
        while len(received) < len(expected) and (chunk := raw.recv(1024)):
            received += chunk
    assert received == expected


def test_redis_closing_a_connection_closes_its_client_at_once(
    redis_server: RedisServer, fault_proxy: ProxyFactory
) -> None:
    """Between commands too: the client sees the end as it would without the proxy."""
    proxy = fault_proxy(redis_server)
    name = f"fault-proxy-{secrets.token_hex(3)}"
    with (
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as raw,
        redis_server.client() as direct,
    ):
        raw.sendall(f"CLIENT SETNAME {name}\r\n".encode())
        assert raw.recv(100) == b"+OK\r\n"
        (upstream,) = [c["id"] for c in direct.client_list() if c["name"] == name]
        assert direct.client_kill_filter(_id=upstream) == 1
        assert raw.recv(100) == b""
    wait_until(lambda: proxy.open_connections == 0, what="the proxy to forget the link")


async def test_resp3_pushes_are_relayed_as_they_come(
    redis_server: RedisServer, fault_proxy: ProxyFactory, key: Key
) -> None:
    """A client-side caching invalidation answers no command: it goes straight through."""
    proxy = fault_proxy(redis_server)
    name = key("cached").encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(b"HELLO 3\r\nCLIENT TRACKING ON\r\nGET " + name + b"\r\n")
        assert (await read_reply(reader)).startswith(b"%")  # HELLO's map
        assert await read_reply(reader) == b"+OK\r\n"
        assert await read_reply(reader) == b"_\r\n"  # RESP3's null
        with redis_server.client() as direct:
            direct.set(name, "v")
        invalidation = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$%d\r\n%s\r\n" % (len(name), name)
        assert await asyncio.wait_for(read_reply(reader), 5) == invalidation
        writer.write(b"PING\r\n")
        assert await read_reply(reader) == b"+PONG\r\n"
    finally:
        writer.close()
        await writer.wait_closed()


# ---------------------------------------------------------------------------------------------
# Faults: each on one definite command, with the effect it promises
# ---------------------------------------------------------------------------------------------

FAULTS_APPLIED = [(Fault.DROP_REPLY, True), (Fault.DROP_REQUEST, False), (Fault.CUT_REPLY, True)]


@pytest.mark.parametrize(("fault", "applied"), FAULTS_APPLIED)
def test_a_fault_loses_the_connection_with_the_command_applied_or_not(
    redis_server: RedisServer, fault_proxy: ProxyFactory, key: Key, fault: Fault, applied: bool
) -> None:
    proxy = fault_proxy(redis_server, rate=1.0, kinds={fault}, applies_to=only("SET"))
    with through(proxy) as client, redis_server.client() as direct:
        assert client.get(key("k")) is None  # connection set-up and GET pass: only SET faults
        with pytest.raises(redis.ConnectionError):
            client.set(key("k"), "v")
        assert (direct.get(key("k")) == b"v") is applied
        proxy.configure(rate=0.0)  # from this thread, while the proxy runs
        assert client.set(key("k"), "w") is True  # on a new connection
    stats = proxy.stats()
    assert stats.injected == Counter({(fault, "SET"): 1})
    assert stats.forwarded["SET"] == 1 + applied


@pytest.mark.parametrize("protocol", [2, 3])
def test_a_cut_reply_is_an_error_never_a_wrong_value(
    redis_server: RedisServer, fault_proxy: ProxyFactory, key: Key, protocol: int
) -> None:
    """Replies of every shape, cut at random points: each an error, none a hang."""
    proxy = fault_proxy(redis_server, seed=1)
    with redis_server.client() as direct:
        direct.set(key("big"), os.urandom(BIG))
        direct.hset(key("h"), mapping={"a": "1", "b": "2"})
    calls: dict[str, Callable[[redis.Redis], object]] = {
        "GET": lambda client: client.get(key("big")),  # a 5 MB bulk string, or a nil below
        "HGETALL": lambda client: client.hgetall(key("h")),  # a map in RESP3
        "INCRBY": lambda client: client.incr(key("n")),
        "EVAL": lambda client: client.eval(NESTED_SCRIPT, 0),
        "DEL": lambda client: client.delete(key("missing")),
    }
    started = time.monotonic()
    with through(proxy, protocol=protocol) as client:
        for command, call in calls.items():
            proxy.configure(rate=1.0, kinds={Fault.CUT_REPLY}, applies_to=only(command))
            for _ in range(8):
                with pytest.raises(redis.ConnectionError):
                    call(client)
    assert time.monotonic() - started < 5
    assert proxy.stats().faults == Counter({Fault.CUT_REPLY: 8 * len(calls)})


@pytest.mark.parametrize(("fault", "applied"), FAULTS_APPLIED)
def test_in_a_pipelined_batch_the_fault_lands_on_one_command(
    redis_server: RedisServer, fault_proxy: ProxyFactory, key: Key, fault: Fault, applied: bool
) -> None:
    """Every command before the faulted one applied, none after it: commands go in order."""
    proxy = fault_proxy(redis_server, rate=1.0, kinds={fault}, applies_to=only("INCRBY"))
    before = [key(f"before:{index}") for index in range(50)]
    after = [key(f"after:{index}") for index in range(50)]
    with through(proxy) as client, redis_server.client() as direct:
        batch = client.pipeline(transaction=False)
        for name in before:
            batch.set(name, 1)
        batch.incr(key("n"))
        for name in after:
            batch.set(name, 1)
        with pytest.raises(redis.ConnectionError):
            batch.execute()
        assert direct.exists(*before) == len(before)
        assert direct.get(key("n")) == (b"1" if applied else None)
        assert direct.exists(*after) == 0
    assert proxy.stats().forwarded["SET"] == len(before)


@pytest.mark.parametrize("fault", list(Fault))
def test_the_replies_before_a_fault_arrive_then_the_connection_ends(
    redis_server: RedisServer, fault_proxy: ProxyFactory, key: Key, fault: Fault
) -> None:
    """Byte for byte: what a client that pipelined PING, PING, INCR reads before the end."""
    proxy = fault_proxy(redis_server, rate=1.0, kinds={fault}, applies_to=only("INCR"))
    received = b""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as raw:
        raw.sendall(f"PING\r\nPING\r\nINCR {key('n')}\r\nPING\r\n".encode())
        while chunk := raw.recv(1024):
            received += chunk
    pongs, rest = received[:14], received[14:]
    assert pongs == b"+PONG\r\n+PONG\r\n"
    if fault is Fault.CUT_REPLY:
        assert rest in {b":", b":1", b":1\r"}  # a strict prefix of ":1\r\n", never empty
    else:
        assert rest == b""


def increment_until_acknowledged(client: redis.Redis, name: str) -> tuple[int, int]:
    """INCR until a reply comes back: (the value acknowledged, the errors on the way)."""
    errors = 0
    while True:
        try:
            return client.incr(name), errors
        except redis.ConnectionError:
            errors += 1


async def async_increment_until_acknowledged(
    client: redis.asyncio.Redis, name: str
) -> tuple[int, int]:
    errors = 0
    while True:
        try:
            return await client.incr(name), errors
        except redis.ConnectionError:
            errors += 1


INCREMENTS = 1500


def test_at_a_moderate_rate_the_counters_account_for_every_applied_command(
    redis_server: RedisServer, fault_proxy: ProxyFactory, key: Key
) -> None:
    """Each increment retried until acknowledged: what Redis applied beyond the acknowledged
    ones is exactly the INCRs whose reply was dropped or cut; each fault is one client error.
    Faults hit every command, connection set-up included (RESP2, as the engine's clients)."""
    proxy = fault_proxy(redis_server, rate=0.05, seed=7)
    errors = 0
    with through(proxy, protocol=2) as client:
        for _ in range(INCREMENTS):
            last, failed = increment_until_acknowledged(client, key("n"))
            errors += failed
    stats = proxy.stats()
    unheard = stats.injected[Fault.DROP_REPLY, "INCRBY"] + stats.injected[Fault.CUT_REPLY, "INCRBY"]
    assert last == INCREMENTS + unheard > INCREMENTS
    with redis_server.client() as direct:
        assert int(direct.get(key("n")) or 0) == last
    assert errors == stats.faults.total()
    assert all(stats.faults[kind] > 0 for kind in Fault)
    assert stats.faults_by_command["CLIENT SETINFO"] > 0


async def test_at_a_moderate_rate_an_async_resp3_client_is_accounted_for_too(
    redis_server: RedisServer, fault_proxy: ProxyFactory, key: Key
) -> None:
    """The same on another event loop, in RESP3 (redis-py's default: HELLO 3 on each connect)."""
    proxy = fault_proxy(redis_server, rate=0.05, seed=8)
    errors = 0
    client = async_through(proxy, protocol=3)
    try:
        for _ in range(INCREMENTS):
            last, failed = await async_increment_until_acknowledged(client, key("n"))
            errors += failed
    finally:
        await client.aclose()
    stats = proxy.stats()
    unheard = stats.injected[Fault.DROP_REPLY, "INCRBY"] + stats.injected[Fault.CUT_REPLY, "INCRBY"]
    assert last == INCREMENTS + unheard > INCREMENTS
    assert errors == stats.faults.total()
    assert stats.faults_by_command["HELLO"] > 0


def test_a_seed_repeats_the_same_faults_on_the_same_commands(
    redis_server: RedisServer, fault_proxy: ProxyFactory, key: Key
) -> None:
    proxy = fault_proxy(redis_server, rate=0.2, kinds={Fault.DROP_REPLY: 2, Fault.DROP_REQUEST: 1})

    def run(seed: int) -> tuple[list[int], Counter[tuple[Fault, str]]]:
        proxy.configure(seed=seed)
        before = proxy.stats().injected
        with through(proxy, protocol=2) as client:  # a new client: the same handshakes
            errors = [increment_until_acknowledged(client, key("n"))[1] for _ in range(100)]
        return errors, proxy.stats().injected - before

    first = run(1)
    assert first == run(1)
    assert first != run(2)
    assert sum(first[0]) > 0
    assert not proxy.stats().faults[Fault.CUT_REPLY]  # not among the kinds


def test_redis_py_resends_a_command_whose_reply_was_lost_unless_told_not_to(
    redis_server: RedisServer, fault_proxy: ProxyFactory, key: Key
) -> None:
    """Why `through()` passes no-retry: `redis.Redis(host=, port=)` retries a ConnectionError
    (10 times, with backoff, in redis-py 8), so an INCR whose reply was lost is applied twice and
    no one hears of it. (`Redis.from_url` happens to default to no retry.)"""
    proxy = fault_proxy(
        redis_server, rate=0.1, seed=5, kinds={Fault.DROP_REPLY}, applies_to=only("INCRBY")
    )
    with redis.Redis(host="127.0.0.1", port=proxy.port) as client:
        for _ in range(100):
            client.incr(key("n"))  # not one error
    drops = proxy.stats().faults[Fault.DROP_REPLY]
    assert drops > 0
    with redis_server.client() as direct:
        assert direct.get(key("n")) == str(100 + drops).encode()


# ---------------------------------------------------------------------------------------------
# Cutting connections, stopping, settings
# ---------------------------------------------------------------------------------------------


def read_in_thread(client: redis.Redis, stream: str) -> tuple[threading.Thread, list[object]]:
    """XREAD BLOCK 0 (forever) from a thread; the list gets its result or its exception."""
    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.append(client.xread({stream: "$"}, block=0))
        except redis.RedisError as error:
            outcome.append(error)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, outcome


def test_disconnect_all_cuts_every_connection_and_keeps_listening(
    redis_server: RedisServer, fault_proxy: ProxyFactory, key: Key
) -> None:
    proxy = fault_proxy(redis_server)
    name = f"fault-proxy-{secrets.token_hex(3)}"
    with (
        through(proxy, client_name=name) as idle,
        through(proxy, client_name=name) as blocked,
        redis_server.client() as direct,
    ):
        assert idle.ping()
        reader, outcome = read_in_thread(blocked, key("stream"))
        wait_until(lambda: blocked_on(direct, "xread"), what="XREAD BLOCK 0 in Redis")
        assert proxy.disconnect_all() == 2
        reader.join(5)
        assert isinstance(outcome[0], redis.ConnectionError)
        wait_until(lambda: not named(direct, name), what="the proxy's upstream connections to go")
        assert idle.ping()  # redis-py replaces a pooled connection found closed: no error
        assert proxy.open_connections == 1


@pytest.mark.parametrize("fault", [None, Fault.DROP_REPLY])
def test_a_client_that_leaves_takes_its_upstream_connection_along(
    redis_server: RedisServer, fault_proxy: ProxyFactory, key: Key, fault: Fault | None
) -> None:
    """Even while the reply to its command is awaited, whether it would be dropped or not."""
    proxy = fault_proxy(redis_server)
    name = f"fault-proxy-{secrets.token_hex(3)}"
    with through(proxy, client_name=name, socket_timeout=0.1) as client:
        client.ping()
        if fault is not None:
            proxy.configure(rate=1.0, kinds={fault}, applies_to=only("XREAD"))
        with pytest.raises(redis.TimeoutError):  # redis-py closes the connection on a timeout
            client.xread({key("stream"): "$"}, block=0)
    with redis_server.client() as direct:
        wait_until(lambda: not named(direct, name), what="the upstream connection to go")
    wait_until(lambda: proxy.open_connections == 0, what="the proxy to forget the link")


def open_sockets() -> set[str]:
    """'socket:[inode]' for each socket this process holds (Linux)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own fd, closed by now
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts sockets in /proc")
def test_stop_closes_every_connection_and_leaves_no_thread_or_socket(
    redis_server: RedisServer, key: Key
) -> None:
    name = f"fault-proxy-{secrets.token_hex(3)}"
    sockets, threads = open_sockets(), set(threading.enumerate())
    proxy = FaultProxy(redis_server.url).start()
    with (
        through(proxy, client_name=name) as idle,
        through(proxy, client_name=name) as blocked,
        redis_server.client() as direct,
    ):
        assert idle.ping()
        reader, outcome = read_in_thread(blocked, key("stream"))
        wait_until(lambda: blocked_on(direct, "xread"), what="XREAD BLOCK 0 in Redis")
        proxy.stop()
        reader.join(5)
        assert isinstance(outcome[0], redis.ConnectionError)
        with pytest.raises(redis.ConnectionError):  # nothing listens any more
            idle.ping()
        wait_until(lambda: not named(direct, name), what="the proxy's upstream connections to go")
    assert set(threading.enumerate()) <= threads
    assert open_sockets() <= sockets

    with proxy, through(proxy) as again:  # starts again, on the same port
        assert again.ping()


def test_the_url_keeps_user_password_and_database(redis_server: RedisServer, key: Key) -> None:
    with FaultProxy(f"redis://user:secret@127.0.0.1:{redis_server.port}/3") as proxy:
        assert proxy.url == f"redis://user:secret@127.0.0.1:{proxy.port}/3"
    with FaultProxy(redis_server.url + "/2") as proxy, through(proxy) as client:
        client.set(key("db"), "2")
    with redis_server.client(db=2) as direct:
        assert direct.get(key("db")) == b"2"
        direct.delete(key("db"))


def test_settings_are_checked_and_names_matched_by_family() -> None:
    for url in ("rediss://127.0.0.1:7000", "unix:///tmp/redis.sock", "127.0.0.1:7000"):
        with pytest.raises(ValueError, match="redis://"):
            FaultProxy(url)
    proxy = FaultProxy("redis://127.0.0.1:7000")
    with pytest.raises(ValueError, match="rate"):
        proxy.configure(rate=1.5)
    with pytest.raises(ValueError, match="negative"):
        proxy.configure(kinds={Fault.DROP_REPLY: -1.0})
    with pytest.raises(ValueError, match="kind"):
        proxy.configure(rate=0.5, kinds=set())
    with pytest.raises(RuntimeError, match="not started"):
        _ = proxy.url
    with pytest.raises(RuntimeError, match="not running"):
        proxy.disconnect_all()
    matches = only("EVALSHA", "xgroup")
    assert all(map(matches, ["EVALSHA", "XGROUP CREATE", "XGROUP CREATECONSUMER"]))
    assert not any(map(matches, ["EVAL", "XINFO GROUPS", "XGROUPS"]))


# ---------------------------------------------------------------------------------------------
# RESP framing (resp.py), fed a byte at a time
# ---------------------------------------------------------------------------------------------

REPLIES = [
    b"+OK\r\n",
    b"-ERR wrong\r\n",
    b":-42\r\n",
    b"$-1\r\n",
    b"$0\r\n\r\n",
    b"$4\r\na\r\nb\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"*3\r\n:1\r\n*2\r\n$1\r\nx\r\n*-1\r\n-ERR in an array\r\n",
    b"*1\r\n" * 5000 + b":1\r\n",  # deeper than Python's recursion limit
    # RESP3: null, boolean, double, big number, blob error, verbatim, map, set, push, attribute
    b"_\r\n",
    b"#t\r\n",
    b",3.14\r\n",
    b"(12345678901234567890\r\n",
    b"!5\r\nERR x\r\n",
    b"=7\r\ntxt:abc\r\n",
    b"%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n_\r\n",
    b"~2\r\n:1\r\n:2\r\n",
    b">2\r\n+message\r\n$1\r\nx\r\n",
    b"|1\r\n+ttl\r\n:5\r\n$1\r\nv\r\n",
]


async def feed_slowly(reader: asyncio.StreamReader, data: bytes) -> None:
    for index in range(len(data)):
        reader.feed_data(data[index : index + 1])
        await asyncio.sleep(0)  # let the parser run on each partial read


@pytest.mark.parametrize("reply", REPLIES, ids=lambda reply: repr(reply[:12]))
async def test_read_reply_frames_each_type_whole_and_no_further(reply: bytes) -> None:
    reader = asyncio.StreamReader()
    framed = asyncio.create_task(read_reply(reader))
    await feed_slowly(reader, reply + b"+next\r\n")
    assert await framed == reply
    assert await read_reply(reader) == b"+next\r\n"


async def test_read_reply_refuses_what_is_not_resp() -> None:
    for garbage in (b"?what\r\n", b"$x\r\n", b"$3\r\nabcde\r\n"):
        reader = asyncio.StreamReader()
        reader.feed_data(garbage)
        with pytest.raises(ProtocolError):
            await read_reply(reader)


async def test_read_command_frames_arrays_and_inline_commands_and_names_them() -> None:
    array = b"*4\r\n$6\r\nXGROUP\r\n$6\r\ncreate\r\n$1\r\ns\r\n$1\r\ng\r\n"
    reader = asyncio.StreamReader()
    feeding = asyncio.create_task(feed_slowly(reader, array + b"client setinfo lib-name x\r\n"))
    assert await read_command(reader) == Command(array, "XGROUP CREATE")
    assert await read_command(reader) == Command(b"client setinfo lib-name x\r\n", "CLIENT SETINFO")
    await feeding
    reader.feed_data(b"\r\n*0\r\nget k\n")
    reader.feed_eof()
    assert await read_command(reader) == Command(b"", "")
    assert await read_command(reader) == Command(b"", "")
    assert await read_command(reader) == Command(b"get k\n", "GET")
    assert await read_command(reader) is None  # the end, between commands


async def test_read_command_refuses_a_broken_command() -> None:
    for broken in (b"*1\r\n:1\r\n", b"*1\r\n$-1\r\n", b"*x\r\n"):
        reader = asyncio.StreamReader()
        reader.feed_data(broken)
        with pytest.raises(ProtocolError):
            await read_command(reader)
    reader = asyncio.StreamReader()
    reader.feed_data(b"*2\r\n$3\r\nGET\r\n")
    reader.feed_eof()
    with pytest.raises(asyncio.IncompleteReadError):
        await read_command(reader)
