"""`batch: N`: the function gets lists; each item is then acknowledged, retried or
dead-lettered on its own, and a poison item cannot keep sinking its neighbours."""

from __future__ import annotations

from pathlib import Path

from pipelines import write_pipeline
from servers import RedisServer

from framework.testing import running_pipeline

CODE = """
SIZES = []

def embed(docs):
    SIZES.append(len(docs))
    if any(doc.get("poison") for doc in docs):
        raise RuntimeError("one bad apple")
    return [{**doc, "vector": [doc["n"], 1]} for doc in docs]

def miscount(docs):
    return docs[:-1] if len(docs) > 1 else docs
"""

TOP = "defaults:\n  max_attempts: 3\n  retry_backoff: 50ms\n  retry_backoff_max: 50ms"


async def test_batch_results_go_to_their_own_jobs(
    redis_server: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(
        tmp_path, pipeline_name, 'embed:\n  function: "{mod}:embed"\n  batch: 16', CODE, TOP
    )
    async with running_pipeline(path, redis_server.url) as pipeline:
        ids = await pipeline.submit_many_async([{"n": n} for n in range(100)])
        jobs = await pipeline.wait_all_async(ids, timeout=20)
    assert [jobs[job_id].result["vector"][0] for job_id in ids] == list(range(100))
    import importlib

    sizes = importlib.import_module(f"stages_{pipeline_name.replace('-', '_')}.fns").SIZES
    assert max(sizes) > 1, "never called with more than one payload"
    assert max(sizes) <= 16


async def test_a_poison_item_is_dead_lettered_alone_and_its_neighbours_finish(
    redis_server: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(
        tmp_path, pipeline_name, 'embed:\n  function: "{mod}:embed"\n  batch: 8', CODE, TOP
    )
    async with running_pipeline(path, redis_server.url) as pipeline:
        poison = await pipeline.submit_async({"n": -1, "poison": True})
        others = await pipeline.submit_many_async([{"n": n} for n in range(20)])
        jobs = await pipeline.wait_all_async([poison, *others], timeout=20)
    assert jobs[poison].state == "failed"
    error = jobs[poison].error
    assert error is not None
    assert "one bad apple" in error
    assert all(jobs[job_id].state == "done" for job_id in others)
    with redis_server.client() as client:
        letters = client.xrange(f"{{{pipeline_name}}}:dead")
    assert [fields[b"job"].decode() for _id, fields in letters] == [poison]
    assert letters[0][1][b"attempts"] == b"3"


async def test_a_batch_function_returning_the_wrong_count_fails_its_items(
    redis_server: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(
        tmp_path, pipeline_name, 'embed:\n  function: "{mod}:miscount"\n  batch: 4', CODE, TOP
    )
    async with running_pipeline(path, redis_server.url) as pipeline:
        ids = await pipeline.submit_many_async([{"n": n} for n in range(8)])
        jobs = await pipeline.wait_all_async(ids, timeout=20)
    # Retried items run alone, where the function returns one result for one payload.
    assert all(job.state == "done" for job in jobs.values())
