"""The commit step (commit.lua through `commit_call.commit`): a message leaves its stage's
pending list only together with its outputs, dead letter or retry, and only if this consumer
still owns it; repeating a commit, or committing a message twice in one batch, writes nothing
twice; job hashes count messages in flight once a job fans out, carry per-stage timings from
the messages when the job ends, and end jobs done or failed.

Driven directly, without worker processes, so that each case sets up exactly the ownership and
outcomes it is about, on both supported Redis versions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import structlog
from servers import RedisServer

from framework import loader
from framework.connection import connect
from framework.groups import ensure_groups
from framework.jobs import read_job
from framework.outcome import DeadLetter, Drop, Emit, RetryLater, Skip
from framework.specs import PipelineSpec, StageSpec
from framework.wire import Delivery, decode_flat_entry, raw_read_entries
from framework.worker import commit_call
from framework.worker.backpressure import Gate
from framework.worker.channels import Channel, open_channel
from framework.worker.commit_call import Finished
from framework.worker.committer import CLOSE_TIMEOUT, Committer
from framework.worker.holdings import Holdings
from framework.worker.inbox import Inbox

# a -> b -> c, and d reading a as well (so a's outputs go to two groups).
STAGES = """
name: {name}
stages:
  a: {{function: "x:y"}}
  b: {{function: "x:y"}}
  c: {{function: "x:y"}}
  d: {{function: "x:y", input: a}}
"""


@pytest.fixture
async def spec(pipeline_name: str, tmp_path: Path, redis_server: RedisServer) -> PipelineSpec:
    path = tmp_path / "pipeline.yaml"
    path.write_text(STAGES.format(name=pipeline_name))
    spec = loader.load_spec(path, env={"REDIS_URL": redis_server.url})
    client, _ = await connect(redis_server.url)
    await ensure_groups(client, spec)
    await client.aclose()
    return spec


@pytest.fixture
async def channel(redis_server: RedisServer) -> AsyncIterator[Channel]:
    opened = await open_channel(redis_server.url)
    yield opened
    await opened.aclose()


def stage(spec: PipelineSpec, name: str) -> StageSpec:
    return spec.stage(name)


def held(spec: PipelineSpec) -> Holdings:
    """A worker's holdings for stage a, with no stage downstream to hold it back."""
    # No stage downstream: the gate never asks Redis anything, so it needs no client.
    gate = Gate(None, [])  # type: ignore[arg-type]
    return Holdings(stage(spec, "a"), Inbox(), gate, structlog.get_logger())


async def deliver(channel: Channel, stage: StageSpec, consumer: str = "c1") -> list[Delivery]:
    reply = await channel.execute(
        *("XREADGROUP", "GROUP", stage.name, consumer, "COUNT", 1000),
        *("STREAMS", stage.input_stream, ">"),
    )
    return [decode_flat_entry(message_id, flat) for message_id, flat in raw_read_entries(reply)]


def emitted(deliveries: list[Delivery], *payloads: bytes) -> list[Finished]:
    return [(d, Emit(payloads or (d.data,)), 0.002) for d in deliveries]


async def commit(
    channel: Channel, spec: PipelineSpec, name: str, finished: list[Finished], consumer: str = "c1"
) -> list[bool]:
    return (await commit_call.commit(channel, spec, stage(spec, name), consumer, finished)).owned


def pending(server: RedisServer, stream: str, group: str) -> int:
    with server.client() as client:
        return int(client.xpending(stream, group)["pending"])


def job(server: RedisServer, spec: PipelineSpec, job_id: str) -> dict[str, str]:
    with server.client() as client:
        raw = client.hgetall(spec.keys.job(job_id))
    return {k.decode(): v.decode() for k, v in raw.items()}


def entries(server: RedisServer, stream: str) -> list[dict[str, str]]:
    with server.client() as client:
        return [
            {k.decode(): v.decode() for k, v in fields.items()}
            for _id, fields in client.xrange(stream)
        ]


def add_bare(server: RedisServer, spec: PipelineSpec, count: int) -> list[str]:
    with server.client() as client:
        return [
            client.xadd(spec.keys.input, {"data": f'{{"n": {n}}}'}).decode() for n in range(count)
        ]


async def through(channel: Channel, spec: PipelineSpec, *names: str) -> None:
    """Read each named stage's input and pass every message on unchanged."""
    for name in names:
        assert all(
            await commit(channel, spec, name, emitted(await deliver(channel, stage(spec, name))))
        )


async def test_a_plain_batch_goes_on_once_and_its_jobs_are_tracked_to_the_end(
    redis_server: RedisServer, spec: PipelineSpec, channel: Channel
) -> None:
    ids = add_bare(redis_server, spec, 50)
    await through(channel, spec, "a")
    assert pending(redis_server, spec.keys.input, "a") == 0
    outputs = entries(redis_server, spec.keys.stage("a"))
    assert [o["job"] for o in outputs] == ids  # an entry with no job field is its own job
    started = job(redis_server, spec, ids[0])
    assert started["state"] == "running"
    assert started["outstanding"] == "2"  # a's output is read by b and by d: it fans out
    assert started["submitted"] == ids[0].split("-")[0]
    assert "a.at" not in started  # timings travel with the messages until the job ends
    stage_a, at_ms, ms = outputs[0]["timings"].split(",")
    assert (stage_a, ms, outputs[0]["fanout"]) == ("a", "2", "1")

    await through(channel, spec, "d")  # a leaf (nothing reads d): one of two messages is out
    halfway = job(redis_server, spec, ids[0])
    assert halfway["state"] == "running"
    assert halfway["outstanding"] == "1"
    assert f"result.d.{ids[0]}.1" not in halfway  # keyed by the id of d's input message
    assert sum(k.startswith("result.") for k in halfway) == 1
    assert (halfway["a.at"], halfway["a.ms"], halfway["d.ms"]) == (at_ms, "2", "2")
    assert entries(redis_server, spec.keys.done) == []
    await through(channel, spec, "b")
    assert entries(redis_server, spec.keys.stage("b"))[0]["timings"].startswith(f"a,{at_ms},2;b,")
    assert entries(redis_server, spec.keys.done) == []


async def test_jobs_end_when_every_leaf_is_through_with_results_and_a_done_entry(
    redis_server: RedisServer, spec: PipelineSpec, channel: Channel
) -> None:
    ids = add_bare(redis_server, spec, 20)
    await through(channel, spec, "a", "b", "c")
    await through(channel, spec, "d")
    done = entries(redis_server, spec.keys.done)
    assert sorted(e["job"] for e in done) == sorted(ids)
    assert {e["state"] for e in done} == {"done"}
    ended = job(redis_server, spec, ids[3])
    assert ended["state"] == "done"
    assert ended["outstanding"] == "0"
    assert {"a.at", "b.at", "c.at", "d.at"} <= set(ended)
    references = [v for k, v in ended.items() if k.startswith("result.")]
    assert len(references) == 2  # entry ids in c's and d's streams: each result stored once
    client, _ = await connect(redis_server.url)
    try:
        read = await read_job(client, spec.keys, ids[3], [s.name for s in spec.stages])
    finally:
        await client.aclose()
    assert read.results == [{"n": 3}] * 2
    with redis_server.client() as client:
        assert 0 < client.ttl(spec.keys.job(ids[3])) <= int(spec.result_ttl.total_seconds())


async def test_two_last_stages_keep_both_results_when_their_inputs_have_the_same_id(
    redis_server: RedisServer, spec: PipelineSpec, channel: Channel
) -> None:
    # c reads b's stream and d reads a's: two streams can hold an entry with the same id (XADD
    # in the same millisecond), and then both results must still be in the job's hash.
    job_id = "1-0"
    with redis_server.client() as client:
        client.hset(spec.keys.job(job_id), mapping={"state": "running", "outstanding": 2})
        for stream in (spec.keys.stage("a"), spec.keys.stage("b")):
            data = b'{"via": "' + stream.encode() + b'"}'
            client.xadd(stream, {"job": job_id, "data": data, "fanout": "1"}, id="5-0")
    for name in ("c", "d"):
        delivered = await deliver(channel, stage(spec, name))
        assert [d.message_id for d in delivered] == ["5-0"]
        assert all(await commit(channel, spec, name, emitted(delivered)))
    ended = job(redis_server, spec, job_id)
    assert ended["state"] == "done"
    assert sorted(k for k in ended if k.startswith("result.")) == [
        "result.c.5-0.1",
        "result.d.5-0.1",
    ]
    client, _ = await connect(redis_server.url)
    try:
        read = await read_job(client, spec.keys, job_id, [s.name for s in spec.stages])
    finally:
        await client.aclose()
    assert read.results == [{"via": spec.keys.stage("b")}, {"via": spec.keys.stage("a")}]


async def test_a_repeated_commit_writes_nothing_twice(
    redis_server: RedisServer, spec: PipelineSpec, channel: Channel
) -> None:
    add_bare(redis_server, spec, 10)
    finished = emitted(await deliver(channel, stage(spec, "a")))
    assert all(await commit(channel, spec, "a", finished))
    again = await commit(channel, spec, "a", finished)  # as after a lost reply
    assert again == [False] * 10
    assert len(entries(redis_server, spec.keys.stage("a"))) == 10


async def test_a_repeat_after_a_lost_reply_tells_its_own_commits_from_a_takeover(
    redis_server: RedisServer, spec: PipelineSpec, channel: Channel
) -> None:
    """Another consumer took two of five messages over (one it has committed since, one not
    yet); the first call committed the other three, and its reply was lost. The repeat names
    the three as committed before, and only the two others as lost."""
    add_bare(redis_server, spec, 5)
    deliveries = await deliver(channel, stage(spec, "a"))
    taken, committed_by_other = deliveries[3].message_id, deliveries[4]
    with redis_server.client() as client:
        client.xclaim(spec.keys.input, "a", "c2", 0, [taken, committed_by_other.message_id])
    assert await commit(channel, spec, "a", emitted([committed_by_other]), consumer="c2") == [True]
    now_ms = 1_700_000_000_000
    first = await commit_call.commit(
        channel, spec, stage(spec, "a"), "c1", emitted(deliveries), now_ms
    )
    assert first.owned == [True, True, True, False, False]  # the reply that was lost
    repeat = await commit_call.commit(
        channel, spec, stage(spec, "a"), "c1", emitted(deliveries), now_ms, repeated=True
    )
    assert repeat.owned == [True, True, True, False, False]
    assert repeat.before == {d.message_id for d in deliveries[:3]}
    assert len(entries(redis_server, spec.keys.stage("a"))) == 4, "nothing written twice"
    not_repeated = await commit_call.commit(
        channel, spec, stage(spec, "a"), "c1", emitted(deliveries[:1]), now_ms
    )
    assert (not_repeated.owned, not_repeated.before) == ([False], frozenset())


async def test_a_message_another_consumer_reclaimed_is_left_to_it(
    redis_server: RedisServer, spec: PipelineSpec, channel: Channel
) -> None:
    add_bare(redis_server, spec, 5)
    deliveries = await deliver(channel, stage(spec, "a"))
    taken = deliveries[2].message_id
    with redis_server.client() as client:
        client.xclaim(spec.keys.input, "a", "c2", 0, [taken], justid=True)
    statuses = await commit(channel, spec, "a", emitted(deliveries))
    assert statuses == [True, True, False, True, True]
    assert taken not in {o["job"] for o in entries(redis_server, spec.keys.stage("a"))}
    with redis_server.client() as client:
        still = client.xpending_range(spec.keys.input, "a", "-", "+", 10)
    assert [(p["message_id"].decode(), p["consumer"].decode()) for p in still] == [(taken, "c2")]


async def test_the_same_message_twice_in_one_batch_goes_on_once(
    redis_server: RedisServer, spec: PipelineSpec, channel: Channel
) -> None:
    add_bare(redis_server, spec, 3)
    deliveries = await deliver(channel, stage(spec, "a"))
    statuses = await commit(channel, spec, "a", emitted([*deliveries, deliveries[1]]))
    assert statuses[:3] == [True, True, True]
    assert len(entries(redis_server, spec.keys.stage("a"))) == 3
    assert pending(redis_server, spec.keys.input, "a") == 0


async def test_every_kind_of_outcome_in_one_batch(
    redis_server: RedisServer, spec: PipelineSpec, channel: Channel
) -> None:
    ids = add_bare(redis_server, spec, 7)
    await through(channel, spec, "a", "d", "b")
    deliveries = {d.job: d for d in await deliver(channel, stage(spec, "c"))}
    traced = deliveries[ids[6]]
    traced.trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    due = int(timedelta(minutes=5).total_seconds() * 1000)
    finished: list[Finished] = [
        (deliveries[ids[0]], Emit((b'{"x": 1}',)), 0.001),
        (deliveries[ids[1]], Emit((b'{"x": 1}', b'{"x": 2}')), 0.001),
        (deliveries[ids[2]], Drop(), 0.001),
        (deliveries[ids[3]], RetryLater(timedelta(minutes=5), "ValueError: later"), 0.001),
        (deliveries[ids[4]], DeadLetter("Fail: not for us", "Traceback ..."), 0.001),
        (deliveries[ids[5]], Skip(), 0.0),
        (traced, Emit((b'{"x": 3}',)), 0.001),
    ]
    assert all(await commit(channel, spec, "c", finished))
    assert pending(redis_server, spec.stage("b").output_stream, "c") == 0
    outputs = entries(redis_server, spec.keys.stage("c"))
    assert [o["job"] for o in outputs] == [ids[0], ids[1], ids[1], ids[6]]
    assert outputs[-1]["trace"] == traced.trace
    states = {job_id: job(redis_server, spec, job_id) for job_id in ids}
    assert states[ids[0]]["state"] == "done"
    assert sum(k.startswith("result.") for k in states[ids[1]]) == 3  # d's one, c's two
    assert states[ids[1]]["state"] == "done"
    assert states[ids[2]]["state"] == "done"  # dropped: nothing left in flight
    assert states[ids[3]]["state"] == "running"  # waiting for its retry
    assert states[ids[4]]["state"] == "failed"
    assert states[ids[4]]["error"] == "c: Fail: not for us"
    assert states[ids[5]]["state"] == "running"  # a skip is not this stage's to account
    assert states[ids[6]]["state"] == "done"
    with redis_server.client() as client:
        retries = client.zrange(spec.keys.retry, 0, -1, withscores=True)
    assert len(retries) == 1
    assert retries[0][1] >= due
    dead = entries(redis_server, spec.keys.dead)
    assert [(d["stage"], d["job"], d["error"]) for d in dead] == [("c", ids[4], "Fail: not for us")]


async def test_a_fanned_out_job_ends_with_its_last_message_and_fails_with_a_dead_one(
    redis_server: RedisServer, spec: PipelineSpec, channel: Channel
) -> None:
    ids = add_bare(redis_server, spec, 2)
    await through(channel, spec, "a", "d")
    three = (b'{"part": 1}', b'{"part": 2}', b'{"part": 3}')
    assert all(
        await commit(channel, spec, "b", emitted(await deliver(channel, stage(spec, "b")), *three))
    )
    assert job(redis_server, spec, ids[0])["outstanding"] == "3"
    parts = await deliver(channel, stage(spec, "c"))
    first = [d for d in parts if d.job == ids[0]]
    second = [d for d in parts if d.job == ids[1]]
    assert all(await commit(channel, spec, "c", emitted(first[:2])))
    assert job(redis_server, spec, ids[0])["state"] == "running"
    assert all(await commit(channel, spec, "c", emitted(first[2:])))
    assert job(redis_server, spec, ids[0])["state"] == "done"
    dead_one = [(second[0], DeadLetter("ValueError: bad part (after 3 attempts)"), 0.0)]
    assert all(await commit(channel, spec, "c", [*dead_one, *emitted(second[1:])]))
    ended = job(redis_server, spec, ids[1])
    assert ended["state"] == "failed"
    assert ended["failed"] == "1"
    assert [e["state"] for e in entries(redis_server, spec.keys.done)] == ["done", "failed"]


async def test_a_commit_works_after_the_server_forgot_its_scripts(
    redis_server: RedisServer, spec: PipelineSpec, channel: Channel
) -> None:
    add_bare(redis_server, spec, 3)
    deliveries = await deliver(channel, stage(spec, "a"))
    with redis_server.client() as client:
        client.script_flush()
    assert all(await commit(channel, spec, "a", emitted(deliveries)))


async def test_ids_of_any_length_are_in_the_ownership_span(
    redis_server: RedisServer, spec: PipelineSpec, channel: Channel
) -> None:
    """Entry ids whose millisecond parts differ in length (explicit ids on the input stream)."""
    with redis_server.client() as client:
        for entry_id in ("9-1", "10-2", "100000-3"):
            client.xadd(spec.keys.input, {"data": "{}"}, id=entry_id)
    deliveries = await deliver(channel, stage(spec, "a"))
    assert all(await commit(channel, spec, "a", emitted(deliveries)))
    assert pending(redis_server, spec.keys.input, "a") == 0


async def test_each_message_keeps_its_own_job_and_timing(
    redis_server: RedisServer, spec: PipelineSpec, channel: Channel
) -> None:
    """Jobs named by their entry next to bare ones, and calls of different lengths."""
    bare = add_bare(redis_server, spec, 2)
    with redis_server.client() as client:
        client.xadd(spec.keys.input, {"job": "report-7", "data": "{}"})
    deliveries = await deliver(channel, stage(spec, "a"))
    seconds = (0.001, 0.0, 0.25)
    finished: list[Finished] = [
        (d, Emit((d.data,)), s) for d, s in zip(deliveries, seconds, strict=True)
    ]
    assert all(await commit(channel, spec, "a", finished))
    outputs = entries(redis_server, spec.keys.stage("a"))
    assert [o["job"] for o in outputs] == [*bare, "report-7"]
    assert [o["timings"].rpartition(",")[2] for o in outputs] == ["1", "0", "250"]
    assert job(redis_server, spec, "report-7")["outstanding"] == "2"


async def test_a_closing_committer_commits_what_finished_then_stops(
    redis_server: RedisServer, spec: PipelineSpec, channel: Channel
) -> None:
    add_bare(redis_server, spec, 30)
    holdings = held(spec)
    committer = Committer(channel, spec, stage(spec, "a"), "c1", holdings, structlog.get_logger())
    task = asyncio.ensure_future(committer.run())
    for finished in emitted(await deliver(channel, stage(spec, "a"))):
        holdings.accept([finished[0]])
        committer.add([finished])
    assert len(holdings) == 30
    started = time.monotonic()
    await committer.close(task)  # right away: the 30 are not committed yet
    assert time.monotonic() - started < CLOSE_TIMEOUT / 2  # it did not wait to be cut short
    assert task.done()
    assert len(holdings) == 0, "each was committed and settled"
    assert pending(redis_server, spec.keys.input, "a") == 0


async def test_an_idle_committer_stops_at_once(spec: PipelineSpec, channel: Channel) -> None:
    committer = Committer(channel, spec, stage(spec, "a"), "c1", held(spec), structlog.get_logger())
    task = asyncio.ensure_future(committer.run())
    await asyncio.sleep(0.01)
    started = time.monotonic()
    await committer.close(task)
    assert time.monotonic() - started < CLOSE_TIMEOUT / 2
    assert task.done()
