"""The Pipeline facade: load pipeline.yaml, then submit, wait, inspect and run workers.

Every method has an async form (`submit_async`, ...) and a blocking twin (`submit`, ...) that
runs the async one on a private event loop thread, so scripts and notebooks need no asyncio.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel

from framework import scripts
from framework.connection import (
    REDIS_ERRORS,
    TRANSIENT_ERRORS,
    AsyncClient,
    Server,
    connect,
    connect_sync,
    retry_until,
)
from framework.embedded import EmbeddedRedis
from framework.errors import BacklogFull, PayloadError, RedisUnavailable, SubmitCutShort
from framework.groups import ensure_groups
from framework.invocation import StageFunction
from framework.job_ids import new_job_id
from framework.jobs import Job, read_job, wait_for_jobs
from framework.loader import load_spec
from framework.specs import PipelineSpec, StageSpec
from framework.wire import check_size, encode_payload
from framework.worker import StageWorker
from framework.worker.channels import Channel, open_channel

T = TypeVar("T")

log = structlog.get_logger()

EMBEDDED = "embedded"
SUBMIT_CHUNK = 500
REDIS_WAIT = 10.0  # seconds: connecting, and a submit whose reply is lost, wait this long


@dataclass(frozen=True, slots=True)
class Submitted:
    """A job id, and whether the submit queued it (False: that id existed, nothing queued)."""

    job_id: str
    new: bool


class Pipeline:
    """One pipeline.yaml, connected lazily to its Redis."""

    def __init__(
        self,
        spec: PipelineSpec,
        max_connections: int | None = None,
        redis_wait: float = REDIS_WAIT,
    ) -> None:
        """`max_connections` bounds each event loop's client (the HTTP API sets it); commands
        beyond it wait for a free connection. `redis_wait` is how long connecting, and a submit
        whose reply was lost, wait for Redis before they give up with one line (workers and
        `serve` wait longer at start: --startup-wait)."""
        self.spec = spec
        self.max_connections = max_connections
        self.redis_wait = redis_wait
        self._clients: dict[asyncio.AbstractEventLoop, AsyncClient] = {}
        self._connecting: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._lock = threading.Lock()
        self._server: Server | None = None
        self._url = spec.redis_url
        self._embedded: EmbeddedRedis | None = None
        self._loop_thread: _LoopThread | None = None

    @classmethod
    def load(
        cls,
        path: str | Path = "pipeline.yaml",
        env: Mapping[str, str] | None = None,
        max_connections: int | None = None,
        redis_wait: float = REDIS_WAIT,
    ) -> Pipeline:
        """Read and validate pipeline.yaml; raises ConfigError with a one-line message."""
        return cls(load_spec(path, env), max_connections, redis_wait)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.spec.stages)

    # -- connection --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The Redis URL in use (for `embedded`, the server we started); empty before connect."""
        return self._url if self._clients else ""

    async def client(self) -> AsyncClient:
        """The async client of the running event loop, connecting (and starting the embedded
        server) on first use.

        A client's connections belong to the loop that opened them, so each loop gets its own:
        the sync methods' private loop, the caller's `asyncio.run`s, workers running in another
        thread. A loop that has been closed took its sockets with it; its client is dropped.
        """
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is not None:
            return client
        with self._lock:  # the dicts are shared with other threads' loops
            lock = self._connecting.setdefault(loop, asyncio.Lock())
            for closed in [other for other in list(self._clients) if other.is_closed()]:
                self._clients.pop(closed, None)
                self._connecting.pop(closed, None)
        async with lock:  # two first calls on one loop make one client
            client = self._clients.get(loop)
            if client is None:
                url = await asyncio.to_thread(self._server_url)
                deadline = time.monotonic() + self.redis_wait
                client, self._server = await connect(
                    url, max_connections=self.max_connections, wait=self.redis_wait
                )
                try:
                    await retry_until(lambda: ensure_groups(client, self.spec), _waiting, deadline)
                except TRANSIENT_ERRORS as error:
                    await client.aclose()
                    raise RedisUnavailable(
                        f"lost Redis while creating consumer groups (waited "
                        f"{self.redis_wait:g}s): {error}"
                    ) from None
                except BaseException:
                    await client.aclose()
                    raise
                self._clients[loop] = client
        return client

    def _server_url(self) -> str:
        """The URL to connect to, starting the embedded server once for every loop."""
        with self._lock:
            if self._url == EMBEDDED:
                self._embedded = EmbeddedRedis(self.spec.base_dir)
                self._url = self._embedded.start()
            return self._url

    async def server(self) -> Server:
        await self.client()
        assert self._server is not None
        return self._server

    async def close_async(self) -> None:
        """Close every loop's client (another running loop's on that loop), then stop an
        embedded server we started."""
        current = asyncio.get_running_loop()
        with self._lock:
            clients, self._clients = self._clients, {}
            self._connecting = {}
        for loop, client in clients.items():
            if loop is current:
                await client.aclose()
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(client.aclose(), loop)
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)
            self._embedded = None
            self._url = EMBEDDED

    # -- submit ------------------------------------------------------------------------------

    def _encode(self, data: Any) -> bytes:
        if isinstance(data, BaseModel):
            encoded = data.model_dump_json().encode()
            check_size(encoded, self.spec.max_payload)
            return encoded
        return encode_payload(data, self.spec.max_payload)

    async def submit_async(self, data: Any, job_id: str | None = None, trace: str = "") -> str:
        """Queue one job; returns its id. The same `job_id` twice makes one job.

        The id (a UUIDv7 unless given) is chosen before the first attempt, and a submit whose
        reply is lost is sent again under it, for up to `redis_wait` seconds: a lost reply never
        makes a second job. Still unanswered then, it raises SubmitCutShort, whose `job_ids`
        say which id to ask about or to submit again under.
        """
        return (await self.submit_job_async(data, job_id, trace)).job_id

    async def submit_job_async(
        self, data: Any, job_id: str | None = None, trace: str = ""
    ) -> Submitted:
        """Queue one job and say whether this call queued it: `new` is False when a job with
        that id already existed (nothing was queued; the HTTP API answers 200, not 202)."""
        return (await self._submit(self._checked([data], [job_id]), trace))[0]

    async def submit_many_async(
        self,
        payloads: Sequence[Any],
        job_ids: Sequence[str | None] | None = None,
        trace: str = "",
    ) -> list[str]:
        """Queue many jobs in pipelined round trips; returns their ids in order. `job_ids`,
        when given, holds one id (or None, for a fresh one) per payload."""
        encoded = self._checked(list(payloads), job_ids)
        return [submitted.job_id for submitted in await self._submit(encoded, trace)]

    def _checked(
        self, payloads: list[Any], job_ids: Sequence[str | None] | None
    ) -> list[tuple[bytes, str]]:
        """Each payload encoded, and each job its id, made now where none was given."""
        if job_ids is None:
            job_ids = [None] * len(payloads)
        elif len(job_ids) != len(payloads):
            raise PayloadError(f"{len(job_ids)} job ids for {len(payloads)} payloads")
        encoded = []
        for data, job_id in zip(payloads, job_ids, strict=True):
            if job_id is not None and not valid_job_id(job_id):
                raise PayloadError(f"job id {job_id!r} must be 1-200 characters, no whitespace")
            encoded.append((self._encode(data), job_id or new_job_id()))
        return encoded

    async def _submit(self, encoded: list[tuple[bytes, str]], trace: str) -> list[Submitted]:
        client = await self.client()
        first = self.spec.first
        queued: list[tuple[int, Submitted]] = []  # (position, job)
        refused: list[int] = []
        backlog = 0
        ids = [job_id for _, job_id in encoded]
        for start in range(0, len(encoded), SUBMIT_CHUNK):
            chunk = encoded[start : start + SUBMIT_CHUNK]
            now_ms = int(time.time() * 1000)  # the same in every attempt: see _was_ours
            try:
                replies = await self._submit_chunk(client, chunk, trace, now_ms)
            except REDIS_ERRORS as error:
                transient = isinstance(error, TRANSIENT_ERRORS)
                if not queued and not transient:
                    raise  # refused before anything was queued: the error as it is
                unknown = list(range(start, start + len(chunk))) if transient else []
                not_queued = list(range(start + len(unknown), len(encoded)))
                done = [(position, job.job_id) for position, job in queued]
                raise SubmitCutShort(error, done, unknown, not_queued, ids) from error
            for position, reply in enumerate(replies, start=start):
                job, flag = reply[0], reply[1]
                if job:
                    text = job.decode() if isinstance(job, bytes) else str(job)
                    new = bool(int(flag)) or _was_ours(reply, now_ms)
                    queued.append((position, Submitted(text, new)))
                else:
                    refused.append(position)
                    backlog = max(backlog, int(flag))
            if refused:  # the round trip that met the refusal is the last one sent
                refused.extend(range(start + len(chunk), len(encoded)))
                limit = first.max_backlog or 0
                done = [(position, job.job_id) for position, job in queued]
                raise BacklogFull(first.name, backlog, limit, done, refused)
        return [job for _, job in queued]

    async def _submit_chunk(
        self, client: AsyncClient, chunk: list[tuple[bytes, str]], trace: str, now_ms: int
    ) -> list[Any]:
        """One pipelined round trip of submit.lua calls, sent again, whole and unchanged, while
        its reply is lost (for up to redis_wait): the calls that ran find their job and queue
        nothing, the others queue theirs."""
        submit = scripts.script(scripts.SUBMIT)
        calls = self._submit_calls(chunk, trace, now_ms)
        deadline = time.monotonic() + self.redis_wait
        return await retry_until(lambda: submit.many(client, calls), _waiting, deadline)

    def _submit_calls(
        self, chunk: list[tuple[bytes, str]], trace: str, now_ms: int
    ) -> list[tuple[list[str], list[Any]]]:
        first = self.spec.first
        ttl = self.spec.result_ttl_seconds
        limit = "" if first.max_backlog is None else first.max_backlog
        return [
            (
                [first.input_stream, self.spec.keys.job(job_id)],
                [job_id, data, trace, now_ms, ttl, limit, first.name],
            )
            for data, job_id in chunk
        ]

    # -- wait and status ---------------------------------------------------------------------

    async def wait_async(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job is done or failed; raises WaitTimeout (a TimeoutError)."""
        return (await self.wait_all_async([job_id], timeout))[job_id]

    async def wait_all_async(
        self,
        job_ids: Iterable[str],
        timeout: float | None = None,
        on_finished: Callable[[Job], None] | None = None,
    ) -> dict[str, Job]:
        client = await self.client()
        return await wait_for_jobs(
            client, self.spec.keys, job_ids, self.stage_names, timeout, on_finished
        )

    async def status_async(self, job_id: str) -> Job:
        """One job's state, timings and results; raises JobNotFound."""
        return await read_job(await self.client(), self.spec.keys, job_id, self.stage_names)

    # -- workers -----------------------------------------------------------------------------

    async def run_workers_async(
        self,
        stages: Iterable[str] | None,
        stopping: asyncio.Event,
        concurrency: int | None = None,
        grace_period: timedelta = timedelta(seconds=30),
        ready: Callable[[], None] | None = None,
    ) -> None:
        """Run one worker per named stage (all when None) in this process until `stopping`;
        `ready` is called once the stage functions are imported and connections are open, just
        before the first read."""
        names = list(stages) if stages is not None else list(self.stage_names)
        specs = [self.spec.stage(name) for name in names]
        if concurrency is not None:
            specs = [_with_concurrency(spec, concurrency) for spec in specs]
        source = self.spec.label or self.spec.source.name
        functions = [
            StageFunction(spec, self.spec.base_dir, source, self.spec.max_payload) for spec in specs
        ]
        client = await self.client()
        server = await self.server()
        channels: list[Channel] = []
        workers = []
        try:
            for spec, function in zip(specs, functions, strict=True):
                reads = await open_channel(self._url, self.redis_wait)
                commits = await open_channel(self._url, self.redis_wait)
                channels += (reads, commits)
                workers.append(
                    StageWorker(
                        self.spec,
                        spec,
                        client,
                        server,
                        connect_sync(self._url, server),
                        reads,
                        commits,
                        function,
                        grace_period,
                    )
                )
            if ready is not None:
                ready()
            async with asyncio.TaskGroup() as group:
                for worker in workers:
                    group.create_task(worker.run(stopping))
        finally:
            for channel in channels:
                await channel.aclose()

    # -- blocking twins ----------------------------------------------------------------------

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop_thread is None:
            self._loop_thread = _LoopThread()
        return self._loop_thread.run(coroutine)

    def submit(self, data: Any, job_id: str | None = None, trace: str = "") -> str:
        return self._run(self.submit_async(data, job_id, trace))

    def submit_many(
        self, payloads: Sequence[Any], job_ids: Sequence[str | None] | None = None
    ) -> list[str]:
        return self._run(self.submit_many_async(payloads, job_ids))

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        return self._run(self.wait_async(job_id, timeout))

    def status(self, job_id: str) -> Job:
        return self._run(self.status_async(job_id))

    def close(self) -> None:
        """Close every client and stop an embedded server we started, from sync code: also
        after the async methods ran under the caller's own `asyncio.run`."""
        if self._loop_thread is None and not self._clients and self._embedded is None:
            return
        if self._loop_thread is None:
            self._loop_thread = _LoopThread()
        self._loop_thread.run(self.close_async())
        self._loop_thread.stop()
        self._loop_thread = None

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close_async()


def _was_ours(reply: list[Any], now_ms: int) -> bool:
    """An id that existed already was queued by an earlier attempt of this very submit (its
    reply lost) when the job's `submitted` is this submit's time, which every attempt sends."""
    return len(reply) > 2 and int(reply[2] or 0) == now_ms


def _waiting(error: BaseException, delay: float) -> None:
    log.warning("redis_unavailable", error=str(error), retry_in_s=round(delay, 2))


def valid_job_id(job_id: str) -> bool:
    return 0 < len(job_id) <= 200 and not any(ch.isspace() for ch in job_id)


def _with_concurrency(spec: StageSpec, concurrency: int) -> StageSpec:
    import dataclasses  # only for the --concurrency override

    return dataclasses.replace(spec, concurrency=concurrency)


class _LoopThread:
    """An event loop on a daemon thread, for the blocking twins of the async API."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="pipeline")
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()
