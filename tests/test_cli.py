"""The `pipeline` command as users and scripts meet it: exit codes, one-line errors, stdout.

Each command runs as its own process (`python -m framework`, what the console script calls),
against the real-Redis fixtures, so what is checked is what a shell sees: no traceback for a
user's mistake, exit 2 for usage and config errors, 1 for failures, 0 for success.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from pipelines import start_worker, worker_env, write_pipeline
from servers import RedisClusterNodes, RedisServer, wait_until

from framework.cli.display import compact
from framework.pipeline import Pipeline
from framework.stats import read_stats
from framework.testing import running_pipeline

SAME = "def same(doc):\n    return doc\n"
TWO_STAGES = 'one:\n  function: "{mod}:same"\ntwo:\n  function: "{mod}:same"'

UPPER = """\
from framework import Fail

def upper(doc):
    if "fail" in doc["text"]:
        raise Fail("refusing " + doc["filename"])
    return {"text": doc["text"].upper(), "vector": [0.25] * 384}
"""

SLOW = "import time\n\ndef slow(doc):\n    time.sleep(60)\n    return doc\n"


def cli(
    folder: Path, *args: str, redis_url: str = "redis://127.0.0.1:1", stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """`pipeline ARGS` in `folder`, as a shell would run it."""
    return subprocess.run(
        [sys.executable, "-m", "framework", *args],
        cwd=folder,
        env=worker_env(redis_url),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert text in result.stderr


# -- check -----------------------------------------------------------------------------------


def test_check_imports_every_stage_and_says_ok(tmp_path: Path, pipeline_name: str) -> None:
    write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    result = cli(tmp_path, "check")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("one: stages_")
    assert lines[1].startswith("two: ")
    assert lines[-1] == "ok"


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (
            'one:\n  function: "{mod}:same"\n  batch: 0',
            "pipeline.yaml: stages.one.batch: must be >= 1",
        ),
        ('one:\n  function: "{mod}:missing"', "pipeline.yaml: stages.one.function: module"),
    ],
    ids=["bad-setting", "no-such-function"],
)
def test_check_reports_a_bad_pipeline_in_one_line_with_exit_2(
    tmp_path: Path, pipeline_name: str, stages: str, message: str
) -> None:
    write_pipeline(tmp_path, pipeline_name, stages, SAME)
    assert_one_line_error(cli(tmp_path, "check"), 2, message)


def test_a_missing_pipeline_file_is_one_line_with_exit_2(tmp_path: Path) -> None:
    result = cli(tmp_path, "-f", "elsewhere.yaml", "status")
    assert_one_line_error(result, 2, "elsewhere.yaml: file not found")


def test_f_goes_before_or_after_the_command_and_after_wins(
    tmp_path: Path, pipeline_name: str
) -> None:
    write_pipeline(tmp_path / "p", pipeline_name, TWO_STAGES, SAME)
    for args in (["-f", "p/pipeline.yaml", "check"], ["check", "-f", "p/pipeline.yaml"]):
        result = cli(tmp_path, *args)
        assert (result.returncode, result.stdout.splitlines()[-1]) == (0, "ok"), result.stderr
    after = cli(tmp_path, "-f", "p/pipeline.yaml", "dead", "list", "--file", "other.yaml")
    assert_one_line_error(after, 2, "other.yaml: file not found")


def test_a_stage_module_that_exits_as_it_is_imported_is_one_line_with_exit_2(
    tmp_path: Path, pipeline_name: str
) -> None:
    write_pipeline(tmp_path, pipeline_name, 'one:\n  function: "{mod}:same"', "raise SystemExit(3)")
    assert_one_line_error(cli(tmp_path, "check"), 2, "it called sys.exit(3)")


def test_a_redis_url_that_cannot_work_is_one_line_with_exit_2(
    tmp_path: Path, pipeline_name: str
) -> None:
    write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    for command in (["status"], ["submit", "--data", "{}"], ["worker", "one"]):
        result = cli(tmp_path, *command, redis_url="redis://127.0.0.1:six")
        assert_one_line_error(result, 2, "redis.url: 'redis://127.0.0.1:six' is not a usable")


# -- submit ----------------------------------------------------------------------------------


def test_submit_with_unreachable_redis_is_one_line_with_exit_1(
    tmp_path: Path, pipeline_name: str
) -> None:
    write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    result = cli(tmp_path, "submit", "--data", '{"text": "a"}', redis_url="redis://127.0.0.1:1")
    assert_one_line_error(result, 1, "cannot reach Redis at redis://127.0.0.1:1")
    assert result.stdout == ""


def test_submit_stdin_with_a_bad_line_names_it_and_submits_nothing(
    redis7: RedisServer, tmp_path: Path, pipeline_name: str
) -> None:
    write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    lines = '{"text": "a"}\n\n{"text": oops}\n{"text": "c"}\n'
    result = cli(tmp_path, "submit", "-", redis_url=redis7.url, stdin=lines)
    assert_one_line_error(
        result, 2, "stdin line 3: payload is not valid JSON: unexpected character"
    )
    assert result.stderr.rstrip().endswith("at column 10; nothing was submitted")
    assert result.stdout == ""
    with redis7.client() as client:
        assert client.xlen(f"{{{pipeline_name}}}:input") == 0


def test_submit_stdin_prints_one_job_id_per_line(
    redis7: RedisServer, tmp_path: Path, pipeline_name: str
) -> None:
    write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    result = cli(tmp_path, "submit", "-", redis_url=redis7.url, stdin='{"n": 1}\n{"n": 2}\n')
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 2
    with redis7.client() as client:
        assert client.xlen(f"{{{pipeline_name}}}:input") == 2


def test_submit_sends_text_files_as_text_and_others_as_base64(
    redis7: RedisServer, tmp_path: Path, pipeline_name: str
) -> None:
    write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    (tmp_path / "a.txt").write_text("héllo")
    (tmp_path / "b.pdf").write_bytes(b"%PDF-1.4 ascii only")
    result = cli(tmp_path, "submit", "a.txt", "b.pdf", redis_url=redis7.url)
    assert result.returncode == 0, result.stderr
    with redis7.client() as client:
        sent = [orjson.loads(f[b"data"]) for _, f in client.xrange(f"{{{pipeline_name}}}:input")]
    assert sent == [
        {"filename": "a.txt", "text": "héllo"},
        {"filename": "b.pdf", "content": "JVBERi0xLjQgYXNjaWkgb25seQ=="},
    ]


def test_job_id_needs_exactly_one_job(tmp_path: Path, pipeline_name: str) -> None:
    write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    result = cli(tmp_path, "submit", "--job-id", "x", "-", stdin='{"n": 1}\n{"n": 2}\n')
    assert_one_line_error(result, 2, "--job-id needs exactly one job, got 2")


# -- status ----------------------------------------------------------------------------------


def test_a_submitted_job_shows_as_queued_in_status(
    redis_server: RedisServer, tmp_path: Path, pipeline_name: str
) -> None:
    write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    url = redis_server.url
    submitted = cli(tmp_path, "submit", "--data", '{"text": "a"}', "--job-id", "j-1", redis_url=url)
    assert (submitted.returncode, submitted.stdout) == (0, "j-1\n"), submitted.stderr

    job = orjson.loads(cli(tmp_path, "status", "j-1", "--json", redis_url=url).stdout)
    assert (job["id"], job["state"], job["outstanding"]) == ("j-1", "queued", 1)

    overview = orjson.loads(cli(tmp_path, "status", "--json", redis_url=url).stdout)
    one, two = overview["stages"]
    assert (one["stage"], one["length"], one["lag"], one["pending"]) == ("one", 1, 1, 0)
    assert (two["stage"], two["length"], two["lag"]) == ("two", 0, 0)
    assert cli(tmp_path, "status", redis_url=url).returncode == 0


def test_status_reads_a_redis_cluster(
    redis_cluster: RedisClusterNodes, tmp_path: Path, pipeline_name: str
) -> None:
    write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    url = redis_cluster.url
    assert cli(tmp_path, "submit", "--data", "{}", redis_url=url).returncode == 0
    result = cli(tmp_path, "status", "--json", redis_url=url)
    assert result.returncode == 0, result.stderr
    assert [stage["length"] for stage in orjson.loads(result.stdout)["stages"]] == [1, 0]


def test_status_of_an_unknown_job_is_one_line_with_exit_1(
    redis7: RedisServer, tmp_path: Path, pipeline_name: str
) -> None:
    write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    result = cli(tmp_path, "status", "nope", redis_url=redis7.url)
    assert_one_line_error(result, 1, "job 'nope' not found")


# -- dead ------------------------------------------------------------------------------------


def add_dead_letter(server: RedisServer, name: str, job: str, stage: str = "one") -> str:
    """A dead letter of `stage`, as commit.lua writes it, and its failed job."""
    now = str(int(time.time() * 1000))
    with server.client() as client:
        entry: bytes = client.xadd(
            f"{{{name}}}:dead",
            {"stage": stage, "job": job, "id": "1-1", "stream": f"{{{name}}}:input",
             "data": '{"text": "a"}', "error": "ValueError: boom", "traceback": "Traceback ...",
             "attempts": "3", "trace": "", "failed_at": now},
        )  # fmt: skip
        client.hset(
            f"{{{name}}}:job:{job}",
            mapping={"state": "failed", "outstanding": 0, "failed": 1, "submitted": now,
                     "finished": now, "error": f"{stage}: ValueError: boom"},
        )  # fmt: skip
    return entry.decode()


async def test_dead_letters_are_listed_retried_and_purged(
    redis7: RedisServer, tmp_path: Path, pipeline_name: str
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    url, dead, job_key = redis7.url, f"{{{pipeline_name}}}:dead", f"{{{pipeline_name}}}:job:j-1"
    entry = add_dead_letter(redis7, pipeline_name, "j-1")

    listed = cli(tmp_path, "dead", "list", "--json", redis_url=url)
    letter = orjson.loads(listed.stdout)
    assert (letter["dead_id"], letter["job"], letter["data"]) == (entry, "j-1", {"text": "a"})
    assert "ValueError: boom" in cli(tmp_path, "dead", "list", redis_url=url).stdout

    assert_one_line_error(cli(tmp_path, "dead", "retry", redis_url=url), 2, "--all")
    retried = cli(tmp_path, "dead", "retry", entry, redis_url=url)
    assert (retried.returncode, retried.stdout) == (0, "retried 1 dead letters\n"), retried.stderr
    with redis7.client() as client:
        assert client.xlen(dead) == 0
        [(_, fields)] = client.xrange(f"{{{pipeline_name}}}:input")
        assert fields[b"for"] == b"one"
        assert fields[b"attempt"] == b"0"
        hash_ = client.hgetall(job_key)
        assert hash_[b"state"] == b"running"
        assert hash_[b"outstanding"] == b"1"
        assert b"error" not in hash_
        assert b"finished" not in hash_
    async with running_pipeline(path, url) as pipeline:
        done = await pipeline.wait_async("j-1", timeout=10)
    assert (done.state, done.result) == ("done", {"text": "a"})

    again = cli(tmp_path, "dead", "retry", entry, redis_url=url)
    assert_one_line_error(again, 1, f"no dead letter with id {entry!r}")
    other = add_dead_letter(redis7, pipeline_name, "j-4", stage="one")
    by_message_id = cli(tmp_path, "dead", "retry", "1-1", redis_url=url)  # `id`, not `dead_id`
    assert_one_line_error(by_message_id, 1, f"its dead letter's id is {other!r}")
    cli(tmp_path, "dead", "purge", other, redis_url=url)
    typo = cli(tmp_path, "dead", "list", "--stage", "too", redis_url=url)
    assert_one_line_error(typo, 2, "unknown stage 'too'; pipeline.yaml has: one, two")
    add_dead_letter(redis7, pipeline_name, "j-2", stage="one")
    add_dead_letter(redis7, pipeline_name, "j-3", stage="two")
    by_stage = cli(tmp_path, "dead", "retry", "--stage", "two", redis_url=url)
    assert by_stage.stdout == "retried 1 dead letters\n", by_stage.stderr
    assert_one_line_error(cli(tmp_path, "dead", "purge", redis_url=url), 2, "--all")
    purged = cli(tmp_path, "dead", "purge", "--all", redis_url=url)
    assert (purged.returncode, purged.stdout) == (0, "purged 1 dead letters\n"), purged.stderr
    with redis7.client() as client:
        assert client.xlen(dead) == 0


# -- run -------------------------------------------------------------------------------------


def write_docs(folder: Path, texts: dict[str, str]) -> Path:
    docs = folder / "docs"
    docs.mkdir()
    for name, text in texts.items():
        (docs / name).write_text(text)
    (docs / ".hidden").write_text("never submitted")
    return docs


def test_run_prints_each_result_and_exits_0(
    redis7: RedisServer, tmp_path: Path, pipeline_name: str
) -> None:
    write_pipeline(tmp_path, pipeline_name, 'up:\n  function: "{mod}:upper"', UPPER)
    write_docs(tmp_path, {"a.txt": "hello", "b.txt": "world"})
    result = cli(tmp_path, "run", "docs", "--output", "out.jsonl", redis_url=redis7.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "docs/a.txt  done",
        '  text: "HELLO"',
        "  vector: [384 floats]",
        "docs/b.txt  done",
        '  text: "WORLD"',
        "  vector: [384 floats]",
    ]
    records = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["filename"], r["state"], r["error"]) for r in records] == [
        ("a.txt", "done", None),
        ("b.txt", "done", None),
    ]
    assert records[0]["result"] == {"text": "HELLO", "vector": [0.25] * 384}
    assert "earlier run" not in result.stderr


def test_run_says_when_an_earlier_run_left_work_queued(
    redis7: RedisServer, tmp_path: Path, pipeline_name: str
) -> None:
    write_pipeline(tmp_path, pipeline_name, 'up:\n  function: "{mod}:upper"', UPPER)
    write_docs(tmp_path, {"a.txt": "hello"})
    left = cli(
        tmp_path, "submit", "--data", '{"text": "left", "filename": "l"}', redis_url=redis7.url
    )
    assert left.returncode == 0, left.stderr
    result = cli(tmp_path, "run", "docs", redis_url=redis7.url)
    assert result.returncode == 0, result.stderr
    assert f"note: an earlier run left 1 message unfinished in {pipeline_name}" in result.stderr
    with Pipeline.load(tmp_path / "pipeline.yaml", {"REDIS_URL": redis7.url}) as pipeline:
        assert pipeline.status(left.stdout.strip()).state == "done", "this run finished it"


def test_run_exits_1_and_prints_the_error_when_a_stage_fails(
    redis7: RedisServer, tmp_path: Path, pipeline_name: str
) -> None:
    write_pipeline(tmp_path, pipeline_name, 'up:\n  function: "{mod}:upper"', UPPER)
    write_docs(tmp_path, {"a.txt": "hello", "b.txt": "please fail"})
    result = cli(tmp_path, "run", "docs", redis_url=redis7.url)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[-1] == "docs/b.txt  failed  up: Fail: refusing b.txt"


def test_run_with_a_missing_path_is_one_line_with_exit_2(
    tmp_path: Path, pipeline_name: str
) -> None:
    write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    assert_one_line_error(cli(tmp_path, "run", "nowhere"), 2, "nowhere: no such file or folder")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli(tmp_path, "run", "empty"), 2, "no documents found in empty")


# -- worker ----------------------------------------------------------------------------------


def test_worker_for_an_unknown_stage_is_one_line_with_exit_2(
    tmp_path: Path, pipeline_name: str
) -> None:
    write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    result = cli(tmp_path, "worker", "three")
    assert_one_line_error(result, 2, "unknown stage 'three'; pipeline.yaml has: one, two")
    assert not result.stderr.startswith("pipeline.yaml:")  # the command's mistake, not the file's
    assert_one_line_error(cli(tmp_path, "worker", "one", "--all"), 2, "or --all (not both)")


def pending(server: RedisServer, stream: str, group: str) -> int:
    with server.client() as client:
        return int(client.xpending(stream, group)["pending"])


def test_worker_stops_gracefully_on_sigterm_and_at_once_on_a_second(
    redis7: RedisServer, tmp_path: Path, pipeline_name: str
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, 'one:\n  function: "{mod}:same"', SAME)
    worker = start_worker(path, "one", redis7.url, log=tmp_path / "worker.log")
    result = cli(tmp_path, "submit", "--data", '{"a": 1}', "--wait", "--timeout", "20",
                 redis_url=redis7.url)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout.splitlines()[1])["result"] == {"a": 1}
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0

    slow = write_pipeline(tmp_path / "slow", pipeline_name, 'one:\n  function: "{mod}:slow"', SLOW)
    worker = start_worker(slow, "one", redis7.url, "--grace-period", "30s")
    cli(tmp_path / "slow", "submit", "--data", "{}", redis_url=redis7.url)
    wait_until(lambda: pending(redis7, f"{{{pipeline_name}}}:input", "one"), 10, "a held message")
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(5) == 130


# -- display ---------------------------------------------------------------------------------


def test_results_are_shown_compactly() -> None:
    assert compact({"v": [0.1] * 384, "ids": list(range(3))}) == "{v: [384 floats], ids: [0, 1, 2]}"
    shown = compact("word " * 100)
    assert shown.endswith('…" (500 chars)')
    assert len(shown) < 120
    assert compact(list(range(20))) == "[20 ints]"
    assert compact(["x"] * 10) == '["x", "x", "x", "x", "x", "x", "x", "x", … +2 more]'


def test_serve_on_a_taken_port_is_one_line_with_exit_1(
    redis7: RedisServer, tmp_path: Path, pipeline_name: str
) -> None:
    write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    taken = cli(tmp_path, "serve", "--port", str(redis7.port), redis_url=redis7.url)
    assert_one_line_error(taken, 1, f"cannot listen on 127.0.0.1:{redis7.port}: Address already")


def test_submit_cut_short_by_backpressure_prints_what_was_queued_and_what_was_not(
    redis7: RedisServer, tmp_path: Path, pipeline_name: str
) -> None:
    write_pipeline(
        tmp_path, pipeline_name, 'one:\n  function: "{mod}:same"\n  max_backlog: 5', SAME
    )
    lines = "".join(f'{{"n": {n}}}\n' for n in range(12))
    result = cli(tmp_path, "submit", "-", redis_url=redis7.url, stdin=lines)
    assert_one_line_error(result, 1, "stage 'one' is full: backlog 5 is at max_backlog 5")
    assert "queued 5 of 12 jobs (their ids above), not queued: jobs 6-12" in result.stderr
    with redis7.client() as client:
        entries = client.xrange(f"{{{pipeline_name}}}:input")
        queued = [fields[b"job"].decode() for _, fields in entries]
    assert result.stdout.split() == queued
    assert len(queued) == 5


async def test_status_shows_no_lag_when_nothing_follows_the_last_delivered_entry(
    redis7: RedisServer, tmp_path: Path, pipeline_name: str
) -> None:
    # Redis 7.0's lag is entries-added minus the group's entries-read; those counters can
    # disagree with the stream (entries-read stale across an AOF reload). XSETID ENTRIESADDED
    # makes them disagree here.
    path = write_pipeline(tmp_path, pipeline_name, 'one:\n  function: "{mod}:same"', SAME)
    stream = f"{{{pipeline_name}}}:input"
    pipeline = Pipeline.load(path, {"REDIS_URL": redis7.url})
    try:
        client = await pipeline.client()
        for n in range(3):
            last = await client.xadd(stream, {"n": n})
        await client.xreadgroup("one", "reader", {stream: ">"})
        await client.execute_command("XSETID", stream, last, "ENTRIESADDED", 100)
        [group] = await client.xinfo_groups(stream)
        assert group["lag"] == 97  # what the server says
        stats = await read_stats(client, await pipeline.server(), pipeline.spec)
    finally:
        await pipeline.close_async()
    assert (stats.stages[0].lag, stats.stages[0].lag_exact) == (0, True)


def test_a_folder_is_walked_without_following_a_symlink_out_of_it(
    tmp_path: Path, pipeline_name: str
) -> None:
    write_pipeline(tmp_path, pipeline_name, TWO_STAGES, SAME)
    secret = tmp_path / "secret.txt"
    secret.write_text("the host's secret")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("fine")
    (folder / "b.txt").symlink_to(folder / "a.txt")  # inside: followed
    (folder / "out.txt").symlink_to(secret)
    result = cli(tmp_path, "submit", "docs")
    assert_one_line_error(result, 2, "docs/out.txt: a symlink that leads out of its folder")
    assert "secret" not in result.stdout


def test_a_stopped_run_stops_its_embedded_redis_and_the_next_run_finishes_its_work(
    tmp_path: Path, pipeline_name: str
) -> None:
    """SIGTERM ends `pipeline run` as a normal end does: its workers drain, its embedded
    redis-server stops (nothing of it left running), exit 130 with one line. What was not
    done stays in the AOF, and the next run finishes it and says so."""
    code = "import time\n\ndef nap(doc):\n    time.sleep(0.5)\n    return doc\n"
    path = write_pipeline(tmp_path, pipeline_name, 'one:\n  function: "{mod}:nap"', code)
    path.write_text(path.read_text().replace("${REDIS_URL}", "embedded"))
    write_docs(tmp_path, {f"{n}.txt": f"text {n}" for n in range(8)})
    env = {k: v for k, v in worker_env("").items() if k != "REDIS_URL"}
    run = subprocess.Popen(
        [sys.executable, "-m", "framework", "run", "docs"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    pid_file = tmp_path / ".pipeline" / "redis.pid"
    wait_until(pid_file.exists, timeout=30, what="the embedded redis-server")
    redis_pid = int(pid_file.read_text())
    time.sleep(1.0)  # a document or two done, the rest queued
    run.send_signal(signal.SIGTERM)
    _out, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted: ")
    assert "stay queued" in err
    wait_until(lambda: not Path(f"/proc/{redis_pid}").exists(), timeout=10, what="redis gone")
    again = subprocess.run(
        [sys.executable, "-m", "framework", "run", "docs"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "an earlier run left" in again.stderr
    assert "this run finishes them too" in again.stderr


def _stage_processes(run_pid: int) -> dict[str, int]:
    """The `pipeline worker STAGE` processes `pipeline run` started, by stage (Linux's /proc)."""
    children = Path(f"/proc/{run_pid}/task/{run_pid}/children")
    found = {}
    for pid in children.read_text().split() if children.exists() else []:
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            if "worker" in argv:
                found[argv[argv.index("worker") + 1]] = int(pid)
    return found


def _one_per_stage(run_pid: int, stages: int = 2) -> dict[str, int]:
    found = _stage_processes(run_pid)
    return found if len(found) == stages else {}


def _start_run(
    tmp_path: Path, pipeline_name: str, stages: str, code: str, output: int
) -> tuple[subprocess.Popen[str], dict[str, int]]:
    """`pipeline run` of 8 documents on embedded Redis, its stdout and stderr to `output`
    (PIPE or DEVNULL); returned once each stage's worker process is up, with them by stage."""
    path = write_pipeline(tmp_path, pipeline_name, stages, code)
    path.write_text(path.read_text().replace("${REDIS_URL}", "embedded"))
    write_docs(tmp_path, {f"{n}.txt": f"text {n}" for n in range(8)})
    env = {k: v for k, v in worker_env("").items() if k != "REDIS_URL"}
    run = subprocess.Popen(
        [sys.executable, "-m", "framework", "run", "docs"],
        cwd=tmp_path, env=env, stdout=output, stderr=output, text=True,
    )  # fmt: skip
    workers = wait_until(lambda: _one_per_stage(run.pid), 30, "a worker process per stage")
    return run, workers


def _embedded_redis_pid(tmp_path: Path) -> int:
    pid_file = tmp_path / ".pipeline" / "redis.pid"
    return int(wait_until(pid_file.read_text, timeout=30, what="the embedded redis-server"))


def _gone(pid: int) -> bool:
    return not _alive(pid)


def _alive(pid: int) -> bool:
    """Running (a zombie whose parent is gone is reaped by init, and counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


NAP = "import time\n\ndef nap(doc):\n    time.sleep(0.5)\n    return doc\n"
NAPS = 'one:\n  function: "{mod}:nap"\ntwo:\n  function: "{mod}:nap"'


def test_run_runs_each_stage_in_a_worker_process_and_says_when_one_dies(
    tmp_path: Path, pipeline_name: str
) -> None:
    run, workers = _start_run(tmp_path, pipeline_name, NAPS, NAP, subprocess.PIPE)
    redis_pid = _embedded_redis_pid(tmp_path)
    os.kill(workers["one"], signal.SIGKILL)
    _out, err = run.communicate(timeout=30)
    assert run.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert last == "the worker of stage 'one' was killed by signal 9; its log is above", err
    assert "Traceback" not in err
    wait_until(lambda: not _alive(redis_pid), timeout=10, what="redis gone")


def test_a_killed_run_takes_its_stage_processes_and_embedded_redis_with_it(
    tmp_path: Path, pipeline_name: str
) -> None:
    """SIGKILL leaves the run no chance to stop anything: the kernel tells its workers (the
    parent-death signal), they drain as on SIGTERM, and the last one stops the server."""
    run, workers = _start_run(tmp_path, pipeline_name, NAPS, NAP, subprocess.DEVNULL)
    redis_pid = _embedded_redis_pid(tmp_path)
    run.kill()  # and left unreaped, as by a parent reading the output its workers share
    for pid in workers.values():
        wait_until(functools.partial(_gone, pid), timeout=20, what=f"worker {pid} gone")
    wait_until(lambda: not _alive(redis_pid), timeout=10, what="redis gone")
    run.wait()


def test_a_second_ctrl_c_ends_the_run_at_once_and_its_workers_still_stop_the_embedded_redis(
    tmp_path: Path, pipeline_name: str
) -> None:
    """The first Ctrl-C has the run send each worker SIGTERM; the second ends the run, and the
    kernel's word of its death must not count as each worker's second signal (which would
    exit without leaving the embedded Redis, and leave it running)."""
    long_nap = NAP.replace("0.5", "4")  # the first Ctrl-C's drain is still on when the second comes
    run, workers = _start_run(tmp_path, pipeline_name, NAPS, long_nap, subprocess.PIPE)
    redis_pid = _embedded_redis_pid(tmp_path)
    time.sleep(1)  # the first stage's worker is in a call
    run.send_signal(signal.SIGINT)
    time.sleep(0.3)
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=10) == 130
    for pid in workers.values():
        wait_until(functools.partial(_gone, pid), timeout=30, what=f"worker {pid} gone")
    wait_until(lambda: not _alive(redis_pid), timeout=10, what="redis gone")
    _out, err = run.communicate(timeout=10)  # the workers shared the run's stderr
    assert "interrupted again: exiting at once" in err


def test_a_worker_that_dies_while_the_run_waits_for_room_ends_the_run(
    tmp_path: Path, pipeline_name: str
) -> None:
    """With `max_backlog` on the first stage the run submits as room frees: a dead first
    stage frees none, and the run must say so instead of waiting for ever."""
    stages = 'one:\n  function: "{mod}:nap"\n  max_backlog: 1\ntwo:\n  function: "{mod}:nap"'
    run, workers = _start_run(tmp_path, pipeline_name, stages, NAP, subprocess.PIPE)
    os.kill(workers["one"], signal.SIGKILL)
    _out, err = run.communicate(timeout=30)
    assert run.returncode == 1, err
    assert err.strip().splitlines()[-1] == (
        "the worker of stage 'one' was killed by signal 9; its log is above"
    ), err
