"""`pipeline serve [--host H] [--port P] [--token T]`: the HTTP API and dashboard
(framework/api.py) on uvicorn.

Beyond loopback it needs a bearer token (`--token` or `PIPELINE_API_TOKEN`), or it refuses to
start: an API that queues work for the workers is not for anyone who can reach the port. On
loopback the token is optional.

Connects to Redis before listening, so an unreachable Redis is one line and exit 1, not a
server that answers 503 to everything. SIGTERM and Ctrl-C stop it gracefully: uvicorn stops
accepting, lets requests in flight finish and returns; then the connection is closed (and an
embedded Redis stopped), and the command exits 0.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from framework.cli.common import (
    DEFAULT_STARTUP_WAIT,
    FileOption,
    StartupWaitOption,
    UsageProblem,
    connected,
    load_pipeline,
    parse_startup_wait,
    run,
)
from framework.cli.signals import STOP_SIGNALS
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


MIN_TOKEN_CHARS = 16
# Connections to Redis the API opens at most: a burst of requests queues for them instead of
# opening one each (waits hold none: they share one blocking read).
API_CONNECTIONS = 32
TOKEN_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def loopback_only(host: str, port: int) -> bool:
    """Whether every address `host` binds is a loopback one (a name that does not resolve
    counts as not: `listening_sockets` says why it cannot be bound)."""
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError:
        return False
    addresses = {str(address[4][0]) for address in found}
    return bool(addresses) and all(
        ipaddress.ip_address(address.partition("%")[0]).is_loopback for address in addresses
    )


def check_token(token: str | None, host: str, port: int) -> str | None:
    """The token to require, refusing to serve beyond loopback without a good one."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise UsageProblem(
            f"the API token is {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
            f"(make one with: {TOKEN_HINT})"
        )
    if token is None and not loopback_only(host, port):
        raise UsageProblem(
            f"--host {host or '(every interface)'} reaches beyond this machine: set "
            f"PIPELINE_API_TOKEN (or --token) to a secret clients send as a bearer token "
            f"(make one with: {TOKEN_HINT})"
        )
    return token


async def serve_api(
    pipeline: Pipeline, host: str, port: int, token: str | None = None, max_waits: int = 1000
) -> None:
    import uvicorn

    from framework.api import create_app

    pipeline.max_connections = pipeline.max_connections or API_CONNECTIONS
    async with connected(pipeline):
        await pipeline.client()  # Redis first: unreachable is one line, before we listen
        sockets = listening_sockets(host, port)
        try:
            app = create_app(pipeline, token=token, max_waits=max_waits)
            config = uvicorn.Config(app, host=host, port=port, lifespan="off")
            await graceful_server(config).serve(sockets=sockets)
        finally:
            for listening in sockets:
                listening.close()


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="PIPELINE_API_TOKEN",
            help="Bearer token clients must send; required beyond loopback.",
            show_default=False,
        ),
    ] = None,
    max_waits: Annotated[
        int, typer.Option(min=1, help="GET /jobs/ID/wait calls in progress at once.")
    ] = 1000,
    startup_wait: StartupWaitOption = DEFAULT_STARTUP_WAIT,
    file: FileOption = None,
) -> None:
    """HTTP API (submit, job status, wait, stage statistics) and the dashboard at /."""
    required = check_token(token or None, host, port)
    pipeline = load_pipeline(ctx, redis_wait=parse_startup_wait(startup_wait))
    run(serve_api(pipeline, host, port, required, max_waits))
