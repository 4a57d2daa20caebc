"""framework.files: a job reads only regular files inside PIPELINE_FILES_ROOT, boundedly.

Real folders, real symlinks, a real FIFO, /proc and /dev: the refusals are about what the
kernel does with such names, so nothing here is simulated. Every refusal is checked for what
it must not say: the host's folders, or whether something outside the root exists.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from framework import FileRefused, PipelineError
from framework.files import MAX_FILE_BYTES, NO_USABLE_ROOT, OFF, OUTSIDE, file_roots, read_file

T = TypeVar("T")


def within(seconds: float, call: Callable[[], T]) -> T:
    """Run `call` in a daemon thread; a call that blocks fails the test instead of hanging it."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds}s"
    if failure:
        raise failure[0]
    return outcome[0]


def refusal(name: str, roots: list[Path] | None = None, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The reason `read_file` gives for `name`; it must refuse, and at once."""
    with pytest.raises(FileRefused) as refused:
        within(5, lambda: read_file(name, max_bytes, roots))
    assert refused.value.name == name
    assert str(refused.value) == f"{name}: {refused.value.problem}"
    return refused.value.problem


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    (folder / "notes").mkdir()
    (folder / "notes" / "a.txt").write_bytes(b"inside the root")
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(b"not for jobs")
    return folder


def test_reading_is_off_without_a_root(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    monkeypatch.delenv("PIPELINE_FILES_ROOT", raising=False)
    reason = refusal(str(root / "notes" / "a.txt"))
    assert reason == OFF
    assert "PIPELINE_FILES_ROOT" in reason


def test_a_root_from_the_environment_opens_its_files(
    monkeypatch: pytest.MonkeyPatch, root: Path, outside: Path
) -> None:
    monkeypatch.setenv("PIPELINE_FILES_ROOT", os.pathsep.join([str(root), str(outside)]))
    assert file_roots() == (root.resolve(), outside.resolve())
    assert read_file(str(root / "notes" / "a.txt")) == b"inside the root"
    assert read_file(str(outside / "secret.txt")) == b"not for jobs"  # every root is open
    assert read_file("notes/a.txt") == b"inside the root"  # relative to the first root
    assert read_file("./notes//a.txt") == b"inside the root"


def test_roots_that_may_never_be_roots_are_left_out(
    monkeypatch: pytest.MonkeyPatch, root: Path
) -> None:
    assert file_roots(os.pathsep.join(["/", "/proc", "/sys", "/dev", "/proc/self"])) == ()
    assert file_roots(os.pathsep.join(["/dev/shm", str(root / "missing"), str(root)])) == (
        root.resolve(),
    )
    monkeypatch.setenv("PIPELINE_FILES_ROOT", "/")
    assert refusal("/etc/hostname") == NO_USABLE_ROOT
    assert refusal("/proc/self/environ", roots=[Path("/proc")]) == NO_USABLE_ROOT
    assert refusal("/dev/zero", roots=[Path("/dev")]) == NO_USABLE_ROOT


def test_dot_dot_is_refused_even_when_it_stays_inside(root: Path) -> None:
    assert refusal("notes/../notes/a.txt", [root]) == "a path may not contain '..'"
    assert refusal(f"{root}/../root/notes/a.txt", [root]) == "a path may not contain '..'"


def test_outside_the_root_reads_the_same_whether_or_not_it_exists(
    root: Path, outside: Path
) -> None:
    there = refusal(str(outside / "secret.txt"), [root])
    not_there = refusal(str(outside / "nothing-here.txt"), [root])
    assert there == not_there == OUTSIDE
    assert refusal("/etc/passwd", [root]) == OUTSIDE


def test_symlinks_are_followed_but_not_out_of_the_root(root: Path, outside: Path) -> None:
    (root / "inner-link.txt").symlink_to(root / "notes" / "a.txt")
    (root / "out-link.txt").symlink_to(outside / "secret.txt")
    (root / "out-folder").symlink_to(outside, target_is_directory=True)
    (root / "environ").symlink_to("/proc/self/environ")
    assert read_file("inner-link.txt", roots=[root]) == b"inside the root"
    for name in ("out-link.txt", "out-folder/secret.txt", "environ"):
        assert refusal(name, [root]) == OUTSIDE


def test_proc_and_dev_are_never_read(root: Path) -> None:
    for name in ("/proc/self/environ", "/proc/self/cmdline", "/dev/zero", "/sys/kernel/notes"):
        assert refusal(name, [root]) == OUTSIDE
    (root / "zero").symlink_to("/dev/zero")
    assert refusal("zero", [root]) == OUTSIDE


def test_a_fifo_is_refused_without_waiting_for_a_writer(root: Path) -> None:
    os.mkfifo(root / "pipe.txt")
    reason = refusal("pipe.txt", [root])
    assert reason == "is not a regular file (a device, FIFO or socket); refused"


def test_missing_files_and_folders_get_plain_reasons(root: Path) -> None:
    assert refusal("notes/missing.txt", [root]) == "file not found"
    assert refusal("nothing/missing.txt", [root]) == "file not found"
    assert refusal("notes/a.txt/deeper", [root]) == "file not found"
    assert refusal("notes", [root]) == "is a directory, not a document"
    assert refusal(str(root), [root]) == "is a directory, not a document"
    assert refusal("", [root]) == "not a file name"
    assert refusal("x" * 5000, [root]) == "not a file name (too long)"


def test_reasons_never_name_the_hosts_folders(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root.parent)
    for name in ("notes/missing.txt", "notes", "../x", "/etc/shadow"):
        with pytest.raises(FileRefused) as refused:
            read_file(name, roots=[root])
        shown = str(refused.value)
        assert str(root) not in shown.removeprefix(name)
        assert os.getcwd() not in shown.removeprefix(name)


@contextmanager
def unprivileged() -> Iterator[None]:
    """Drop the effective user to nobody for a moment when running as root (as in CI images)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_permission_denied_inside_the_root() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        root.chmod(0o755)  # nobody may enter the root, not read the file
        (root / "locked.txt").write_bytes(b"private")
        (root / "locked.txt").chmod(0o000)
        with unprivileged():
            assert refusal("locked.txt", [root]) == "permission denied"


def test_the_size_limit_counts_bytes_read(root: Path) -> None:
    (root / "exact.txt").write_bytes(b"x" * 1000)
    assert read_file("exact.txt", 1000, [root]) == b"x" * 1000
    assert refusal("exact.txt", [root], max_bytes=999) == "file is larger than 999 bytes"
    assert MAX_FILE_BYTES == 50 * 2**20


def test_a_file_that_grows_past_the_limit_after_a_size_check_is_refused(root: Path) -> None:
    growing = root / "growing.log"
    growing.write_bytes(b"x" * 100)
    assert growing.stat().st_size <= 4096  # what the old st_size guard looked at
    with growing.open("ab") as log:
        log.write(b"y" * 8192)
    assert refusal("growing.log", [root], max_bytes=4096) == "file is larger than 4096 bytes"


def test_a_file_growing_while_it_is_read_never_gives_more_than_the_limit(root: Path) -> None:
    growing = root / "busy.log"
    growing.write_bytes(b"")
    stop = threading.Event()

    def write_forever() -> None:
        with growing.open("ab") as log:
            while not stop.is_set():
                log.write(b"z" * 65536)
                log.flush()

    writer = threading.Thread(target=write_forever, daemon=True)
    writer.start()
    try:
        limit = 256 * 1024
        started = time.monotonic()
        refusals: list[str] = []
        while time.monotonic() - started < 2 and not refusals:
            try:
                data = within(5, lambda: read_file("busy.log", limit, [root]))
            except FileRefused as refused:
                refusals.append(refused.problem)
            else:
                assert len(data) <= limit
        assert refusals == [f"file is larger than {limit} bytes"]  # past the limit within 2 s
    finally:
        stop.set()
        writer.join(5)


def test_file_refused_is_a_pipeline_error() -> None:
    assert issubclass(FileRefused, PipelineError)
    error = FileRefused("a.txt", "file not found")
    assert (error.name, error.problem) == ("a.txt", "file not found")
    assert str(error) == "a.txt: file not found"
