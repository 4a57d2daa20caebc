"""Real redis-server processes for the tests, each on a free loopback port, and waiting helpers.

Why real servers: the engine's guarantees (nothing lost, exactly-once hand-off, lease recovery)
rest on Redis semantics a fake would only imitate: XAUTOCLAIM, Lua atomicity, AOF after a
SIGKILL, cluster slots, TLS. Why a free port: tests must never touch the developer's redis on
6379, and parallel runs (xdist workers, CI jobs) must not collide. A port picked by binding
127.0.0.1:0 can still be taken before redis binds it, so a server that exits at start is retried
on a new port. Every process started here is tracked and stopped at session end (conftest), with
`atexit` as a last resort, so a failing or interrupted run leaves no redis behind.

`stray_keys()` is the leak check behind conftest's autouse fixture: every key under `{NAME}`
must be one docs/design.md lists ("Redis keys"), with the type it lists.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import inspect
import re
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

import redis
import redis.asyncio
import trustme
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

T = TypeVar("T")

HOST = "127.0.0.1"
START_TIMEOUT = 5.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 5
CLUSTER_BUS_OFFSET = 10000  # a cluster node also listens on port + 10000
LOG_FILE = "redis.log"
OUTPUT_FILE = "redis.out"  # stdout/stderr: what redis says before its log file is open

_running: set[RedisServer] = set()


class ServerStartError(RuntimeError):
    """A redis-server did not answer PING in time, or exited on every attempt."""


# ---------------------------------------------------------------------------------------------
# Waiting
# ---------------------------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    what: str = "condition",
    interval: float = 0.02,
) -> T:
    """Poll `predicate` until it returns something truthy, and return that; never `sleep` blindly.

    Raises AssertionError naming `what` and the last value seen when `timeout` passes.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {value!r}")
        time.sleep(interval)


@overload
async def async_wait_until(
    predicate: Callable[[], Awaitable[T]],
    timeout: float = ...,
    what: str = ...,
    interval: float = ...,
) -> T: ...
@overload
async def async_wait_until(
    predicate: Callable[[], T],
    timeout: float = ...,
    what: str = ...,
    interval: float = ...,
) -> T: ...
async def async_wait_until(
    predicate: Callable[[], Any],
    timeout: float = 5.0,
    what: str = "condition",
    interval: float = 0.02,
) -> Any:
    """`wait_until` for the event loop: `predicate` may be async or plain; sleeps with asyncio."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {value!r}")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------------------------------------
# One server
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """The files a TLS server needs; the CA file is what clients verify it with."""

    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(eq=False)
class RedisServer:
    """One redis-server process; `restart()` keeps its port and dir, so AOF data survives."""

    binary: Path
    workdir: Path
    args: tuple[str, ...] = ()
    port: int = 0
    tls: TlsFiles | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{HOST}:{self.port}"

    @property
    def ca_file(self) -> Path:
        if self.tls is None:
            raise AttributeError("not a TLS server: no CA file")
        return self.tls.ca_file

    @property
    def version(self) -> str:
        """The binary's version, e.g. '7.0.15'; known without the server running."""
        return binary_version(self.binary)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def log_file(self) -> Path:
        return self.workdir / LOG_FILE

    def client(self, **kwargs: Any) -> redis.Redis:
        """A sync client (close it: `with server.client() as r:`); kwargs go to redis.Redis."""
        return redis.Redis(host=HOST, port=self.port, **self._tls_kwargs(), **kwargs)

    def async_client(self, **kwargs: Any) -> redis.asyncio.Redis:
        """An asyncio client; `await client.aclose()` when done."""
        return redis.asyncio.Redis(host=HOST, port=self.port, **self._tls_kwargs(), **kwargs)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port and dir; fails if the port is gone."""
        self.stop()
        self._launch()
        if not self._wait_for_ping():
            self.kill()
            raise ServerStartError(
                f"{self.binary} did not come back on port {self.port}\n{self.log_tail()}"
            )

    def stop(self) -> None:
        """SIGTERM, so redis shuts down cleanly (fsyncs its AOF); SIGKILL if it hangs."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        _running.discard(self)

    def kill(self) -> None:
        """SIGKILL: a crash, as far as the data is concerned."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        _running.discard(self)

    def log_tail(self, lines: int = 30) -> str:
        tails = []
        for path in (self.workdir / OUTPUT_FILE, self.log_file):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                tails.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(tails) or f"(no output in {self.workdir})"

    def _tls_kwargs(self) -> dict[str, Any]:
        return {"ssl": True, "ssl_ca_certs": str(self.tls.ca_file)} if self.tls else {}

    def _command(self) -> list[str]:
        if self.tls is None:
            ports = ["--port", str(self.port)]
        else:
            ports = ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", str(self.tls.cert_file),
                     "--tls-key-file", str(self.tls.key_file),
                     "--tls-ca-cert-file", str(self.tls.ca_file),
                     "--tls-auth-clients", "no"]  # fmt: skip
        return [
            str(self.binary),
            *ports,
            "--bind",
            HOST,
            "--dir",
            str(self.workdir),
            "--logfile",
            LOG_FILE,
            "--save",
            "",
            *self.args,
        ]

    def _launch(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / OUTPUT_FILE).open("ab") as output:
            self.process = subprocess.Popen(
                self._command(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        _running.add(self)

    def _wait_for_ping(self) -> bool:
        """True once our process answers; False if it exited or START_TIMEOUT passed.

        "Our": a server that lost the race for the port exits, while whoever holds the port
        answers PING, so the answer must carry our pid.
        """
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        with self.client(
            socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
        ) as probe:
            while time.monotonic() < deadline and self.running:
                with contextlib.suppress(redis.RedisError):  # not up yet, or not ours
                    if probe.info("server")["process_id"] == self.process.pid:
                        return True
                time.sleep(0.01)
        return False


@functools.cache
def binary_version(binary: Path) -> str:
    """'7.0.15' from `redis-server --version` ('Redis server v=7.0.15 sha=...')."""
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"v=(\S+)", out.stdout)
    if match is None:
        raise RuntimeError(f"cannot read the version of {binary}: {out.stdout!r}")
    return match.group(1)


def free_port(cluster_bus: bool = False) -> int:
    """A port nothing listens on now (bind 127.0.0.1:0); with `cluster_bus`, port + 10000 too."""
    while True:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if not cluster_bus:
            return port
        if port + CLUSTER_BUS_OFFSET <= 65535 and _bindable(port + CLUSTER_BUS_OFFSET):
            return port


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _start(server: RedisServer) -> RedisServer:
    """Launch on a fresh free port, retrying a few times if the process exits (port taken)."""
    cluster_bus = "--cluster-enabled" in server.args
    for _ in range(START_ATTEMPTS):
        server.port = free_port(cluster_bus)
        server._launch()
        if server._wait_for_ping():
            return server
        if server.running:  # alive but silent for START_TIMEOUT: a new port will not help
            break
        server.kill()
    server.kill()
    raise ServerStartError(f"{server.binary} did not answer PING\n{server.log_tail()}")


def start_redis(binary: Path | str, workdir: Path | str, *args: str) -> RedisServer:
    """Start `binary` on a free loopback port with data and log in `workdir`; extra redis args."""
    return _start(RedisServer(binary=Path(binary), workdir=Path(workdir), args=args))


def start_tls_redis(binary: Path | str, workdir: Path | str) -> RedisServer:
    """A TLS-only server (`rediss://`), its certificate issued by a throwaway `trustme` CA."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert(HOST, "localhost")
    tls = TlsFiles(workdir / "ca.pem", workdir / "server.pem", workdir / "server.key")
    ca.cert_pem.write_to_path(str(tls.ca_file))
    cert.cert_chain_pems[0].write_to_path(str(tls.cert_file))
    cert.private_key_pem.write_to_path(str(tls.key_file))
    return _start(RedisServer(binary=Path(binary), workdir=workdir, tls=tls))


def stop_all() -> None:
    """Stop every server still running; conftest calls it at session end, atexit once more."""
    for server in list(_running):
        server.stop()


def running_servers() -> list[RedisServer]:
    """Every server started by this process and still alive (cluster nodes included)."""
    return [server for server in _running if server.running]


atexit.register(stop_all)


# ---------------------------------------------------------------------------------------------
# A cluster
# ---------------------------------------------------------------------------------------------

CLUSTER_SLOTS = 16384


@dataclass
class RedisClusterNodes:
    """Masters that together own all 16384 slots; no replicas."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def client(self, **kwargs: Any) -> RedisCluster:
        """A cluster client bootstrapped from the first node; close it when done."""
        return RedisCluster(host=HOST, port=self.nodes[0].port, **kwargs)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(binary: Path | str, workdir: Path | str, nodes: int = 3) -> RedisClusterNodes:
    """Start `nodes` cluster-enabled servers, split the slots, join them; wait for state ok.

    Joins from Python rather than `redis-cli --cluster create`, which polls once a second.
    Redis itself holds a fresh master in `cluster_state:fail` for about 2 s after start.
    """
    workdir = Path(workdir)
    cluster = RedisClusterNodes([])
    try:
        for index in range(nodes):
            cluster.nodes.append(
                start_redis(
                    binary,
                    workdir / f"node-{index}",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                )
            )
        _join(cluster.nodes)
        for node in cluster.nodes:
            wait_until(
                functools.partial(_cluster_ok, node),
                timeout=15.0,
                what=f"cluster_state:ok on {node.url}",
            )
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _join(nodes: list[RedisServer]) -> None:
    bounds = [CLUSTER_SLOTS * index // len(nodes) for index in range(len(nodes) + 1)]
    for index, node in enumerate(nodes):
        with node.client() as client:
            client.execute_command("CLUSTER", "ADDSLOTS", *range(bounds[index], bounds[index + 1]))
            client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", index + 1)
    for index, node in enumerate(nodes):  # a full mesh: no waiting for gossip to spread nodes
        with node.client() as client:
            for other in nodes[index + 1 :]:
                client.execute_command("CLUSTER", "MEET", HOST, other.port)


def _cluster_ok(node: RedisServer) -> bool:
    with node.client() as client:
        info = client.cluster("INFO")
    return bool(info["cluster_state"] == "ok")


# ---------------------------------------------------------------------------------------------
# Leak check: only the keys docs/design.md lists, with the types it lists
# ---------------------------------------------------------------------------------------------

DESIGN = Path(__file__).resolve().parent.parent / "docs" / "design.md"
_STAGE = re.compile(r"[A-Za-z0-9_-]+")


@functools.cache
def design_keys() -> dict[str, str]:
    """The "Redis keys" table of docs/design.md: `{NAME}:...` as written there -> its type."""
    text = DESIGN.read_text()
    section = text.partition("## Redis keys")[2].partition("\n## ")[0]
    rows = re.findall(r"^\| `(\{NAME\}:[^`]+)` \| (\w+) \|", section, re.MULTILINE)
    assert rows, "docs/design.md has no Redis keys table"
    return dict(rows)


def expected_type(name: str, key: str) -> str | None:
    """The type docs/design.md gives `key` in pipeline `name`, or None if it lists no such key."""
    prefix = "{" + name + "}:"
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix) :]
    listed = design_keys()
    fixed = {k.removeprefix("{NAME}:"): t for k, t in listed.items() if k.count(":") == 1}
    if rest in fixed and rest != "STAGE":
        return fixed[rest]
    if rest.startswith("job:") and len(rest) > len("job:"):
        return listed["{NAME}:job:ID"]
    if _STAGE.fullmatch(rest) and rest not in fixed and rest != "job":
        return listed["{NAME}:STAGE"]
    return None


def stray_keys(client: redis.Redis, name: str) -> list[str]:
    """Keys under `{name}` on this server that docs/design.md does not list, or of the wrong
    type."""
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", "{" + name + "}:") + "*"
    found = []
    for raw in client.scan_iter(match=pattern, count=1000):
        key = raw.decode(errors="backslashreplace") if isinstance(raw, bytes) else str(raw)
        actual = client.type(raw)
        actual = actual.decode() if isinstance(actual, bytes) else str(actual)
        wanted = expected_type(name, key)
        if actual != "none" and actual != wanted:  # "none": expired since SCAN saw it
            found.append(f"{key!r} is a {actual}, docs/design.md lists {wanted or 'no such key'}")
    return found


def assert_no_stray_keys(servers: list[RedisServer], name: str) -> None:
    """Fail naming every key under `{name}` on `servers` that docs/design.md does not list."""
    problems = []
    for server in servers:
        with server.client(socket_timeout=5) as client:
            problems += [f"{server.url}: {problem}" for problem in stray_keys(client, name)]
    assert not problems, "keys docs/design.md does not list:\n" + "\n".join(problems)
