"""A TCP proxy in front of one redis-server that breaks the commands faults.py picks.

Why: the engine promises exactly-once hand-off over a network that can fail between "Redis
applied the command" and "the client heard so". Killing Redis cannot produce that moment on
demand; this proxy can. Each client connection gets an upstream connection of its own; its
commands are framed (resp.py) and handled strictly in order, so a fault lands on one definite
command: every command before it was applied and answered, none after it reached Redis. Either
connection closing closes the other, and so does each fault.

It runs its own event loop in a thread, so sync tests, async tests on their own loops and worker
subprocesses (given `.url`) can all go through it. Not for pub/sub, MONITOR or CLIENT REPLY OFF:
a reply to no command closes the connection. RESP3 pushes are relayed as they come.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Unpack
from urllib.parse import urlsplit, urlunsplit

from faults import Fault, FaultInjector, FaultOptions, FaultStats, Verdict
from resp import ProtocolError, read_command, read_reply

HOST = "127.0.0.1"
STREAM_LIMIT = 1 << 20  # longest header or inline line taken; values may be far larger
START_TIMEOUT = 5.0
STOP_TIMEOUT = 10.0
CLOSE_TIMEOUT = 1.0  # for a client to take the replies sent before a fault; then abort
PUSH = b">"  # RESP3's type byte for a message that answers no command


class Upstream(Protocol):
    """Anything with a redis:// URL, such as tests/servers.py's RedisServer."""

    @property
    def url(self) -> str: ...


class ProxyFactory(Protocol):
    """The `fault_proxy` fixture: `fault_proxy(server, rate=0.05)` is a started FaultProxy."""

    def __call__(self, server: Upstream, /, **options: Unpack[FaultOptions]) -> FaultProxy: ...


@dataclass(eq=False)
class _Link:
    """One client connection and its upstream twin: they close together."""

    client: asyncio.StreamWriter
    task: asyncio.Task[None]
    upstream: asyncio.StreamWriter | None = None

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()

    async def close(self) -> None:
        """FIN after what was written (the replies before a fault); abort if that stalls."""
        writers = [writer for writer in (self.client, self.upstream) if writer is not None]
        for writer in writers:
            writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                for writer in writers:
                    with suppress(OSError):  # reset by the peer: closed all the same
                        await writer.wait_closed()
        except TimeoutError:
            self.abort()


class FaultProxy:
    """Listens on a free port of 127.0.0.1 and forwards to the redis:// URL it was given.

    `start()` returns once it listens; `.url` is the upstream URL with the proxy's address (user,
    password and db kept). `configure()` and `stats()` are safe from any thread at any time.
    """

    def __init__(self, upstream: str, **options: Unpack[FaultOptions]) -> None:
        self._upstream = urlsplit(upstream)
        if self._upstream.scheme != "redis" or not self._upstream.hostname:
            raise ValueError(f"FaultProxy needs a redis://host:port URL, not {upstream!r}")
        self._injector = FaultInjector(**options)
        self._port = 0
        self._listening = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._links: set[_Link] = set()
        self._errors: list[BaseException] = []

    # --- from the test's thread -----------------------------------------------------------

    def configure(self, **options: Unpack[FaultOptions]) -> None:
        """Change the settings given (faults.FaultOptions); they hold from the next command."""
        self._injector.configure(**options)

    def stats(self) -> FaultStats:
        return self._injector.stats()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the fault proxy has not started: no port yet")
        return self._port

    @property
    def url(self) -> str:
        user, _, _ = self._upstream.netloc.rpartition("@")
        netloc = f"{user}@{HOST}:{self.port}" if user else f"{HOST}:{self.port}"
        return urlunsplit(self._upstream._replace(netloc=netloc))

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def start(self) -> FaultProxy:
        """Listen (on the same port again after a `stop()`) and serve from a thread of its own."""
        if self._thread is not None:
            raise RuntimeError("the fault proxy is running already")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"fault-proxy-{self._upstream.port}", daemon=True
        )
        self._thread.start()
        ready.wait(START_TIMEOUT)
        if not self._listening:
            self.stop()  # raises what kept it from listening
            raise RuntimeError("the fault proxy did not start listening")
        return self

    def disconnect_all(self) -> int:
        """Cut every open connection now, both sides (clients see a reset); returns how many.

        The listener stays: clients that reconnect are served as before.
        """
        if self._thread is None or self._loop is None:
            raise RuntimeError("the fault proxy is not running")
        future = asyncio.run_coroutine_threadsafe(self._close_links(), self._loop)
        return future.result(STOP_TIMEOUT)

    def stop(self) -> None:
        """Close the listener and every connection, and end the thread.

        Raises:
            BaseExceptionGroup: what went wrong inside the proxy (a bug in it), if anything.
        """
        thread, self._thread = self._thread, None
        if thread is not None:
            if self._loop is not None and self._stopping is not None:
                with suppress(RuntimeError):  # the loop has ended already: it failed to start
                    self._loop.call_soon_threadsafe(self._stopping.set)
            thread.join(STOP_TIMEOUT)
            if thread.is_alive():
                raise RuntimeError(f"the fault proxy's thread did not end in {STOP_TIMEOUT}s")
        errors, self._errors = self._errors, []
        if errors:
            raise BaseExceptionGroup("the fault proxy failed", errors)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- in the proxy's thread ------------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._main(ready))
        except BaseException as error:  # for stop() to raise in the test, not a thread crash
            self._errors.append(error)
        finally:
            ready.set()

    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._serve, HOST, self._port, limit=STREAM_LIMIT)
        async with server:
            self._port = server.sockets[0].getsockname()[1]
            self._listening = True
            ready.set()
            try:
                await self._stopping.wait()
            finally:
                self._listening = False
                server.close()
                await self._close_links()

    async def _close_links(self) -> int:
        links = list(self._links)
        for link in links:
            link.abort()
        await asyncio.gather(*(link.task for link in links), return_exceptions=True)
        return len(links)

    async def _serve(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        assert self._stopping is not None
        link = _Link(client, task)
        self._links.add(link)
        try:
            if self._stopping.is_set():
                return
            upstream_reader, link.upstream = await asyncio.open_connection(
                self._upstream.hostname, self._upstream.port or 6379, limit=STREAM_LIMIT
            )
            verdicts: asyncio.Queue[Verdict] = asyncio.Queue()
            await _first(
                self._forward(client_reader, link.upstream, verdicts),
                self._relay(upstream_reader, client, verdicts),
            )
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError):
            pass  # a peer left, or sent what is not RESP: close both, as Redis would
        except Exception as error:  # a bug in the proxy: stop() raises it
            self._errors.append(error)
        finally:
            self._links.discard(link)
            await link.close()

    async def _forward(
        self,
        client_reader: asyncio.StreamReader,
        upstream: asyncio.StreamWriter,
        verdicts: asyncio.Queue[Verdict],
    ) -> None:
        """Client to Redis, as commands come (a pipelined batch stays pipelined), each with its
        verdict queued for the relay; ends the link when the client leaves or a request drops."""
        while (command := await read_command(client_reader)) is not None:
            if not command.raw:
                continue  # nothing Redis would answer
            verdict = self._injector.judge(command.name)
            if verdict.fault is Fault.DROP_REQUEST:
                await _first(verdicts.join(), _discard_until_eof(client_reader))
                return  # the replies before it are out: close
            upstream.write(command.raw)
            verdicts.put_nowait(verdict)  # before any reply can come: no await since the write
            if verdict.fault is not None:
                # The relay ends the link at this reply; until then, notice the client leaving.
                await _discard_until_eof(client_reader)
                return
            await upstream.drain()

    async def _relay(
        self,
        upstream_reader: asyncio.StreamReader,
        client: asyncio.StreamWriter,
        verdicts: asyncio.Queue[Verdict],
    ) -> None:
        """Redis to client, each reply as its command's verdict says; ends the link at a
        faulted reply, or when Redis leaves (noticed at once, even between commands)."""
        while True:
            message = await read_reply(upstream_reader)
            if message.startswith(PUSH):
                client.write(message)
                continue
            try:
                verdict = verdicts.get_nowait()
            except asyncio.QueueEmpty:
                raise ProtocolError("a reply to no command: pub/sub or MONITOR?") from None
            verdicts.task_done()
            if verdict.fault is None:
                client.write(message)
                await client.drain()
                continue
            if verdict.fault is Fault.CUT_REPLY:
                client.write(verdict.prefix(message))
            return


async def _discard_until_eof(reader: asyncio.StreamReader) -> None:
    """Read and drop what comes (so that closing sends a FIN, not the RST unread data causes)."""
    while await reader.read(1 << 16):
        pass


async def _first(*coroutines: Coroutine[Any, Any, None]) -> None:
    """Run the coroutines until one ends, then cancel the others; raises what the first raised."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
