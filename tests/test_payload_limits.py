"""A payload over max_payload written by another client is dead-lettered by the worker with
the reason, and the worker goes on; an output over the limit is dead-lettered, not written."""

from __future__ import annotations

from pathlib import Path

from pipelines import write_pipeline
from servers import RedisServer

from framework.testing import running_pipeline
from framework.wire import text

CODE = "def grow(doc):\n    return {'text': doc['text'] * doc.get('times', 1)}\n"


async def test_oversized_payloads_and_outputs_are_dead_lettered(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(
        tmp_path, pipeline_name, 'grow:\n  function: "{mod}:grow"', CODE, "max_payload: 1KiB"
    )
    async with running_pipeline(path, redis7.url) as pipeline:
        client = await pipeline.client()
        stream = f"{{{pipeline_name}}}:input"
        big_in = text(await client.xadd(stream, {"data": '{"text": "%s"}' % ("x" * 2000)}))
        big_out = await pipeline.submit_async({"text": "y" * 100, "times": 50})
        fine = await pipeline.submit_async({"text": "z"})
        jobs = await pipeline.wait_all_async([big_in, big_out, fine], timeout=10)
    assert jobs[fine].result == {"text": "z"}
    with redis7.client() as sync:
        letters = {
            f[b"job"].decode(): f[b"error"].decode()
            for _, f in sync.xrange(stream.replace("input", "dead"))
        }
    assert letters[big_in].startswith("payload is 2012 bytes, over max_payload 1024")
    assert letters[big_out].startswith("stage output is 5011 bytes, over max_payload 1024")
    assert jobs[big_in].state == jobs[big_out].state == "failed"
