"""A task of ours that waits on Redis in a loop stops when it is cancelled, whatever command
the cancel lands in.

Python 3.11's asyncio.wait_for, which redis-py puts around sending each command, returns the
command's result when the cancel arrives as the send completes, and the cancel is lost
(CPython gh-86296, fixed in 3.12). A waiting loop then blocked on the done stream for ever:
`pipeline run` hung, about one time in three, when a worker died while it read the jobs.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from pipelines import write_pipeline
from servers import RedisServer

from framework.pipeline import Pipeline

CODE = "def same(doc):\n    return doc\n"
STAGES = 'one:\n  function: "{mod}:same"'
JOBS = 2_000  # reading their hashes takes a few hundred ms: the cancels land mid-command
ATTEMPTS = 30


def test_a_cancelled_wait_for_jobs_stops_wherever_the_cancel_lands(
    redis_server: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, STAGES, CODE)
    chance = random.Random(7)
    with Pipeline.load(path, {"REDIS_URL": redis_server.url}) as pipeline:
        ids = pipeline.submit_many([{"n": n} for n in range(JOBS)])

        async def cancel_waits() -> list[float]:
            stuck = []
            for _ in range(ATTEMPTS):
                delay = chance.uniform(0.0, 0.3)
                waiting = asyncio.create_task(pipeline.wait_all_async(ids))
                await asyncio.sleep(delay)
                waiting.cancel()
                done, _ = await asyncio.wait({waiting}, timeout=5)
                if not done:
                    stuck.append(delay)
                    waiting.cancel()  # once more, for the next attempt's sake
                    await asyncio.wait({waiting}, timeout=5)
                else:
                    assert waiting.cancelled()
            await pipeline.close_async()  # this loop's client, before asyncio.run closes the loop
            return stuck

        stuck = asyncio.run(cancel_waits())
    assert stuck == [], f"{len(stuck)} of {ATTEMPTS} cancelled waits went on waiting"
