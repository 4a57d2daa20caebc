"""How many messages one worker holds: enough to keep its runners busy and its reads and
commits batched, never so many that another worker of the stage waits for work this one
hoards.

The rule adapts to the measured time of a call (per message, a running average):

    held = clamp(concurrency * WINDOW / call_time,
                 low  = concurrency, or for `batch:` 2 * concurrency * batch,
                 high = min(MOST, concurrency * LEASE_SHARE * lease / call_time))

- A fast stage (a no-op, a transform: microseconds a call) holds up to MOST (256), so each
  read and each commit carries about a hundred messages.
- A slow stage (a model call: seconds) holds what its runners are running and no more: a
  message waiting in one worker's hands is a message an idle worker of the stage could run.
  Two workers of a slow stage therefore split its backlog as their runners free up, not as
  they read.
- In between, a worker holds about WINDOW (a quarter of a second) of work per runner, and
  never more than it finishes within a quarter of the lease (held messages are renewed, but a
  worker that dies leaves them waiting a lease).

The least is what keeps every runner busy: a message each, or for a `batch:` function a full
batch running and the next one ready (with one batch's worth only, a runner that finishes
takes the few read meanwhile and runs a batch of them, then a batch of the rest, alternating).
Until the first calls are measured it holds that least. `prefetch:` in pipeline.yaml fixes the
number instead.
"""

from __future__ import annotations

import math
from datetime import timedelta

WINDOW = 0.25  # seconds of work per runner worth holding
LEASE_SHARE = 0.25  # of the lease: the most held work may take to finish
MOST = 256  # messages held at most by the rule (a commit carries up to 500)
SMOOTHING = 0.2  # weight of the newest measure in the running average


class ReadAhead:
    """The rule above for one worker; `observe` feeds it what calls took."""

    def __init__(
        self, concurrency: int, batch: int | None, lease: timedelta, prefetch: int | None = None
    ) -> None:
        self.concurrency = concurrency
        self.fewest = concurrency * 2 * batch if batch else concurrency
        self.lease = lease.total_seconds()
        self.fixed = prefetch
        self.call_time: float | None = None  # seconds per message, smoothed

    def observe(self, seconds: float, messages: int = 1) -> None:
        """`messages` calls took `seconds` in all (a batch of them, or one)."""
        if messages <= 0:
            return
        per_message = max(seconds / messages, 1e-6)
        if self.call_time is None:
            self.call_time = per_message
        else:
            self.call_time += SMOOTHING * (per_message - self.call_time)

    @property
    def capacity(self) -> int:
        """Messages to hold now (running ones included)."""
        if self.fixed is not None:
            return self.fixed
        if self.call_time is None:
            return self.fewest
        busy = self.concurrency * WINDOW / self.call_time
        bound = min(MOST, self.concurrency * LEASE_SHARE * self.lease / self.call_time)
        return max(self.fewest, math.floor(min(busy, bound)))
