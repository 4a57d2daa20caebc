"""Job ids made before the first attempt to submit: UUIDv7 (RFC 9562), sortable by submit time.

A submit whose reply is lost may or may not have queued its job. With its id chosen here,
before anything is sent, the submit is sent again under the same id, and `submit.lua` queues
a job of that id at most once: a lost reply never makes a second job, and a caller that gets
an error has the id to ask about, or to submit again under.

The first 48 bits are the Unix time in milliseconds, so ids sort by submit time as text and as
bytes. The next 12 bits count up within a millisecond in this process (RFC 9562, method 1),
so ids one process makes keep their order within a millisecond too; 62 random bits make ids
from different processes and hosts unique.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0
_COUNTER_MAX = 0xFFF


def new_job_id() -> str:
    """A fresh UUIDv7 as text, e.g. `01938a6c-3f52-7000-8e1b-4c1d2f3a9b7e`."""
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms, _counter = now_ms, 0
        elif _counter < _COUNTER_MAX:
            _counter += 1
        else:  # 4,096 ids in one millisecond: borrow the next one, as RFC 9562 allows
            _last_ms, _counter = _last_ms + 1, 0
        ms, counter = _last_ms, _counter
    random = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | random
    return str(uuid.UUID(int=value))


def submitted_ms(job_id: str) -> int | None:
    """The millisecond a UUIDv7 job id was made in; None for ids of another form."""
    try:
        parsed = uuid.UUID(job_id)
    except ValueError:
        return None
    return parsed.int >> 80 if parsed.version == 7 else None
