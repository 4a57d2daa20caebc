"""One call of `commit.lua` for a batch of finished messages: the only way a message leaves.

Grouping commits is what makes the framework cheap per message: while one batch is being
committed the next accumulates, so the round trips per message fall as load rises. The
arguments go as columns (lua/commit.lua's header says which), and a column whose values are
all the same goes as one value: a batch of plain messages (one output each, no trace, one job
each) sends little more than its ids, timings and payloads. Payloads go as the bytes they are.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from framework import scripts
from framework.outcome import DeadLetter, Drop, Emit, Outcome, RetryLater, Skip
from framework.scripts import AsyncRedis
from framework.specs import PipelineSpec, StageSpec
from framework.wire import MAX_SEQUENCE, Delivery, text

Finished = tuple[Delivery, Outcome, float]  # the message, its outcome, the call's duration (s)

_KIND = {Emit: "E", Drop: "D", RetryLater: "R", DeadLetter: "X", Skip: "S"}


@dataclass(frozen=True, slots=True)
class Committed:
    """What one commit.lua call did: per message, whether it was still ours (False: taken over
    by another consumer, its result dropped); and which of them a call whose reply was lost had
    committed already (ours too, nothing lost)."""

    owned: list[bool]
    before: frozenset[str] = frozenset()


def timings_after(delivery: Delivery, stage: str, now_ms: int, elapsed: float) -> str:
    """The message's timings with this stage's appended: `stage,at_ms,ms`."""
    own = f"{stage},{now_ms},{int(elapsed * 1000)}"
    return f"{delivery.timings};{own}" if delivery.timings else own


def retry_member(stage: StageSpec, delivery: Delivery, outcome: RetryLater, timings: str) -> bytes:
    """The retry set's member (promote.lua reads it): a JSON header, a newline, the payload."""
    header = {
        "stream": stage.input_stream,
        "stage": stage.name,
        "job": delivery.job,
        "trace": delivery.trace,
        "attempt": delivery.attempt,
        "id": delivery.message_id,
        "error": outcome.error,
        "timings": timings,
        "fanout": "1" if delivery.fanout else "",
    }
    return orjson.dumps(header) + b"\n" + delivery.data


def _arguments(stage: StageSpec, finished: Finished, now_ms: int) -> tuple[Any, ...]:
    """What commit.lua takes for one message beyond its columns (its header lists them); a
    retry keeps the timings it came with: the stage that failed it has not passed it yet."""
    delivery, outcome, _ = finished
    if type(outcome) is Emit:
        return outcome.payloads
    if isinstance(outcome, RetryLater):
        due = now_ms + int(outcome.delay.total_seconds() * 1000)
        return str(due), retry_member(stage, delivery, outcome, delivery.timings)
    if isinstance(outcome, DeadLetter):
        return delivery.data, outcome.error, outcome.traceback, str(delivery.attempt)
    return ()


def _column(values: list[str], header: list[str], columns: list[list[str]]) -> None:
    """One value for all ("=X"), or the whole column ("*")."""
    first = values[0]
    if all(value == first for value in values):
        header.append("=" + first)
    else:
        header.append("*")
        columns.append(values)


def _span(ids: list[str]) -> tuple[str, str]:
    """A range of stream ids (`MS-SEQ`) that holds all of `ids`: whole milliseconds, from the
    first to the last, which is as good for the ownership query and needs no int() per id
    (digit strings of equal length compare as numbers do, and a longer one is larger)."""
    milliseconds = [message_id.partition("-")[0] for message_id in ids]
    if min(map(len, milliseconds)) == max(map(len, milliseconds)):  # all but always
        low, high = min(milliseconds), max(milliseconds)
    else:
        low, high = min(milliseconds, key=_as_number), max(milliseconds, key=_as_number)
    return f"{low}-0", f"{high}-{MAX_SEQUENCE}"


def _as_number(digits: str) -> tuple[int, str]:
    return len(digits), digits


async def commit(
    client: AsyncRedis,
    pipeline: PipelineSpec,
    stage: StageSpec,
    consumer: str,
    finished: Sequence[Finished],
    now_ms: int | None = None,
    repeated: bool = False,
) -> Committed:
    """Commit each message atomically. `repeated`: this call repeats one whose reply was lost,
    with that call's `now_ms`, so that what it committed is told apart from what another
    consumer took over meanwhile."""
    keys = pipeline.keys
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    name = stage.name
    own = f"{name},{now_ms},"  # this stage's timing: own + ms
    ids: list[str] = []
    jobs: list[str] = []
    kinds: list[str] = []
    counts: list[str] = []
    timings: list[str] = []
    traces: list[str] = []
    fanouts: list[str] = []
    rest: list[Any] = []
    for item in finished:
        delivery, outcome, elapsed = item
        message_id = delivery.message_id
        ids.append(message_id)
        jobs.append("" if delivery.job == message_id else delivery.job)
        carried = delivery.timings
        mine = f"{own}{int(elapsed * 1000)}"
        timings.append(f"{carried};{mine}" if carried else mine)
        traces.append(delivery.trace)
        fanouts.append("1" if delivery.fanout else "")
        if type(outcome) is Emit and len(outcome.payloads) == 1:  # the common case, first
            kinds.append("E")
            counts.append("1")
            rest.append(outcome.payloads[0])
            continue
        kinds.append(_KIND[type(outcome)])
        arguments = _arguments(stage, item, now_ms)
        counts.append(str(len(arguments)))
        rest.extend(arguments)
    header: list[str] = []
    columns: list[list[str]] = []
    if not any(jobs):
        header.append("@")  # every message is its own job (a source stage's bare entries)
    else:
        _column(jobs, header, columns)
    for values in (kinds, counts, timings, traces, fanouts):
        _column(values, header, columns)
    args: list[Any] = [
        name,
        consumer,
        str(now_ms),
        name,
        str(len(stage.consumers)),
        str(pipeline.result_ttl_seconds),
        "1" if stage.source else "0",
        keys.job(""),
        *_span(ids),
        str(len(ids)),
        "1" if repeated else "0",
        *header,
        *ids,
        *(value for column in columns for value in column),
        *rest,
    ]
    script_keys = [
        stage.input_stream,
        stage.output_stream,
        keys.dead,
        keys.retry,
        keys.done,
        keys.stats,
    ]
    lost, before = await scripts.script(scripts.COMMIT)(client, script_keys, args)
    committed_before = frozenset(text(message_id) for message_id in before)
    if not lost:
        return Committed([True] * len(finished), committed_before)
    gone = {text(message_id) for message_id in lost}
    return Committed([d.message_id not in gone for d, _, _ in finished], committed_before)
