"""The public pytest helper: run a pipeline's workers in the test's own event loop.

    async def test_my_pipeline(tmp_path):
        async with running_pipeline("pipeline.yaml", redis_url=url) as pipeline:
            job = await pipeline.wait_async(await pipeline.submit_async({"text": "hi"}), 10)

Without `redis_url` the pipeline's own `redis.url` is used (`embedded` starts a redis-server
under `.pipeline/` beside pipeline.yaml and stops it afterwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import timedelta
from pathlib import Path

from framework.loader import load_spec
from framework.pipeline import Pipeline


@contextlib.asynccontextmanager
async def running_pipeline(
    path: str | Path,
    redis_url: str | None = None,
    stages: Iterable[str] | None = None,
    env: Mapping[str, str] | None = None,
    grace_period: timedelta = timedelta(seconds=10),
) -> AsyncIterator[Pipeline]:
    """Start workers for `stages` (all by default); stop them gracefully on exit."""
    environment = {**os.environ, **(env or {})}
    if redis_url is not None:
        environment.setdefault("REDIS_URL", redis_url)
    spec = load_spec(path, environment)
    if redis_url is not None:
        spec = dataclasses.replace(spec, redis_url=redis_url)
    pipeline = Pipeline(spec)
    stopping = asyncio.Event()
    await pipeline.client()
    workers = asyncio.create_task(
        pipeline.run_workers_async(stages, stopping, grace_period=grace_period)
    )
    try:
        yield pipeline
    finally:
        stopping.set()
        await workers
        await pipeline.close_async()
