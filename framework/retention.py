"""Trimming to `retention` that never passes an undelivered or unacknowledged entry.

Each worker trims the streams it touches, at most once a second; the safety rule lives in
`trim.lua`, which computes every group's floor in the same atomic step as the trim.
"""

from __future__ import annotations

import time
from datetime import timedelta

from framework import scripts
from framework.connection import AsyncClient
from framework.specs import Retention

# Bounded work per call keeps each script short; a stream far over its limit catches up over
# a few calls instead of blocking the server for one long one.
TRIM_LIMIT = 10_000


async def trim(
    client: AsyncClient,
    stream: str,
    retention: Retention,
    dead_letter_stats: str | None = None,
    results_for: timedelta | None = None,
) -> int:
    """Trim one stream as far as retention asks and safety allows; returns entries removed.
    For the dead-letter stream, `dead_letter_stats` is the stats hash whose per-stage tally
    the removed letters leave. For a last stage's output, whose entries are the jobs' results,
    `results_for` (result_ttl) keeps every entry younger than that."""
    if retention.max_len is None and retention.max_age is None:
        return 0
    max_len = "" if retention.max_len is None else retention.max_len
    oldest_kept = ""
    if retention.max_age is not None:
        oldest_kept = str(int((time.time() - retention.max_age.total_seconds()) * 1000))
    keys = [stream] if dead_letter_stats is None else [stream, dead_letter_stats]
    counting = "1" if dead_letter_stats is not None else "0"
    kept_since = ""
    if results_for is not None:
        kept_since = str(int((time.time() - results_for.total_seconds()) * 1000))
    removed = await scripts.script(scripts.TRIM)(
        client, keys, [max_len, oldest_kept, TRIM_LIMIT, counting, kept_since]
    )
    return int(removed)
