"""One call of `commit.lua` for a batch of finished messages: the only way a message leaves.

Grouping commits is what makes the framework cheap per message: while one batch is being
committed the next accumulates, so the round trips per message fall as load rises.
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


def _message(
    stage: StageSpec, delivery: Delivery, outcome: Outcome, elapsed: float, now_ms: int
) -> list[Any]:
    """One message as commit.lua reads it: [id, job, kind, trace, attempt, elapsed_ms, args]."""
    kind: str
    extra: list[Any]
    if type(outcome) is Emit and len(outcome.payloads) == 1:  # the common case, first
        kind, extra = "E", [outcome.payloads[0].decode()]
    elif isinstance(outcome, Emit):
        kind, extra = "E", [payload.decode() for payload in outcome.payloads]
    elif isinstance(outcome, Drop):
        kind, extra = "D", []
    elif isinstance(outcome, RetryLater):
        member = orjson.dumps(
            {
                "stream": stage.input_stream,
                "stage": stage.name,
                "job": delivery.job,
                "data": delivery.data.decode(),
                "trace": delivery.trace,
                "attempt": delivery.attempt,
                "id": delivery.message_id,
                "error": outcome.error,
            }
        ).decode()
        kind, extra = "R", [now_ms + int(outcome.delay.total_seconds() * 1000), member]
    elif isinstance(outcome, DeadLetter):
        kind, extra = (
            "X",
            [delivery.data.decode(errors="replace"), outcome.error, outcome.traceback],
        )
    elif isinstance(outcome, Skip):
        kind, extra = "S", []
    else:  # pragma: no cover - Outcome is a closed union
        raise TypeError(f"unknown outcome {outcome!r}")
    return [
        delivery.message_id,
        delivery.job,
        kind,
        delivery.trace,
        delivery.attempt,
        int(elapsed * 1000),
        extra,
    ]


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


@dataclass(frozen=True, slots=True)
class Committed:
    """What one commit.lua call did: per message, whether it was still ours (False: taken over
    by another consumer, its result dropped); and which of them a call whose reply was lost had
    committed already (ours too, nothing lost)."""

    owned: list[bool]
    before: frozenset[str] = frozenset()


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
    script_keys = [
        stage.input_stream,
        stage.output_stream,
        keys.dead,
        keys.retry,
        keys.done,
        keys.stats,
    ]
    ids: list[str] = []
    jobs: list[str] = []
    times: list[int] = []
    payloads: list[bytes] = []
    others = []
    for delivery, outcome, elapsed in finished:
        if type(outcome) is Emit and len(outcome.payloads) == 1 and not delivery.trace:
            message_id = delivery.message_id
            ids.append(message_id)
            jobs.append("" if delivery.job == message_id else delivery.job)
            times.append(int(elapsed * 1000))
            payloads.append(outcome.payloads[0])
        else:
            others.append(_message(stage, delivery, outcome, elapsed, now_ms))
    everyone = ids + [message[0] for message in others] if others else ids
    # A column whose values are all the same goes as one value (fast calls: all 0 ms; a
    # source stage's bare entries: each its own job), which Redis then need not read n times.
    same_time = str(times[0]) if times and min(times) == max(times) else ""
    own_jobs = not any(jobs)
    args: list[Any] = [
        stage.name,
        consumer,
        str(now_ms),
        stage.name,
        str(len(stage.consumers)),
        str(pipeline.result_ttl_seconds),
        "1" if stage.source else "0",
        keys.job(""),
        *_span(everyone),
        str(len(ids)),
        orjson.dumps(others) if others else "",
        same_time,
        "1" if own_jobs else "0",
        "1" if repeated else "0",
        *ids,
        *(() if own_jobs else jobs),
        *(() if same_time else times),
        *payloads,
    ]
    lost, before = await scripts.script(scripts.COMMIT)(client, script_keys, args)
    committed_before = frozenset(text(message_id) for message_id in before)
    if not lost:
        return Committed([True] * len(finished), committed_before)
    gone = {text(message_id) for message_id in lost}
    owned = [delivery.message_id not in gone for delivery, _, _ in finished]
    return Committed(owned, committed_before)
