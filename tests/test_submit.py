"""Submit: idempotent by job id, refuses bad payloads before writing, and creates every
consumer group first, so work queued before any worker ran (ours or another app's) is done."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path
from typing import Any

import pytest
from pipelines import write_pipeline
from servers import RedisServer

from framework import PayloadError, RedisUnavailable, SubmitCutShort
from framework.pipeline import Pipeline
from framework.testing import running_pipeline
from framework.wire import range_reply

CODE = "def same(doc):\n    return doc\n"
STAGES = 'one:\n  function: "{mod}:same"\ntwo:\n  function: "{mod}:same"\n  start: new'


def test_the_same_job_id_twice_makes_one_job(
    redis_server: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, STAGES, CODE)
    with Pipeline.load(path, {"REDIS_URL": redis_server.url}) as pipeline:
        first = pipeline.submit({"text": "a"}, job_id="order-17")
        again = pipeline.submit({"text": "a"}, job_id="order-17")
        assert first == again == "order-17"
        assert pipeline.status("order-17").state == "queued"
    with redis_server.client() as client:
        assert client.xlen(f"{{{pipeline_name}}}:input") == 1
        groups = {g["name"].decode() for g in client.xinfo_groups(f"{{{pipeline_name}}}:input")}
        assert groups == {"one"}, "groups exist before any worker ran"
        assert {g["name"].decode() for g in client.xinfo_groups(f"{{{pipeline_name}}}:one")} == {
            "two"
        }
        client.delete(f"{{{pipeline_name}}}:job:order-17")


# A loop that `asyncio.run` closed took no care of the sockets opened on it: the pipeline
# drops that client and the garbage collector closes them, which Python reports as a
# ResourceWarning (and pytest, here, as an unraisable exception).
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_one_pipeline_serves_the_sync_api_and_one_event_loop_after_another(
    redis_server: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, STAGES, CODE)
    with Pipeline.load(path, {"REDIS_URL": redis_server.url}) as pipeline:
        ids = [pipeline.submit({"n": 0})]
        ids.append(asyncio.run(pipeline.submit_async({"n": 1})))  # a loop of the caller's
        ids.append(asyncio.run(pipeline.submit_async({"n": 2})))  # and another, after it closed
        ids.append(pipeline.submit({"n": 3}))
        assert [pipeline.status(job).state for job in ids] == ["queued"] * 4
    with redis_server.client() as client:
        assert client.xlen(f"{{{pipeline_name}}}:input") == 4
    gc.collect()  # those sockets' warnings, here rather than in whichever test comes next


def test_payloads_that_are_not_json_or_too_large_are_refused_and_nothing_is_written(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, STAGES, CODE, "max_payload: 1KiB")
    with Pipeline.load(path, {"REDIS_URL": redis7.url}) as pipeline:
        with pytest.raises(PayloadError, match="over max_payload 1024"):
            pipeline.submit({"text": "x" * 2000})
        with pytest.raises(PayloadError, match="not JSON"):
            pipeline.submit({"when": object()})
    with redis7.client() as client:
        assert client.xlen(f"{{{pipeline_name}}}:input") == 0


def test_unreachable_redis_is_one_clear_error_after_the_wait(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, "nowhere", STAGES, CODE)
    started = time.monotonic()
    with (
        Pipeline.load(path, {"REDIS_URL": "redis://127.0.0.1:1"}, redis_wait=1) as pipeline,
        pytest.raises(
            RedisUnavailable, match=r"cannot reach Redis at redis://127\.0\.0\.1:1 \(waited 1s\)"
        ),
    ):
        pipeline.submit({"text": "a"})
    assert 1 <= time.monotonic() - started < 10


async def test_entries_xadded_before_any_worker_or_submit_are_processed(
    redis_server: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    with redis_server.client() as client:
        entry = client.xadd(f"{{{pipeline_name}}}:input", {"prompt": "early"}).decode()
    path = write_pipeline(tmp_path, pipeline_name, STAGES, CODE)
    async with running_pipeline(path, redis_server.url) as pipeline:
        job = await pipeline.wait_async(entry, timeout=10)
    assert job.result == {"prompt": "early"}


async def test_a_submit_redis_stops_part_way_says_what_was_queued_and_what_is_unknown(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two jobs per round trip; as the second is made ready, Redis reaches maxmemory and
    # refuses it (a real refusal of a real server: the hook only picks the moment), for longer
    # than the submit waits.
    monkeypatch.setattr("framework.pipeline.SUBMIT_CHUNK", 2)
    made = Pipeline._submit_calls
    client = redis7.client()

    def at_maxmemory_from_the_second(self: Pipeline, chunk: Any, trace: str, now: int) -> Any:
        made_calls.append(1)
        if len(made_calls) == 2:
            client.config_set("maxmemory", 1)
        return made(self, chunk, trace, now)

    made_calls: list[int] = []
    monkeypatch.setattr(Pipeline, "_submit_calls", at_maxmemory_from_the_second)
    path = write_pipeline(tmp_path, pipeline_name, STAGES, CODE)
    pipeline = Pipeline.load(path, {"REDIS_URL": redis7.url}, redis_wait=0.5)
    try:
        with pytest.raises(SubmitCutShort) as cut:
            await pipeline.submit_many_async([{"n": n} for n in range(6)])
    finally:
        client.config_set("maxmemory", 0)
        await pipeline.close_async()
    assert [position for position, _ in cut.value.queued] == [0, 1]
    assert (cut.value.unknown, cut.value.not_queued) == ([2, 3], [4, 5])
    assert "command not allowed when used memory" in str(cut.value)
    queued = [
        f[b"job"].decode() for _, f in range_reply(client.xrange(f"{{{pipeline_name}}}:input"))
    ]
    assert queued == [job for _, job in cut.value.queued]
    assert queued == cut.value.job_ids[:2]
    assert len(set(cut.value.job_ids)) == 6, "every job had its id before the first attempt"
    client.close()
