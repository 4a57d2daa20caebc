"""Hostile documents end quickly, as a result or as `Fail` with a one-line reason.

Each attack here once hung a worker, read its secrets or ate its memory; each is built in the
test, and the old cost is in its comment. The reader processes run with a 3 s deadline and a
256 MiB memory limit here; the bounds asserted are generous upper limits for hang protection
(deadline plus a margin for starting a reader on a busy host), not benchmarks.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framework import ConfigError, Fail
from stages import sandbox
from stages.chunks import chunk_spans
from stages.extract import extract
from stages.html_text import read_html
from stages.text import paragraph_count, sentence_spans

DEADLINE = 3.0
BOUND = DEADLINE + 7.0  # the deadline, then starting a fresh reader and killing the old one
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def tight_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRACT_TIMEOUT", f"{DEADLINE:g}s")
    monkeypatch.setenv("EXTRACT_MEMORY", "256MiB")
    monkeypatch.delenv("PIPELINE_FILES_ROOT", raising=False)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def outcome(doc: Any) -> dict[str, Any] | Fail:
    """extract's result or its Fail, checked to come within BOUND and to be one line."""
    started = time.monotonic()
    try:
        result: dict[str, Any] | Fail = extract(doc)
    except Fail as fail:
        result = fail
    elapsed = time.monotonic() - started
    assert elapsed < BOUND, f"took {elapsed:.1f}s"
    assert not isinstance(result, Fail) or "\n" not in result.reason
    return result


def refused(doc: Any) -> str:
    result = outcome(doc)
    assert isinstance(result, Fail), result
    return result.reason


def pdf(objects: list[bytes]) -> bytes:
    """A PDF from its numbered objects, with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    size = len(objects) + 1
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


def pdf_sharing_one_content_stream(content: bytes, pages: int) -> bytes:
    """`pages` pages that all show the same Flate-compressed content stream."""
    stream = zlib.compress(content, 9)
    kids = b" ".join(b"%d 0 R" % (5 + page) for page in range(pages))
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 3 0 R >>"
    )
    return pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            *[page] * pages,
        ]
    )


def slow_pdf() -> bytes:
    # 400,000 `(a) Tj` operators compress to 4 KB; pypdf parses them again for every page
    # that shows them, about 5 s a page. Five pages in 7 KB took the old extract 25 s.
    return pdf_sharing_one_content_stream(b"BT /F1 12 Tf " + b"(a) Tj " * 400_000 + b"ET", 5)


def greedy_pdf() -> bytes:
    # One 70 MB string in a content stream that compresses to 68 KB: pypdf holds the stream,
    # its tokens and the text at once. The old extract took 18 s and 945 MB for it.
    return pdf_sharing_one_content_stream(b"BT /F1 12 Tf (" + b"a" * 70_000_000 + b") Tj ET", 1)


def test_the_sniffing_pattern_is_linear() -> None:
    # `\s*(<!--.*?-->\s*)*<html` tried every grouping of `<!---->` repeats: 22 of them took
    # 0.5 s and each 7 bytes more doubled it; 40 would have taken days.
    for text in ("<!---->" * 40 + "x", "<!--" * 100_000, " \n" * 100_000 + "<!-- -->" * 1000):
        result = outcome({"text": text})
        assert isinstance(result, dict)
        assert result["type"] == "text"
    page = outcome({"text": "<!---->" * 40 + "<!DOCTYPE html><p>Sniffed after comments</p>"})
    assert isinstance(page, dict)
    assert (page["type"], page["text"]) == ("html", "Sniffed after comments")


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        name, previous = "abcdefghijkl"[level], "abcdefghijkl"[level - 1]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    return "\n".join(lines)


def test_yaml_aliases_in_front_matter_are_kept_as_text() -> None:
    # 9 levels of 9 aliases, 400 bytes: the old extract ran 233 s and took 10 GB.
    bomb = f"---\n{billion_laughs()}\n---\n# Laughs\n\nThe body."
    result = outcome({"text": bomb, "filename": "laughs.md"})
    assert isinstance(result, dict)
    assert result["metadata"] == {}
    assert result["title"] == "Laughs"
    assert "The body." in result["text"]
    merge = outcome(
        {"text": "---\nbase: &b {x: 1}\nmore:\n  <<: *b\n---\nText.", "type": "markdown"}
    )
    assert isinstance(merge, dict)
    assert merge["metadata"] == {}


def test_front_matter_without_aliases_and_within_64_kib_is_metadata() -> None:
    plain = outcome({"text": "---\ntitle: Plain\ntags: [a, b]\n---\nBody.", "type": "markdown"})
    assert isinstance(plain, dict)
    assert plain["metadata"] == {"title": "Plain", "tags": ["a", "b"]}
    long_value = "x" * 70_000
    huge = outcome({"text": f"---\nnote: {long_value}\n---\nBody.", "type": "markdown"})
    assert isinstance(huge, dict)
    assert huge["metadata"] == {}  # over 64 KiB: kept as text
    big = outcome({"text": f"---\nn: {'9' * 5000}\nm: 2025-13-45\n---\nB.", "type": "markdown"})
    assert isinstance(big, dict)
    assert big["metadata"] == {}  # an integer past Python's digit limit, an impossible date


def test_deeply_nested_html_is_read_in_linear_time() -> None:
    # 20,000 nested <div>s (220 KB): BeautifulSoup took 24.5 s on them.
    depth = 20_000
    page = "<html><body>" + "<div>" * depth + "deep" + "</div>" * depth + "</body></html>"
    started = time.monotonic()
    assert read_html(page).text == "deep"
    assert time.monotonic() - started < 1
    result = outcome({"text": page, "filename": "deep.html"})
    assert isinstance(result, dict)
    assert result["text"] == "deep"
    unclosed = "<nav>" * depth + "menu" + "<p>never closed"
    assert refused({"text": unclosed, "filename": "nav.html"}).startswith("nav.html: no text")


@pytest.mark.parametrize(
    "markup",
    [
        "<a b='" * 32_000,  # 80 s in html.parser on Python 3.11
        "<!--" * 32_000,  # 6 s
        "<a" * 32_000,  # 2 s
        "x<" * 32_000,  # 2 s
        "&#" + "1" * 5000 + ";",  # html.unescape: ValueError past the 4,300-digit limit
    ],
    ids=["open-quotes", "open-comments", "open-tags", "lone-lt", "long-reference"],
)
def test_broken_markup_is_read_in_linear_time(markup: str) -> None:
    started = time.monotonic()
    read_html("<p>before</p>" + markup)
    assert time.monotonic() - started < 1


def test_pages_over_the_size_limit_are_refused() -> None:
    page = b"<p>" + b"x" * (20 * 1024 * 1024) + b"</p>"
    reason = refused({"content": b64(page), "filename": "huge.html"})
    assert reason == "huge.html: larger than 20 MiB, the limit for HTML; refused"


def test_a_pdf_that_keeps_the_reader_busy_is_refused_at_the_deadline() -> None:
    reason = refused({"content": b64(slow_pdf()), "filename": "slow.pdf"})
    assert reason == f"slow.pdf: extraction took longer than {DEADLINE:g}s; the document is refused"
    assert outcome({"text": "The worker goes on."})  # and the next document is read


def test_a_pdf_that_needs_too_much_memory_is_refused() -> None:
    reason = refused({"content": b64(greedy_pdf()), "filename": "greedy.pdf"})
    assert reason.startswith("greedy.pdf: needs more than 256 MiB to extract")
    after = outcome({"text": "# Next\n\nStill reading.", "filename": "next.md"})
    assert isinstance(after, dict)
    assert after["text"] == "Next\n\nStill reading."


def test_a_reader_killed_mid_document_refuses_that_document_only() -> None:
    found: list[int] = []

    def kill_the_busy_reader() -> None:
        while not found:
            busy = [reader for reader in sandbox.READERS._running if reader.memory == 256 << 20]
            idle = set(sandbox.READERS._idle)
            found.extend(r.process.pid for r in busy if r not in idle)
            time.sleep(0.05)
        os.kill(found[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_the_busy_reader, daemon=True)
    killer.start()
    reason = refused({"content": b64(slow_pdf()), "filename": "victim.pdf"})
    killer.join(5)
    assert reason.startswith("victim.pdf: needs more than 256 MiB to extract, or crashes")
    assert "SIGKILL" in reason
    assert outcome({"text": "<html><p>Next page.</p></html>"})


def test_a_reader_that_died_while_idle_is_replaced() -> None:
    assert outcome({"text": "<html><p>First.</p></html>"})
    idle = [reader for reader in sandbox.READERS._idle if reader.memory == 256 << 20]
    for reader in idle:
        os.kill(reader.process.pid, signal.SIGKILL)
        assert wait_for_exit(reader.process.pid, 5)
    second = outcome({"text": "<html><p>Second.</p></html>"})
    assert isinstance(second, dict)
    assert second["text"] == "Second."


def test_the_worker_s_threads_run_while_a_reader_works() -> None:
    gaps: list[float] = []
    stop = threading.Event()

    def heartbeat() -> None:  # like the lease keeper: needs the GIL now and then
        last = time.monotonic()
        while not stop.wait(0.01):
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    beating = threading.Thread(target=heartbeat, daemon=True)
    beating.start()
    refused({"content": b64(slow_pdf()), "filename": "slow.pdf"})
    stop.set()
    beating.join(5)
    assert gaps
    assert max(gaps) < 1.0


def test_extraction_from_many_threads_at_once() -> None:
    pages = [f"<html><body><h1>Page {n}</h1><p>Text {n}.</p></body></html>" for n in range(24)]
    results: dict[int, Any] = {}

    def extract_some(numbers: range) -> None:
        for number in numbers:
            results[number] = extract({"text": pages[number]})

    threads = [threading.Thread(target=extract_some, args=(range(n, 24, 4),)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND * 2)
    assert {n: (r["title"], r["text"]) for n, r in results.items()} == {
        n: (f"Page {n}", f"Page {n}\n\nText {n}.") for n in range(24)
    }
    assert len(sandbox.READERS._idle) <= sandbox.MAX_IDLE


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "ok.txt").write_text("A document inside the root.")
    monkeypatch.setenv("PIPELINE_FILES_ROOT", str(folder))
    return folder


def test_the_worker_s_environment_cannot_be_read(root: Path) -> None:
    # Before: the environment, secrets included, came back as the job's text.
    secret = os.environ["PATH"]
    for doc in (
        {"uri": "file:///proc/self/environ", "type": "text"},
        {"path": "/proc/self/environ"},
        {"path": "/proc/self/root/etc/hostname"},
    ):
        reason = refused(doc)
        assert "outside the folders this worker may read" in reason
        assert secret not in reason
    (root / "env.txt").symlink_to("/proc/self/environ")
    assert refused({"path": "env.txt"}) == (
        "env.txt: outside the folders this worker may read (PIPELINE_FILES_ROOT)"
    )


def test_endless_and_blocking_files_are_refused_at_once(root: Path) -> None:
    # Before: /dev/zero was read until memory ran out; a FIFO would block the open forever.
    os.mkfifo(root / "pipe.txt")
    (root / "zero.txt").symlink_to("/dev/zero")
    assert refused({"path": "/dev/zero"}).endswith(
        "outside the folders this worker may read (PIPELINE_FILES_ROOT)"
    )
    assert refused({"path": "zero.txt"}).startswith("zero.txt: outside the folders")
    assert refused({"path": "pipe.txt"}) == (
        "pipe.txt: is not a regular file (a device, FIFO or socket); refused"
    )


def test_a_symlink_out_of_the_root_reads_like_a_missing_outside_file(
    root: Path, tmp_path: Path
) -> None:
    (tmp_path / "private.txt").write_text("not for jobs")
    (root / "link.txt").symlink_to(tmp_path / "private.txt")
    link = refused({"path": "link.txt"})
    assert link == "link.txt: outside the folders this worker may read (PIPELINE_FILES_ROOT)"
    there = refused({"path": str(tmp_path / "private.txt")})
    not_there = refused({"path": str(tmp_path / "absent.txt")})
    assert there.partition(": ")[2] == not_there.partition(": ")[2] == link.partition(": ")[2]
    assert outcome({"path": "ok.txt"})


def test_readers_do_not_get_the_worker_s_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox.READERS.close()  # the next reader starts with the environment set below
    monkeypatch.setenv("DOCPIPE_TEST_SECRET", "hunter2")
    assert outcome({"text": "<html><p>x</p></html>"})
    (reader,) = sandbox.READERS._idle
    environment = Path(f"/proc/{reader.process.pid}/environ").read_bytes()
    assert b"hunter2" not in environment
    assert b"PYTHONPATH=" in environment


def test_a_reader_ends_when_its_worker_dies(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from stages.extract import extract\n"
        "from stages import sandbox\n"
        "extract({'text': '<html><p>x</p></html>'})\n"
        "print(sandbox.READERS._idle[0].process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as worker:
        try:
            assert worker.stdout is not None
            reader = int(worker.stdout.readline())
            os.kill(worker.pid, signal.SIGKILL)  # no atexit: the reader must notice by itself
        finally:
            worker.kill()
    assert wait_for_exit(reader, 5)


def wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":  # exited; its parent (now init) has yet to reap it
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("EXTRACT_TIMEOUT", "soon", "environment: EXTRACT_TIMEOUT: expected a duration"),
        ("EXTRACT_TIMEOUT", "0s", "environment: EXTRACT_TIMEOUT: must be more than 0s"),
        ("EXTRACT_MEMORY", "lots", "environment: EXTRACT_MEMORY: expected a size"),
        ("EXTRACT_MEMORY", "1MiB", "environment: EXTRACT_MEMORY: must be at least 64MiB"),
    ],
)
def test_bad_limits_are_configuration_errors(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        extract({"text": "<html><p>x</p></html>"})
    assert str(error.value).startswith(problem)


def test_sentence_splitting_is_linear_on_runs_of_marks() -> None:
    # 40,000 dots before a letter took 22 s: each start in the run rescanned the rest of it.
    for text in ("." * 400_000 + "x", "!\u201d" * 200_000 + " ", ". " * 200_000):
        started = time.monotonic()
        sentence_spans(text)
        chunk_spans(text)
        paragraph_count(text)
        assert time.monotonic() - started < 5


MARKUP = st.text(alphabet="<>!-/=\"'&#;ab \n\t[]*`_:|", max_size=400)
NAMES = ["x.pdf", "x.html", "x.md", "x.txt"]


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.one_of(st.binary(max_size=2000), MARKUP.map(lambda text: text.encode())),
    filename=st.sampled_from(NAMES),
)
def test_random_bytes_as_any_type_end_as_a_result_or_a_refusal(data: bytes, filename: str) -> None:
    result = outcome({"content": b64(data), "filename": filename})
    if isinstance(result, dict):
        assert isinstance(result["text"], str)
        assert result["text"]
    else:
        assert result.reason.startswith(filename)
