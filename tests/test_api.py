"""The HTTP API of `pipeline serve`, through an in-process ASGI transport: submit, read and wait
for jobs, statistics, health and the dashboard, and each refusal with its status code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from pipelines import write_pipeline
from servers import RedisServer

from framework.api import create_app
from framework.pipeline import Pipeline
from framework.testing import running_pipeline

SAME = "def same(doc):\n    return doc\n"
TWO_STAGES = 'one:\n  function: "{mod}:same"\ntwo:\n  function: "{mod}:same"'


@asynccontextmanager
async def http_client(pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(pipeline))
    async with httpx.AsyncClient(transport=transport, base_url="http://pipeline") as client:
        yield client


async def test_jobs_are_submitted_waited_for_and_read_back(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME, "max_payload: 1KiB")
    async with running_pipeline(path, redis7.url) as pipeline, http_client(pipeline) as http:
        submitted = await http.post("/jobs", json={"text": "hi"})
        assert submitted.status_code == 202
        job = submitted.json()["job"]

        waited = await http.get(f"/jobs/{job}/wait", params={"timeout": 10})
        assert waited.status_code == 200
        assert waited.json()["state"] == "done"

        read = await http.get(f"/jobs/{job}")
        assert read.status_code == 200
        assert read.json()["id"] == job
        assert read.json()["results"] == [{"text": "hi"}]
        assert set(read.json()["stages"]) == {"one", "two"}

        named = await http.post("/jobs", params={"job_id": "order-17"}, json={"text": "a"})
        assert (named.status_code, named.json()) == (202, {"job": "order-17"})
        await http.get("/jobs/order-17/wait", params={"timeout": 10})


async def test_refusals_have_their_status_codes(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME, "max_payload: 1KiB")
    async with running_pipeline(path, redis7.url) as pipeline, http_client(pipeline) as http:
        unknown = await http.get("/jobs/no-such-job")
        assert unknown.status_code == 404
        assert "not found" in unknown.json()["detail"]

        too_large = await http.post("/jobs", json={"text": "x" * 2000})
        assert too_large.status_code == 413
        assert "over max_payload 1024" in too_large.json()["detail"]

        not_json = await http.post(
            "/jobs", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 400
        assert not_json.json()["detail"].startswith("payload is not valid JSON: ")

        bad_id = await http.post("/jobs", json={"text": "a"}, params={"job_id": "a b"})
        assert bad_id.status_code == 422
    with redis7.client() as client:
        assert client.xlen(f"{{{pipeline_name}}}:input") == 0


async def test_a_full_first_stage_is_429_and_a_slow_job_408(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    stages = 'one:\n  function: "{mod}:same"\n  max_backlog: 1\ntwo:\n  function: "{mod}:same"'
    path = write_pipeline(tmp_path, pipeline_name, stages, SAME)
    pipeline = Pipeline.load(path, {"REDIS_URL": redis7.url})  # no workers: nothing finishes
    try:
        async with http_client(pipeline) as http:
            first = await http.post("/jobs", json={"text": "a"})
            assert first.status_code == 202
            full = await http.post("/jobs", json={"text": "b"})
            assert full.status_code == 429
            assert full.headers["retry-after"] == "1"
            waited = await http.get(f"/jobs/{first.json()['job']}/wait", params={"timeout": 0.2})
            assert waited.status_code == 408
    finally:
        await pipeline.close_async()


async def test_status_health_and_dashboard(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    async with running_pipeline(path, redis7.url) as pipeline, http_client(pipeline) as http:
        status = (await http.get("/status")).json()
        assert status["pipeline"] == pipeline_name
        assert [stage["stage"] for stage in status["stages"]] == ["one", "two"]
        assert {"length", "lag", "pending", "consumers", "throughput"} <= set(status["stages"][0])
        assert set(status["dead_letters"]) == {"total", "exact", "by_stage"}

        health = await http.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"ok": True})

        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<td>one</td>" in page.text
        assert "<td>two</td>" in page.text
        assert "http://" not in page.text
        assert "https://" not in page.text


async def test_without_redis_health_and_submit_are_503(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, "api-nowhere", TWO_STAGES, SAME)
    pipeline = Pipeline.load(path, {"REDIS_URL": "redis://127.0.0.1:1"}, redis_wait=0.2)
    async with http_client(pipeline) as http:
        health = await http.get("/healthz")
        assert health.status_code == 503
        assert health.json()["ok"] is False
        submitted = await http.post("/jobs", json={"text": "a"})
        assert submitted.status_code == 503
        assert "cannot reach Redis" in submitted.json()["detail"]


async def test_dead_letters_are_listed_retried_and_purged_over_http(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    code = "from framework import Fail\n\ndef no(doc):\n    raise Fail('never')\n"
    path = write_pipeline(tmp_path, pipeline_name, 'one:\n  function: "{mod}:no"', code)
    async with running_pipeline(path, redis7.url) as pipeline, http_client(pipeline) as http:
        jobs = [(await http.post("/jobs", json={"n": n})).json()["job"] for n in range(3)]
        for job in jobs:
            await http.get(f"/jobs/{job}/wait", params={"timeout": 10})
        letters = (await http.get("/dead", params={"limit": 2})).json()["letters"]
        assert len(letters) == 2
        assert letters[0]["error"] == "Fail: never"
        assert letters[0]["data"] == {"n": 2}, "newest first, payload as JSON"
        refused = await http.post("/dead/retry", json={"ids": ["x"], "all": True})
        assert refused.status_code == 422
        missing = await http.post("/dead/retry", json={"ids": ["1-1"]})
        assert missing.status_code == 404
        retried = await http.post("/dead/retry", json={"ids": [letters[0]["dead_id"]]})
        assert retried.json() == {"retried": 1, "skipped": 0}
        await http.get(f"/jobs/{jobs[2]}/wait", params={"timeout": 10})
        purged = await http.post("/dead/purge", json={"stage": "one"})
        assert purged.json() == {"purged": 3}
        assert (await http.get("/dead")).json() == {"letters": []}
