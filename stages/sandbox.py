"""Read untrusted formats in reader processes that a deadline can kill.

A thread cannot be stopped: a PDF that keeps pypdf busy for minutes, or a page that needs
gigabytes, would hold one of the worker's threads (and the GIL) as long as it likes. So extract
hands HTML, Markdown and PDF to a reader process (sandbox_child.py) with an address-space
limit, and waits for the reply in poll(), which releases the GIL so the worker's lease keeper
runs on. Past the deadline the process is killed and the document refused with `Fail`: one
attempt, a dead letter, and the worker, its leases and its other messages go on.

Reader processes are started lazily with Popen (not fork: the worker has threads and may hold
torch), each reads one document at a time and is reused, and all are killed when the worker
exits. If the worker dies first, a reader sees its stdin close and exits; one still busy with
a document is ended by its CPU limit. (Not PR_SET_PDEATHSIG: it fires when the *thread* that
started the process ends, and the worker's threads come and go.)
"""

from __future__ import annotations

import atexit
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from framework import ConfigError, Fail
from framework.durations import parse_duration, parse_size
from stages.extracted import Extracted
from stages.frames import Frame, FrameError, decode_frame, encode_frame, frame_size

TIMEOUT_VARIABLE = "EXTRACT_TIMEOUT"
MEMORY_VARIABLE = "EXTRACT_MEMORY"
DEFAULT_TIMEOUT = "30s"
DEFAULT_MEMORY = "1GiB"
MIN_MEMORY = 64 * 1024 * 1024  # Python with the readers imported needs about 50 MiB
STARTUP_TIMEOUT = 60.0  # seconds for a new reader to import its libraries, on a busy host
MAX_IDLE = 4  # readers kept waiting for the next document; more are ended after use
CHILD_MODULE = "stages.sandbox_child"
# What a reader may see of the worker's environment: nothing secret.
PASSED_VARIABLES = ("PATH", "PYTHONHOME", "LANG", "LC_ALL", "LC_CTYPE")

_CHUNK = 1 << 20
T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """How long one document may take (seconds) and how much memory its reader may map."""

    timeout: float
    memory: int

    @classmethod
    def from_environment(cls) -> Limits:
        """EXTRACT_TIMEOUT (a duration, default 30s) and EXTRACT_MEMORY (a size, default 1GiB)."""
        timeout = _setting(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT, parse_duration).total_seconds()
        memory = _setting(MEMORY_VARIABLE, DEFAULT_MEMORY, parse_size)
        if timeout <= 0:
            raise ConfigError("environment", TIMEOUT_VARIABLE, "must be more than 0s")
        if memory < MIN_MEMORY:
            raise ConfigError("environment", MEMORY_VARIABLE, "must be at least 64MiB")
        return cls(timeout, memory)


def read_isolated(kind: str, data: bytes | str, name: str) -> Extracted:
    """Read `data` as `kind` in a reader process, within the limits the environment sets."""
    return READERS.read(kind, data, name, Limits.from_environment())


class ReaderPool:
    """Reader processes for any number of threads, each reader serving one thread at a time."""

    def __init__(self, max_idle: int = MAX_IDLE) -> None:
        self.max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: list[_Reader] = []
        self._running: set[_Reader] = set()
        self._owner = os.getpid()

    def read(self, kind: str, data: bytes | str, name: str, limits: Limits) -> Extracted:
        """The document read by a reader, or `Fail` naming it when it is too slow or too big."""
        text = isinstance(data, str)
        header = {"kind": kind, "name": name, "text": text, "timeout": limits.timeout}
        body = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        reader, reply = self._ask(header, body, limits)
        if reply is None or reply[0].get("memory"):
            ending = reader.ending() if reply is None else None
            self._end(reader)
            raise Fail(_memory_reason(name, limits.memory, ending))
        self._give_back(reader)
        return _extracted(reply[0])

    def close(self) -> None:
        """End every reader, idle or busy (a busy one's caller gets a refusal)."""
        with self._lock:
            readers, self._idle, self._running = list(self._running), [], set()
        for reader in readers:
            reader.end()

    def _ask(
        self, header: dict[str, Any], body: bytes, limits: Limits
    ) -> tuple[_Reader, Frame | None]:
        """A reader and its reply (None: it died on the document). A reader that was gone
        before it had the whole request is no fault of the document: the next one gets it."""
        for last_try in (False, True):
            reader = self._take(limits.memory)
            try:
                return reader, reader.ask(header, body, limits.timeout)
            except _Unsent:
                if last_try:
                    return reader, None
                self._end(reader)
            except _Overdue:
                self._end(reader)
                reason = f"{header['name']}: extraction took longer than {limits.timeout:g}s"
                raise Fail(f"{reason}; the document is refused") from None
            except BaseException:
                self._end(reader)
                raise
        raise AssertionError("unreachable: the last try returns")

    def _take(self, memory: int) -> _Reader:
        with self._lock:
            if self._owner != os.getpid():  # a forked copy of the worker: those are not ours
                self._idle, self._running, self._owner = [], set(), os.getpid()
            while self._idle:
                reader = self._idle.pop()
                if reader.memory == memory and reader.alive():
                    return reader
                self._running.discard(reader)
                reader.end()
        reader = _Reader(memory)
        with self._lock:
            self._running.add(reader)
        return reader

    def _give_back(self, reader: _Reader) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle and reader in self._running:
                self._idle.append(reader)
                return
            self._running.discard(reader)
        reader.end()

    def _end(self, reader: _Reader) -> None:
        with self._lock:
            self._running.discard(reader)
        reader.end()


class _Overdue(Exception):
    """The reader did not answer by the deadline."""


class _Unsent(Exception):
    """The reader was gone before it had the whole request."""


class _Reader:
    """One reader process and the worker's ends of its pipes."""

    def __init__(self, memory: int) -> None:
        self.memory = memory
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", CHILD_MODULE, str(memory)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_environment(),
            cwd="/",
            start_new_session=True,  # Ctrl-C in a terminal is for the worker; it ends its readers
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.requests = self.process.stdin.fileno()
        self.replies = self.process.stdout.fileno()
        os.set_blocking(self.requests, False)
        os.set_blocking(self.replies, False)
        try:
            ready = self._receive(time.monotonic() + STARTUP_TIMEOUT)
        except (_Overdue, FrameError):
            ready = None
        if ready is None or not ready[0].get("ready"):
            ending = self.ending()
            self.end()
            raise RuntimeError(
                f"extract's reader process did not start ({ending}); its error output is "
                f"above the worker's; is {MEMORY_VARIABLE}={memory} enough to start Python?"
            )

    def ask(self, header: dict[str, Any], body: bytes, timeout: float) -> Frame | None:
        """The reply to one request; None when the process ended instead of replying."""
        deadline = time.monotonic() + timeout
        self._send(encode_frame(header, body), deadline)
        return self._receive(deadline)

    def alive(self) -> bool:
        return self.process.poll() is None

    def ending(self) -> str:
        """How the process ended, once it has: "SIGKILL", "exit code 1"."""
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "still running"
        if code < 0:
            return signal.Signals(-code).name
        return f"exit code {code}"

    def end(self) -> None:
        """Kill the process (it holds no state worth a goodbye) and close the pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()

    def _send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            _wait(self.requests, select.POLLOUT, deadline)
            try:
                written = os.write(self.requests, view[:_CHUNK])
            except BlockingIOError:
                continue
            except BrokenPipeError:
                raise _Unsent from None
            view = view[written:]

    def _receive(self, deadline: float) -> Frame | None:
        buffer = bytearray()
        while (size := frame_size(buffer)) is None or len(buffer) < size:
            if size is not None and size > self.memory:  # more than the reader could hold
                raise FrameError(f"reply of {size} bytes from a reader limited to {self.memory}")
            _wait(self.replies, select.POLLIN, deadline)
            try:
                chunk = os.read(self.replies, _CHUNK)
            except BlockingIOError:
                continue
            if not chunk:
                return None
            buffer += chunk
        return decode_frame(buffer)


def _wait(descriptor: int, event: int, deadline: float) -> None:
    """Until `descriptor` is ready (or closed at the other end); `_Overdue` at the deadline."""
    poller = select.poll()
    poller.register(descriptor, event)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Overdue
        if poller.poll(math.ceil(left * 1000)):
            return


def _extracted(reply: dict[str, Any]) -> Extracted:
    """The reader's reply as `Extracted`, or the refusal it carries as `Fail`."""
    if "fail" in reply:
        raise Fail(str(reply["fail"]))
    text, title, metadata = reply.get("text"), reply.get("title"), reply.get("metadata")
    if not isinstance(text, str) or not isinstance(metadata, dict):
        raise FrameError(f"malformed reply from a reader: {sorted(reply)}")
    return Extracted(text=text, title=title if isinstance(title, str) else None, metadata=metadata)


def _memory_reason(name: str, memory: int, ending: str | None) -> str:
    limit = f"{name}: needs more than {memory // 2**20} MiB to extract"
    if ending is None:
        return f"{limit}; the document is refused"
    return f"{limit}, or crashes the reader (it ended: {ending}); the document is refused"


def _environment() -> dict[str, str]:
    """Where `stages` and the libraries are, and little else: not the worker's credentials."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [package_root, *(os.path.abspath(entry) for entry in sys.path if entry)]
    passed = {key: os.environ[key] for key in PASSED_VARIABLES if key in os.environ}
    return {**passed, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


def _setting(variable: str, default: str, parse: Callable[[object], T]) -> T:
    try:
        return parse(os.environ.get(variable, "").strip() or default)
    except ValueError as error:
        raise ConfigError("environment", variable, str(error)) from None


READERS = ReaderPool()
atexit.register(READERS.close)
