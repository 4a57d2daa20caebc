"""One call of `commit.lua` for a batch of finished messages: the only way a message leaves.

Grouping commits is what makes the framework cheap per message: while one batch is being
committed the next accumulates, so the round trips per message fall as load rises.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from framework import scripts
from framework.config import PipelineSpec, StageSpec
from framework.connection import AsyncClient
from framework.outcome import DeadLetter, Drop, Emit, Outcome, RetryLater, Skip
from framework.wire import Delivery

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
    """The lowest and highest of stream ids (`MS-SEQ`, compared as numbers), in one pass."""
    order = []
    for message_id in ids:
        milliseconds, _, sequence = message_id.partition("-")
        order.append((int(milliseconds), int(sequence), message_id))
    return min(order)[2], max(order)[2]


async def commit(
    client: AsyncClient,
    pipeline: PipelineSpec,
    stage: StageSpec,
    consumer: str,
    finished: Sequence[Finished],
) -> list[bool]:
    """Commit each message atomically; False where another consumer owns it now."""
    keys = pipeline.keys
    now_ms = int(time.time() * 1000)
    script_keys = [stage.input_stream, stage.output_stream, keys.dead, keys.retry, keys.done]
    ids = [delivery.message_id for delivery, _, _ in finished]
    batch = [_message(stage, d, outcome, elapsed, now_ms) for d, outcome, elapsed in finished]
    args: list[Any] = [
        stage.name,
        consumer,
        now_ms,
        stage.name,
        len(stage.consumers),
        max(int(pipeline.result_ttl.total_seconds()), 1),
        1 if stage.source else 0,
        keys.job(""),
        *_span(ids),
        orjson.dumps(batch),
    ]
    statuses = await scripts.script(scripts.COMMIT)(client, script_keys, args)
    return [bool(status) for status in statuses]
