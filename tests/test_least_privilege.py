"""A whole pipeline as a Redis user limited to exactly the ACL rule the README gives.

The rule is read from the README, so the documentation and what the framework needs cannot
drift apart: a command the engine starts to use without the README saying so fails here with
NOPERM. Everything runs as an operator would run it (the `pipeline` command, its own process,
a URL with the user's name and password), on Redis 7 and 6.2.
"""

from __future__ import annotations

import re
import secrets
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from pipelines import ROOT, start_worker, stop, worker_env, write_pipeline
from servers import RedisServer, wait_until

from framework.api import create_app
from framework.testing import running_pipeline

README = ROOT / "README.md"

CODE = """\
from framework import Fail, Retry

def work(doc, ctx):
    if doc.get("fail"):
        raise Fail("refused on purpose")
    if doc.get("retry") and ctx.attempt == 1:
        raise Retry(after=0.1)
    return {**doc, "seen": True}
"""
STAGES = 'one:\n  function: "{mod}:work"\ntwo:\n  function: "{mod}:work"\n  input: one'


def documented_rule(pipeline: str, user: str, password: str) -> list[str]:
    """The README's `ACL SETUSER docs-pipeline ...` line, for `pipeline`, as arguments."""
    found = re.search(r"^ACL SETUSER docs-pipeline .*$", README.read_text(), re.MULTILINE)
    assert found, "README.md no longer gives the ACL SETUSER line"
    words = shlex.split(found.group(0))[2:]  # after ACL SETUSER
    words[0] = user
    rule = [
        word.replace("{docs}", "{" + pipeline + "}").replace(">CHANGE-ME", ">" + password)
        for word in words
    ]
    assert f"~{{{pipeline}}}:*" in rule
    return rule


@pytest.fixture
def limited_url(redis_server: RedisServer, pipeline_name: str) -> Iterator[str]:
    """A user made from the README's rule; the URL that logs in as it."""
    user, password = f"u-{pipeline_name}", secrets.token_hex(16)
    with redis_server.client() as admin:
        admin.execute_command("ACL", "SETUSER", *documented_rule(pipeline_name, user, password))
    try:
        yield f"redis://{user}:{password}@127.0.0.1:{redis_server.port}/0"
    finally:
        with redis_server.client() as admin:
            admin.execute_command("ACL", "DELUSER", user)


def pipeline_command(folder: Path, url: str, *args: str, stdin: str = "") -> str:
    result = subprocess.run(
        [sys.executable, "-m", "framework", *args],
        cwd=folder,
        env=worker_env(url),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "NOPERM" not in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def test_a_whole_pipeline_runs_as_the_documented_user(
    redis_server: RedisServer, limited_url: str, tmp_path: Path, pipeline_name: str
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, STAGES, CODE)
    log = tmp_path / "worker.log"
    worker = start_worker(path, "--all", limited_url, log=log, PIPELINE_LOG_LEVEL="info")
    try:
        lines = "".join(orjson.dumps(doc).decode() + "\n" for doc in (
            {"text": "plain"}, {"text": "again", "retry": True}, {"text": "no", "fail": True},
        ))  # fmt: skip
        out = pipeline_command(tmp_path, limited_url, "submit", "-", "--wait", "--timeout", "60",
                               stdin=lines)  # fmt: skip
        results = [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert [r["state"] for r in results] == ["done", "done", "failed"]

        status = orjson.loads(pipeline_command(tmp_path, limited_url, "status", "--json"))
        assert status["dead_letters"]["total"] == 1
        job = results[0]["job"]
        assert orjson.loads(pipeline_command(tmp_path, limited_url, "status", job, "--json"))

        letters = pipeline_command(tmp_path, limited_url, "dead", "list", "--json").splitlines()
        assert len(letters) == 1
        retried = pipeline_command(tmp_path, limited_url, "dead", "retry", "--all")
        assert retried == "retried 1 dead letters\n"
        with redis_server.client() as admin:
            wait_until(lambda: admin.xlen(f"{{{pipeline_name}}}:dead") == 1, timeout=30,
                       what="the re-driven letter to fail again")  # fmt: skip
        purged = pipeline_command(tmp_path, limited_url, "dead", "purge", "--all")
        assert purged == "purged 1 dead letters\n"

        replayed = pipeline_command(tmp_path, limited_url, "replay", "two", "--from", "0", "--yes")
        assert replayed.startswith("replayed ")
        assert stop(worker) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    worker_log = log.read_text()
    assert "NOPERM" not in worker_log, worker_log[-3000:]
    assert "worker_stopped" in worker_log


def test_the_same_user_is_refused_what_the_rule_does_not_give(
    limited_url: str, pipeline_name: str
) -> None:
    with redis.Redis.from_url(limited_url) as client:
        assert client.ping()
        client.xadd(f"{{{pipeline_name}}}:input", {"data": "{}"})
        for command in (
            ("FLUSHALL",),
            ("GET", "somebody-else"),
            ("XADD", "{another}:input", "*", "data", "{}"),
            ("CONFIG", "GET", "requirepass"),
            ("KEYS", "*"),
            ("XGROUP", "DESTROY", f"{{{pipeline_name}}}:input", "one"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)
        client.xtrim(f"{{{pipeline_name}}}:input", 0)  # the rule's own XTRIM tidies up
    wrong = limited_url.replace("://u-", "://x-")
    with redis.Redis.from_url(wrong) as stranger, pytest.raises(redis.AuthenticationError):
        stranger.ping()


async def test_the_http_api_and_its_waits_run_as_the_documented_user(
    limited_url: str, tmp_path: Path, pipeline_name: str
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, STAGES, CODE)
    async with running_pipeline(path, limited_url) as pipeline:
        transport = httpx.ASGITransport(app=create_app(pipeline))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            job = (await http.post("/jobs", json={"text": "hi"})).json()["job"]
            waited = await http.get(f"/jobs/{job}/wait", params={"timeout": 30})
            assert waited.json()["state"] == "done"
            assert (await http.get("/status")).status_code == 200
            assert (await http.get("/healthz")).json() == {"ok": True}
