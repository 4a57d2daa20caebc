"""`pipeline serve` in front of untrusted clients: the token, the body limit enforced while
reading, JSON only, no CORS, no file names, an answer for a repeated job id, capped waits
that share one connection, and the refusal to listen beyond loopback without a token."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TypedDict, Unpack

import httpx
import pytest
from pipelines import worker_env, write_pipeline
from servers import RedisServer, wait_until
from test_cli import assert_one_line_error, cli

from framework.api import create_app
from framework.pipeline import Pipeline
from framework.testing import running_pipeline

SAME = "def same(doc):\n    return doc\n"
STAGES = 'one:\n  function: "{mod}:same"'
TOKEN = "t0ken-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class AppOptions(TypedDict, total=False):
    """`create_app`'s keyword options."""

    token: str | None
    max_waits: int


@asynccontextmanager
async def http_client(
    pipeline: Pipeline, **options: Unpack[AppOptions]
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(pipeline, **options))
    async with httpx.AsyncClient(transport=transport, base_url="http://pipeline") as client:
        yield client


async def test_with_a_token_every_route_but_health_and_the_page_wants_it(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, STAGES, SAME)
    async with (
        running_pipeline(path, redis7.url) as pipeline,
        http_client(pipeline, token=TOKEN) as http,
    ):
        for method, route in [
            ("POST", "/jobs"),
            ("GET", "/jobs/x"),
            ("GET", "/jobs/x/wait"),
            ("GET", "/status"),
            ("GET", "/docs"),
            ("GET", "/openapi.json"),
        ]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                answer = await http.request(method, route, headers=headers, json={"text": "a"})
                assert answer.status_code == 401, (route, headers)
                assert answer.headers["www-authenticate"] == "Bearer"
        assert (await http.get("/healthz")).json() == {"ok": True}
        assert (await http.get("/")).status_code == 200
        assert (await http.get("/openapi.json", headers=AUTH)).json()["paths"]
        submitted = await http.post("/jobs", json={"text": "a"}, headers=AUTH)
        assert submitted.status_code == 202
        job = submitted.json()["job"]
        waited = await http.get(f"/jobs/{job}/wait", params={"timeout": 10}, headers=AUTH)
        assert waited.json()["state"] == "done"


async def test_only_json_is_taken_and_no_cors_headers_are_sent(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    """A page on another site can POST text/plain or a form through a visitor's browser
    without asking first; only such requests are refused, and no preflight is answered."""
    path = write_pipeline(tmp_path, pipeline_name, STAGES, SAME)
    pipeline = Pipeline.load(path, {"REDIS_URL": redis7.url})
    try:
        async with http_client(pipeline) as http:
            for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
                answer = await http.post(
                    "/jobs", content=b'{"text": "a"}', headers={"content-type": content_type}
                )
                assert answer.status_code == 415, content_type
                assert "application/json" in answer.json()["detail"]
            preflight = await http.options(
                "/jobs",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            )
            assert "access-control-allow-origin" not in preflight.headers
            typed = await http.post(
                "/jobs",
                content=b'{"text": "a"}',
                headers={"content-type": "application/json; charset=utf-8"},
            )
            assert typed.status_code == 202
    finally:
        await pipeline.close_async()
    with redis7.client() as client:
        assert client.xlen(f"{{{pipeline_name}}}:input") == 1


async def test_a_job_over_http_never_names_a_file(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, STAGES, SAME)
    pipeline = Pipeline.load(path, {"REDIS_URL": redis7.url})
    try:
        async with http_client(pipeline) as http:
            for payload in (
                {"path": "/etc/passwd"},
                {"uri": "file:///proc/self/environ", "type": "text"},
            ):
                answer = await http.post("/jobs", json=payload)
                assert answer.status_code == 422
                assert "cannot name a file" in answer.json()["detail"]
    finally:
        await pipeline.close_async()
    with redis7.client() as client:
        assert client.xlen(f"{{{pipeline_name}}}:input") == 0


async def test_a_repeated_job_id_answers_200_with_the_job(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, STAGES, SAME)
    async with running_pipeline(path, redis7.url) as pipeline, http_client(pipeline) as http:
        first = await http.post("/jobs", params={"job_id": "order-1"}, json={"text": "a"})
        assert (first.status_code, first.json()) == (202, {"job": "order-1"})
        await http.get("/jobs/order-1/wait", params={"timeout": 10})
        again = await http.post("/jobs", params={"job_id": "order-1"}, json={"text": "b"})
        assert again.status_code == 200
        assert again.json()["job"] == "order-1"
        assert again.json()["state"] == "done"
        assert again.json()["results"] == [{"text": "a"}], "the first job, not the second"


async def test_waits_share_one_connection_and_are_capped(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    """200 waits in progress cost one connection: status and submits still answer; past the
    cap a wait is refused with 503 and Retry-After, never left to starve the others."""
    path = write_pipeline(tmp_path, pipeline_name, STAGES, SAME)
    # No workers: jobs stay queued. Bounded as `pipeline serve` bounds it.
    pipeline = Pipeline.load(path, {"REDIS_URL": redis7.url}, max_connections=8)
    try:
        async with http_client(pipeline, max_waits=200) as http:
            job = (await http.post("/jobs", json={"text": "a"})).json()["job"]
            with redis7.client() as client:
                connections_before = len(client.client_list())
            waits = [
                asyncio.create_task(http.get(f"/jobs/{job}/wait", params={"timeout": 5}))
                for _ in range(200)
            ]
            await asyncio.sleep(0.5)
            with redis7.client() as client:
                connections = len(client.client_list()) - connections_before
            assert connections <= 8, f"{connections} new connections for 200 waits"
            refused = await http.get(f"/jobs/{job}/wait", params={"timeout": 5})
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert (await http.get("/status")).status_code == 200
            assert (await http.post("/jobs", json={"text": "b"})).status_code == 202
            answers = await asyncio.gather(*waits)
            assert {answer.status_code for answer in answers} == {408}
    finally:
        await pipeline.close_async()


async def test_many_waits_all_see_their_jobs_finish(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, STAGES, SAME)
    async with running_pipeline(path, redis7.url) as pipeline, http_client(pipeline) as http:
        jobs = [(await http.post("/jobs", json={"n": n})).json()["job"] for n in range(50)]
        answers = await asyncio.gather(
            *(http.get(f"/jobs/{job}/wait", params={"timeout": 20}) for job in jobs * 2)
        )
    assert [answer.status_code for answer in answers] == [200] * 100, [
        a.text for a in answers if a.status_code != 200
    ]
    assert all(answer.json()["state"] == "done" for answer in answers)


# -- a real server: the body limit holds on the socket ---------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(folder: Path, redis_url: str, *args: str) -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "framework", "serve", "--port", str(port), *args],
        cwd=folder,
        env=worker_env(redis_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _listening(port), timeout=20, what="pipeline serve listening")
        yield port
    finally:
        process.terminate()
        process.wait(20)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def post_raw(port: int, head: bytes, body_chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send a request head and as much of the body as the server takes; returns the response
    and how many body bytes went out before it came."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head)
        connection.settimeout(0.05)
        response = b""
        for chunk in body_chunks:
            try:
                response = connection.recv(65536)
            except TimeoutError:
                pass
            if response:
                break
            try:
                connection.sendall(chunk)
            except OSError:
                break
            sent += len(chunk)
        connection.settimeout(10)
        while b"\r\n\r\n" not in response:
            more = connection.recv(65536)
            if not more:
                break
            response += more
    return response, sent


def test_the_body_limit_holds_before_the_body_is_read(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    write_pipeline(tmp_path, pipeline_name, STAGES, SAME, "max_payload: 64KiB")
    huge = (b"x" * 65536 for _ in range(100_000))  # 6.5 GB if it were all sent
    with serving(tmp_path, redis7.url) as port:
        announced = (
            b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 6553600000\r\n\r\n"
        )
        response, sent = post_raw(port, announced, huge)
        assert response.startswith(b"HTTP/1.1 413"), response[:200]
        assert sent < 64 * 2**20
        chunked = (
            b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunks = (b"10000\r\n" + b"x" * 65536 + b"\r\n" for _ in range(100_000))
        response, sent = post_raw(port, chunked, chunks)
        assert response.startswith(b"HTTP/1.1 413"), response[:200]
        assert sent < 64 * 2**20, f"{sent} bytes went out before the refusal"


def test_serve_beyond_loopback_needs_a_good_token(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    write_pipeline(tmp_path, pipeline_name, STAGES, SAME)
    for host in ("0.0.0.0", ""):
        result = cli(tmp_path, "serve", "--host", host, redis_url=redis7.url)
        assert_one_line_error(result, 2, "set PIPELINE_API_TOKEN (or --token)")
    short = cli(tmp_path, "serve", "--host", "0.0.0.0", "--token", "abc", redis_url=redis7.url)
    assert_one_line_error(short, 2, "the API token is 3 characters; use at least 16")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_serve_on_loopback_needs_no_token(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path, host: str
) -> None:
    from framework.cli.serve import loopback_only

    assert loopback_only(host, 8000)
    assert not loopback_only("0.0.0.0", 8000)


def test_a_served_token_is_checked_on_the_wire(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path
) -> None:
    write_pipeline(tmp_path, pipeline_name, STAGES, SAME)
    with serving(tmp_path, redis7.url, "--token", TOKEN) as port:
        base = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        assert httpx.get(f"{base}/status").status_code == 401
        assert httpx.get(f"{base}/status", headers=AUTH).status_code == 200
        assert httpx.get(f"{base}/healthz").json() == {"ok": True}
        assert time.monotonic() - started < 30
