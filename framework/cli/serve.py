"""`pipeline serve [--host H] [--port P]`: the HTTP API and dashboard (framework/api.py) on uvicorn.

Connects to Redis before listening, so an unreachable Redis is one line and exit 1, not a
server that answers 503 to everything. SIGTERM and Ctrl-C stop it gracefully: uvicorn stops
accepting, lets requests in flight finish and returns; then the connection is closed (and an
embedded Redis stopped), and the command exits 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from framework.cli.common import FileOption, connected, load_pipeline, run
from framework.cli.worker import STOP_SIGNALS
from framework.errors import PipelineError

if TYPE_CHECKING:
    import uvicorn

    from framework.pipeline import Pipeline


def graceful_server(config: uvicorn.Config) -> uvicorn.Server:
    """uvicorn's server, minus re-raising the stop signal once it has shut down: that would end
    the process before `connected()` closes the client and stops an embedded Redis, with 143.

    uvicorn and FastAPI are imported here, not at the top: every other command (a worker in
    particular) starts a third of a second sooner without them.
    """
    import uvicorn

    class GracefulServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            original = {signum: signal.signal(signum, self.handle_exit) for signum in STOP_SIGNALS}
            try:
                yield
            finally:
                for signum, handler in original.items():
                    signal.signal(signum, handler)

    return GracefulServer(config)


class CannotListen(PipelineError):
    """The address is taken or not ours to bind: one line, exit 1 (uvicorn would log and exit 3)."""


def listening_sockets(host: str, port: int) -> list[socket.socket]:
    """Bound here rather than by uvicorn, so a taken port is one clear line; one socket per
    address the host has (`localhost`: 127.0.0.1 and ::1; "": every interface), as uvicorn
    binds them."""
    sockets: list[socket.socket] = []
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, protocol, _, address in dict.fromkeys(found):
            listening = socket.socket(family, kind, protocol)
            sockets.append(listening)
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listening.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listening.bind(address)
            listening.listen(2048)
    except OSError as error:
        for listening in sockets:
            listening.close()
        if isinstance(error, socket.gaierror) or not error.errno:
            reason = error.strerror or str(error)  # a name that does not resolve
        else:
            reason = os.strerror(error.errno)
        raise CannotListen(
            f"cannot listen on {host}:{port}: {reason}; choose another --port or --host"
        ) from None
    return sockets


async def serve_api(pipeline: Pipeline, host: str, port: int) -> None:
    import uvicorn

    from framework.api import create_app

    async with connected(pipeline):
        await pipeline.client()  # Redis first: unreachable is one line, before we listen
        sockets = listening_sockets(host, port)
        try:
            config = uvicorn.Config(create_app(pipeline), host=host, port=port, lifespan="off")
            await graceful_server(config).serve(sockets=sockets)
        finally:
            for listening in sockets:
                listening.close()


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    file: FileOption = None,
) -> None:
    """HTTP API (submit, job status, wait, stage statistics) and the dashboard at /."""
    run(serve_api(load_pipeline(ctx), host, port))
