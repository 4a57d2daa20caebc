"""A cancel that a Redis command swallowed is acted on at the loop's next turn.

Python 3.11's asyncio.wait_for returns its awaitable's result when a cancel arrives in the same
loop turn as that result (CPython gh-86296, fixed in 3.12), and redis-py wraps every command's
send in it. The caller's task then goes on with the cancel lost: a loop that waits on Redis
until it is cancelled (the done stream's readers, a worker's reader) would wait for ever. The
task still counts the cancel (Task.cancelling), so each such loop checks it once a turn.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """CancelledError if this task was cancelled and the cancel was lost on the way."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
