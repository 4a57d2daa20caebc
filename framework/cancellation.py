"""A cancel that a Redis command swallowed is acted on at the loop's next turn.

Python 3.11's asyncio.wait_for returns its awaitable's result when a cancel arrives in the same
loop turn as that result (CPython gh-86296, fixed in 3.12), and redis-py wraps every command's
send in it; so does a stage call's timeout. The caller's task then goes on with the cancel
lost: a loop that waits on Redis or on work until it is cancelled (the done stream's readers,
the committer, the runners) would wait for ever. The task still counts the cancel
(Task.cancelling), so each such loop checks the count once a turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def cancel_check() -> Callable[[], None]:
    """A check for this task's loop to call once a turn: CancelledError if the task has been
    cancelled since now (a cancel from before, which the task's caller chose to go on after,
    is not this loop's to act on)."""
    task = asyncio.current_task()
    if task is None:
        return _nothing
    floor = task.cancelling()

    def check() -> None:
        if task.cancelling() > floor:
            raise asyncio.CancelledError

    return check


def _nothing() -> None:
    pass
