"""Every Redis key, group and consumer name of a pipeline; no other module builds a key.

All keys share the hash tag `{NAME}`, so one pipeline lives in one cluster slot and a Lua
script may touch any of them in one atomic step.
"""

from __future__ import annotations

import itertools
import os
import socket
from dataclasses import dataclass

RESERVED_STAGE_NAMES = frozenset({"input", "dead", "retry", "done", "job", "stats"})

_consumer_counter = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Keys:
    """The key names of one pipeline."""

    name: str

    @property
    def prefix(self) -> str:
        return "{" + self.name + "}"

    @property
    def input(self) -> str:
        return f"{self.prefix}:input"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    @property
    def retry(self) -> str:
        return f"{self.prefix}:retry"

    @property
    def done(self) -> str:
        return f"{self.prefix}:done"

    @property
    def stats(self) -> str:
        """Counts by stage (outputs, dead letters, waiting retries), for status."""
        return f"{self.prefix}:stats"

    def stage(self, stage: str) -> str:
        """The stream holding what `stage` produced."""
        return f"{self.prefix}:{stage}"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"


def consumer_name() -> str:
    """`HOSTNAME-PID-N`: unique per worker in a process; tells `XINFO CONSUMERS` who holds what."""
    return f"{socket.gethostname()}-{os.getpid()}-{next(_consumer_counter)}"
