"""Replay: a stage runs again over its history, and only that stage; its jobs end done again.

Each replayed entry goes back onto the stage's input stream addressed to that stage alone, so
the stages after it run again (once per replayed entry) and the stage before it does not.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from pipelines import job_states, outputs_per_job, worker_env, write_pipeline
from servers import RedisServer

from framework.replay import bound, parse_point
from framework.testing import running_pipeline

SAME = "def same(doc):\n    return doc\n"
TWO_STAGES = 'one:\n  function: "{mod}:same"\ntwo:\n  function: "{mod}:same"'


async def pipeline_cli(folder: Path, redis_url: str, *args: str) -> tuple[int, str, str]:
    """`pipeline ARGS` as its own process, without blocking the workers in this event loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "framework",
        *args,
        cwd=folder,
        env=worker_env(redis_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_replaying_the_second_stage_runs_it_and_only_it_once_more_per_job(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    one, two = f"{{{pipeline_name}}}:one", f"{{{pipeline_name}}}:two"
    async with running_pipeline(path, redis7.url) as pipeline:
        jobs = await pipeline.submit_many_async([{"n": n} for n in range(5)])
        await pipeline.wait_all_async(jobs, timeout=10)

        code, out, err = await pipeline_cli(tmp_path, redis7.url, "replay", "two", "--from", "0-0")
        assert code == 0, err
        assert out.startswith("replayed 5 entries of two (0-0 .. "), out

        finished = await pipeline.wait_all_async(jobs, timeout=10)
    assert {job.state for job in finished.values()} == {"done"}
    with redis7.client() as client:
        assert outputs_per_job(client, two) == dict.fromkeys(jobs, 2)
        # Stage one's output is stage two's input: the replayed entries went onto it, addressed
        # to stage two; what stage one itself produced is still one entry per job.
        produced = Counter[str]()
        for _id, fields in client.xrange(one):
            produced[fields.get(b"for", b"").decode() or fields[b"job"].decode()] += 1
        assert produced == {**dict.fromkeys(jobs, 1), "two": 5}
        assert client.xlen(f"{{{pipeline_name}}}:input") == 5
        assert job_states(client, pipeline_name, jobs) == {"done": 5}


async def test_a_bare_entry_is_replayed_as_its_fields_under_its_entry_id(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    with redis7.client() as client:
        entry = client.xadd(f"{{{pipeline_name}}}:input", {"prompt": "early"}).decode()
    async with running_pipeline(path, redis7.url) as pipeline:
        await pipeline.wait_async(entry, timeout=10)
        code, out, err = await pipeline_cli(tmp_path, redis7.url, "replay", "one", "--from", "1h")
        assert code == 0, err
        assert out.startswith("replayed 1 entries of one"), out
        job = await pipeline.wait_async(entry, timeout=10)
    assert job.state == "done"
    with redis7.client() as client:
        outputs = client.xrange(f"{{{pipeline_name}}}:one")
    assert [fields[b"job"].decode() for _id, fields in outputs] == [entry, entry]
    assert [orjson.loads(fields[b"data"]) for _id, fields in outputs] == [{"prompt": "early"}] * 2


async def test_more_than_a_thousand_entries_need_yes(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    with redis7.client() as client:
        pipe = client.pipeline(transaction=False)
        for n in range(1001):
            pipe.xadd(f"{{{pipeline_name}}}:one", {"job": f"j{n}", "data": "{}"})
        pipe.execute()

    code, _, err = await pipeline_cli(tmp_path, redis7.url, "replay", "two", "--from", "0-0")
    assert code == 2
    assert "add --yes" in err
    assert err.strip().count("\n") == 0, err

    code, out, err = await pipeline_cli(
        tmp_path, redis7.url, "replay", "two", "--from", "0-0", "--yes"
    )
    assert code == 0, err
    assert out.startswith("replayed 1001 entries of two"), out
    with redis7.client() as client:
        assert client.xlen(f"{{{pipeline_name}}}:one") == 2002


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "nope", "--from", "0-0"], "unknown stage 'nope'"),
        (["replay", "two", "--from", "yesterday"], "--from: 'yesterday' is not an entry id"),
        (["replay", "two", "--from", "2026-13-40T00:00:00Z"], "is not an ISO-8601 time"),
        (["replay", "two", "--from", "0-0", "--to", "soon"], "--to: 'soon' is not"),
    ],
)
async def test_unknown_stages_and_bad_bounds_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    write_pipeline(tmp_path, "replay-usage", TWO_STAGES, SAME)
    code, _, err = await pipeline_cli(tmp_path, "redis://127.0.0.1:1", *args)
    assert code == 2, err
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0, err
    assert message in err


def test_bounds_are_entry_ids_times_or_durations_ago() -> None:
    assert parse_point("1700000000000-3") == "1700000000000-3"
    assert parse_point("2026-11-27T10:00:00Z") == str(
        int(datetime(2026, 11, 27, 10, tzinfo=UTC).timestamp() * 1000)
    )
    assert parse_point("2026-11-27T10:00:00") == parse_point("2026-11-27T10:00:00+00:00")
    assert parse_point("10m") == timedelta(minutes=10)
    assert bound(parse_point("10m"), 1_700_000_600_000) == "1700000000000"
    assert bound(parse_point("7d"), 1000) == "0"
    assert parse_point("1h ago") == timedelta(hours=1)
    # As Redis users write them: 0 (or -) is the beginning, a bare ms timestamp an entry's time.
    assert parse_point("0") == parse_point("-") == "0-0"
    assert parse_point("1700000000000") == "1700000000000"
    assert parse_point("90") == timedelta(seconds=90)
    with pytest.raises(ValueError, match="not an entry id"):
        parse_point("last tuesday")
