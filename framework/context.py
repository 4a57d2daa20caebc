"""The Context handed to a stage function that asks for one (by annotation or by the name `ctx`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Context:
    """Where this call stands: which job, stage, attempt and message, plus a bound logger.

    `log` is a structlog logger already bound to pipeline, stage, job_id, message_id and
    attempt; `redis` is the worker's async client, for stages that keep their own state.
    For a `batch:` stage, `items` holds one Context per payload, in order, and the top-level
    fields describe the first item.
    """

    job_id: str
    stage: str
    attempt: int
    message_id: str
    log: Any
    redis: Any
    items: tuple[Context, ...] = field(default=())
