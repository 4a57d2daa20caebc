"""Jobs as users see them: the job hash read back, and waiting on the done stream.

`commit.lua` keeps the hash (fan-out aware: a job is done when every message it spawned has
left the last stage); this module only reads it. Waiting blocks on `{name}:done` with XREAD,
so a waiter costs nothing while nothing finishes: no polling loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from framework.cancellation import cancel_check
from framework.connection import TRANSIENT_ERRORS, AsyncClient
from framework.errors import JobNotFound, WaitTimeout
from framework.keys import Keys
from framework.wire import ENTRY_ID, Fields, range_reply, read_reply

FINISHED = frozenset({"done", "failed"})


@dataclass(frozen=True, slots=True)
class StageTiming:
    """When a job last left a stage, and how long that stage's call took (the last one, when
    the job fanned out into several messages there)."""

    stage: str
    busy_ms: int
    last_at_ms: int


@dataclass(frozen=True, slots=True)
class Job:
    """A job's state, timings and results (the last stage's outputs, in commit order)."""

    id: str
    state: str  # queued | running | done | failed
    submitted_ms: int
    updated_ms: int | None
    finished_ms: int | None
    outstanding: int
    failed: int
    error: str | None
    results: list[Any] = field(default_factory=list)
    stages: tuple[StageTiming, ...] = ()

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def result(self) -> Any:
        """The single result, or the list of them when the job fanned out (None if none)."""
        if not self.results:
            return None
        return self.results[0] if len(self.results) == 1 else self.results

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "submitted_ms": self.submitted_ms,
            "finished_ms": self.finished_ms,
            "outstanding": self.outstanding,
            "failed": self.failed,
            "error": self.error,
            "stages": {
                t.stage: {"busy_ms": t.busy_ms, "last_at_ms": t.last_at_ms} for t in self.stages
            },
            "results": self.results,
        }


def _int(raw: dict[str, str], key: str) -> int | None:
    value = raw.get(key)
    return int(value) if value is not None else None


def _result_order(field: str) -> tuple[int, int, int, str]:
    """`result.<stage>.<message id>.<n>`: in the order the results were made (by the id of the
    message that produced them, then n); the stage only breaks ties between two last stages."""
    prefix, message_id, n = field.rsplit(".", 2) if field.count(".") >= 3 else (field, "0-0", "0")
    milliseconds, _, sequence = message_id.partition("-")
    return int(milliseconds or 0), int(sequence or 0), int(n), prefix


def _result_fields(raw: dict[str, str]) -> list[str]:
    return sorted((f for f in raw if f.startswith("result.")), key=_result_order)


async def _results(client: AsyncClient, keys: Keys, raw: dict[str, str]) -> list[Any]:
    """The job's results: each field holds the id of the result's entry in its stage's output
    stream, read back here (or, written by an older version, the result itself). A result
    whose entry retention has trimmed is left out."""
    fields = _result_fields(raw)
    if not fields:
        return []
    wanted = [(name, raw[name]) for name in fields]
    references = [(name, value) for name, value in wanted if ENTRY_ID.match(value)]
    entries: dict[str, Any] = {}
    if references:
        pipe = client.pipeline(transaction=False)
        for name, value in references:
            pipe.xrange(keys.stage(name.split(".", 2)[1]), value, value)
        for (name, _), reply in zip(references, await pipe.execute(), strict=True):
            found = range_reply(reply)
            if found:
                entries[name] = orjson.loads(found[0][1][b"data"])
    results = []
    for name, value in wanted:
        if name in entries:
            results.append(entries[name])
        elif not ENTRY_ID.match(value):
            results.append(orjson.loads(value))
    return results


def job_from_hash(
    job_id: str, raw_bytes: Fields, stage_order: Iterable[str], results: list[Any] | None = None
) -> Job:
    raw = {k.decode(): v.decode() for k, v in raw_bytes.items()}
    timings = [
        StageTiming(stage, int(raw.get(f"{stage}.ms", 0)), int(raw[f"{stage}.at"]))
        for stage in stage_order
        if f"{stage}.at" in raw
    ]
    return Job(
        id=job_id,
        state=raw.get("state", "queued"),
        submitted_ms=_int(raw, "submitted") or 0,
        updated_ms=max([t.last_at_ms for t in timings] + [_int(raw, "updated") or 0]) or None,
        finished_ms=_int(raw, "finished"),
        outstanding=_int(raw, "outstanding") or 0,
        failed=_int(raw, "failed") or 0,
        error=raw.get("error"),
        results=results or [],
        stages=tuple(timings),
    )


async def job_with_results(
    client: AsyncClient, keys: Keys, job_id: str, raw_bytes: Fields, stages: Iterable[str]
) -> Job:
    raw = {k.decode(): v.decode() for k, v in raw_bytes.items()}
    return job_from_hash(job_id, raw_bytes, stages, await _results(client, keys, raw))


async def queued_bare_entry(client: AsyncClient, keys: Keys, job_id: str) -> bool:
    """A job XADDed by plain Redis code has no hash until its first stage commits it."""
    return bool(ENTRY_ID.match(job_id)) and bool(await client.xrange(keys.input, job_id, job_id))


def queued(job_id: str) -> Job:
    return Job(job_id, "queued", int(job_id.split("-")[0]), None, None, 1, 0, None)


async def _job_hash(client: AsyncClient, keys: Keys, job_id: str) -> Fields:
    """The job hash, raw; our clients never decode replies, so keys and values are bytes."""
    return cast(Fields, await client.hgetall(keys.job(job_id)))


async def read_job(client: AsyncClient, keys: Keys, job_id: str, stages: Iterable[str]) -> Job:
    raw = await _job_hash(client, keys, job_id)
    if raw:
        return await job_with_results(client, keys, job_id, raw, stages)
    if await queued_bare_entry(client, keys, job_id):
        return queued(job_id)
    raise JobNotFound(job_id)


async def last_done_id(client: AsyncClient, keys: Keys) -> str:
    """Where to start reading the done stream so that nothing finishing from now is missed."""
    newest = range_reply(await client.xrevrange(keys.done, count=1))
    return newest[0][0].decode() if newest else "0-0"


async def wait_for_jobs(
    client: AsyncClient,
    keys: Keys,
    job_ids: Iterable[str],
    stages: tuple[str, ...],
    timeout: float | None,
    on_finished: Callable[[Job], None] | None = None,
) -> dict[str, Job]:
    """Block until every job has finished (done or failed); returns them by id.

    Reads the done stream's position first, then the hashes, then blocks on the stream from that
    position: a job finishing in between is in the stream, so none is missed.
    """
    cancelled = cancel_check()
    waiting = set(job_ids)
    finished: dict[str, Job] = {}
    position = await last_done_id(client, keys)
    deadline = None if timeout is None else time.monotonic() + timeout

    async def collect(ids: Iterable[str]) -> None:
        for job_id in ids:
            raw = await _job_hash(client, keys, job_id)
            if not raw:
                if not await queued_bare_entry(client, keys, job_id):
                    raise JobNotFound(job_id)
                continue
            job = await job_with_results(client, keys, job_id, raw, stages)
            if job.finished:
                waiting.discard(job_id)
                finished[job_id] = job
                if on_finished is not None:
                    on_finished(job)

    await collect(list(waiting))
    while waiting:
        cancelled()
        block_ms = 1000
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(next(iter(waiting)), timeout or 0.0)
            block_ms = max(1, min(block_ms, int(remaining * 1000)))
        reply = await client.xread({keys.done: position}, count=1000, block=block_ms)
        for _stream, entries in read_reply(reply):
            position = entries[-1][0].decode()
            done_ids = {fields[b"job"].decode() for _id, fields in entries}
            await collect(done_ids & waiting)
    return finished


class DoneWatcher:
    """One blocking read of the done stream serves every waiter of a process (the HTTP API's
    `/jobs/ID/wait`): a thousand waits cost one connection, not a thousand.

    A waiter registers before it reads the job hash, and the reader starts from the stream's
    end before any waiter's hash read: a job that finishes in between is either seen by the
    hash read or still ahead of the reader, so none is missed.
    """

    def __init__(self, client: AsyncClient, keys: Keys, stages: tuple[str, ...]) -> None:
        self.client, self.keys, self.stages = client, keys, stages
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._started = asyncio.Event()

    async def wait(self, job_id: str, timeout: float) -> Job:
        """The job once it has finished; WaitTimeout after `timeout` seconds."""
        self._start()
        cancelled = cancel_check()
        loop = asyncio.get_running_loop()
        waiting = self._waiters.setdefault(job_id, set())
        finished: asyncio.Future[None] = loop.create_future()
        waiting.add(finished)
        try:
            async with asyncio.timeout(timeout):
                await self._started.wait()
                while True:
                    job = await read_job(self.client, self.keys, job_id, self.stages)
                    if job.finished:
                        return job
                    cancelled()  # the timeout's, lost in read_job's command
                    await finished  # a done entry for this job: read its hash again
                    waiting.discard(finished)
                    finished = loop.create_future()
                    waiting.add(finished)
        except TimeoutError:
            raise WaitTimeout(job_id, timeout) from None
        finally:
            waiting.discard(finished)
            if not waiting and self._waiters.get(job_id) is waiting:
                del self._waiters[job_id]

    @property
    def waiting(self) -> int:
        return sum(len(futures) for futures in self._waiters.values())

    def _start(self) -> None:
        if self._reader is None or self._reader.done():
            self._started.clear()
            self._reader = asyncio.create_task(self._read(), name="done-watcher")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None

    async def _read(self) -> None:
        delay = 0.05
        position: str | None = None
        cancelled = cancel_check()
        while True:
            cancelled()
            try:
                if position is None:
                    position = await last_done_id(self.client, self.keys)
                    self._started.set()
                reply = await self.client.xread({self.keys.done: position}, count=1000, block=1000)
                delay = 0.05
            except TRANSIENT_ERRORS:  # waiters time out meanwhile, or their hash reads say why
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            for _stream, entries in read_reply(reply):
                position = entries[-1][0].decode()
                for _id, fields in entries:
                    for waiter in self._waiters.get(fields[b"job"].decode(), ()):
                        if not waiter.done():
                            waiter.set_result(None)
