"""What became of one message, and the pure retry policy that decides it.

The worker turns every stage call into exactly one outcome; `commit.lua` writes it. Keeping the
policy pure (no Redis, no clock) makes it testable on its own.
"""

from __future__ import annotations

import traceback as tb
from dataclasses import dataclass
from datetime import timedelta

from framework.errors import Fail, Retry
from framework.redact import redact


@dataclass(frozen=True, slots=True)
class Emit:
    """Outputs for the next stages (several for fan-out; at the last stage: the job's results)."""

    payloads: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Drop:
    """The function returned None: nothing goes on."""


@dataclass(frozen=True, slots=True)
class RetryLater:
    delay: timedelta
    error: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    error: str
    traceback: str = ""


@dataclass(frozen=True, slots=True)
class Skip:
    """A retry addressed to another stage that reads the same stream: acknowledge only."""


Outcome = Emit | Drop | RetryLater | DeadLetter | Skip


def backoff(attempt: int, first: timedelta, cap: timedelta) -> timedelta:
    """Exponential backoff: `first` after the first run, doubling, never over `cap`."""
    if first <= timedelta(0):
        return min(first, cap)  # a zero backoff stays zero, however many attempts
    doublings = max(attempt - 1, 0)
    # Once past the cap, stop doubling: `first * 2**doublings` would overflow timedelta (its
    # range ends at 999,999,999 days) after ~47 doublings of 1 s, or take memory without end.
    if cap < first or doublings >= (cap // first).bit_length():  # first * 2**doublings > cap
        return cap
    return first * (1 << doublings)


def describe(error: BaseException) -> str:
    """`Type: message`, with any credentials in a URL it names masked: this text becomes a
    dead letter's and a job's `error`, read by whoever can read the job."""
    text = redact(str(error))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def decide(
    error: BaseException,
    attempt: int,
    max_attempts: int,
    first_backoff: timedelta,
    max_backoff: timedelta,
) -> RetryLater | DeadLetter:
    """The retry policy: Fail dead-letters now; anything else retries until attempts run out."""
    if isinstance(error, Fail):
        return DeadLetter(f"Fail: {redact(error.reason)}")
    trace = redact("".join(tb.format_exception(error)))
    if attempt >= max_attempts:
        return DeadLetter(f"{describe(error)} (after {attempt} attempts)", trace)
    if isinstance(error, Retry) and error.after is not None:
        return RetryLater(error.after, describe(error))
    return RetryLater(backoff(attempt, first_backoff, max_backoff), describe(error))
