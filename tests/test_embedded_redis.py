"""`url: embedded`: the framework starts its own redis-server under .pipeline/ (AOF on), shares
it between users, and the last user to leave stops it; the data survives for the next run."""

from __future__ import annotations

import asyncio
import gc
import stat
from pathlib import Path

import pytest
import redis
from pipelines import write_pipeline

from framework.embedded import EmbeddedRedis
from framework.pipeline import Pipeline
from framework.testing import running_pipeline

CODE = "def shout(doc):\n    return {'text': doc['text'].upper()}\n"


async def test_a_run_on_the_embedded_redis_starts_and_stops_it(
    tmp_path: Path, pipeline_name: str
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, 'shout:\n  function: "{mod}:shout"', CODE)
    path.write_text(path.read_text().replace("${REDIS_URL}", "embedded"))
    async with running_pipeline(path) as pipeline:
        url = pipeline.url
        job = await pipeline.wait_async(await pipeline.submit_async({"text": "hi"}), timeout=10)
        assert job.result == {"text": "HI"}
    assert url.startswith("redis://:")
    assert "@127.0.0.1:" in url
    assert (tmp_path / ".pipeline" / "appendonlydir").is_dir(), "AOF is on"
    probe = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        probe.ping()
        raise AssertionError("the embedded redis-server outlived its last user")
    except redis.ConnectionError:
        pass
    finally:
        probe.close()


def test_users_share_one_server_and_jobs_survive_a_restart(tmp_path: Path) -> None:
    first, second = EmbeddedRedis(tmp_path), EmbeddedRedis(tmp_path)
    url = first.start()
    try:
        assert second.start() == url, "a second user joins the running server"
        with redis.Redis.from_url(url) as client:
            client.xadd("{kept}:input", {"data": "{}"})
        first.stop()
        with redis.Redis.from_url(url) as client:
            assert client.ping(), "still up while another user remains"
    finally:
        second.stop()
    again = EmbeddedRedis(tmp_path)
    url = again.start()
    try:
        with redis.Redis.from_url(url) as client:
            assert client.xlen("{kept}:input") == 1, "AOF brought the entry back"
    finally:
        again.stop()


def test_pipeline_load_defaults_to_embedded_without_redis_url(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, "defaults", 'shout:\n  function: "{mod}:shout"', CODE)
    path.write_text(path.read_text().replace("redis:\n  url: ${REDIS_URL}\n", ""))
    assert Pipeline.load(path, {}).spec.redis_url == "embedded"


# A loop that `asyncio.run` closed leaves its client's sockets to the garbage collector.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_leaving_the_with_block_stops_the_embedded_redis_the_async_api_started(
    tmp_path: Path, pipeline_name: str
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, 'shout:\n  function: "{mod}:shout"', CODE)
    path.write_text(path.read_text().replace("${REDIS_URL}", "embedded"))
    with Pipeline.load(path) as pipeline:
        asyncio.run(pipeline.submit_async({"text": "hi"}))  # the caller's own loop, not ours
        url = pipeline.url
    probe = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        with pytest.raises(redis.ConnectionError):
            probe.ping()
    finally:
        probe.close()
    gc.collect()  # the closed loop's sockets, here rather than in the next test


def test_the_embedded_redis_wants_a_password_that_only_its_owner_can_read(tmp_path: Path) -> None:
    """Every local user can reach a loopback port: without the password they are refused."""
    embedded = EmbeddedRedis(tmp_path)
    url = embedded.start()
    try:
        port = url.rpartition(":")[2].partition("/")[0]
        with redis.Redis(port=int(port)) as stranger, pytest.raises(redis.AuthenticationError):
            stranger.ping()
        with redis.Redis.from_url(url) as owner:
            assert owner.ping()
        folder = tmp_path / ".pipeline"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        for name in ("redis.url", "redis.conf"):
            assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
        password = url.partition("://:")[2].partition("@")[0]
        assert len(password) >= 32
        assert password in (folder / "redis.conf").read_text()
        assert any("redis-server" in line for line in _command_lines())
        assert not any(password in line for line in _command_lines())
    finally:
        embedded.stop()


def _command_lines() -> list[str]:
    """Every process's command line, as `ps` shows it to any local user."""
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except (OSError, UnicodeDecodeError):
                continue
    return lines
