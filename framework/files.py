"""Which local files a job may name, and how to read one without trusting the name.

A `path` in a job comes from whoever can submit jobs. Read as given, it hands them the worker's
secrets (/proc/self/environ), hangs the worker on a FIFO, or fills its memory from /dev/zero.
So reading is off until the operator opens folders with PIPELINE_FILES_ROOT, and then only
regular files inside them are read, and at most `max_bytes` of each. Any stage can use
`read_file`; refusals are `FileRefused`, whose reason names the file as the job wrote it and
reads the same whether or not something exists outside the folders: it goes back to the
submitter, who must learn nothing about the host's layout.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePath

from framework.errors import FileRefused

ROOTS_VARIABLE = "PIPELINE_FILES_ROOT"
MAX_FILE_BYTES = 50 * 1024 * 1024  # a guard against pointing a worker at a disk image
# Never a root, nor anything under them: the kernel's views of the host and its devices.
PSEUDO_FOLDERS = (Path("/proc"), Path("/sys"), Path("/dev"))

OFF = (
    f"reading local files is off on this worker: set {ROOTS_VARIABLE} to the folder(s) "
    "jobs may read, or submit the document's content instead"
)
NO_USABLE_ROOT = (
    f"{ROOTS_VARIABLE} names no folder that may be read "
    "(an existing folder other than /, /proc, /sys or /dev)"
)
OUTSIDE = f"outside the folders this worker may read ({ROOTS_VARIABLE})"
_OPEN = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
_CHUNK = 1 << 20


def file_roots(value: str | None = None) -> tuple[Path, ...]:
    """The usable folders in `value` (default: PIPELINE_FILES_ROOT now), `os.pathsep`-separated.

    Each is resolved (symlinks followed); entries that are not existing folders, and `/`,
    /proc, /sys and /dev with everything under them, are left out.
    """
    if value is None:
        value = os.environ.get(ROOTS_VARIABLE, "")
    return _usable(Path(entry) for entry in value.split(os.pathsep) if entry.strip())


def read_file(
    name: str, max_bytes: int = MAX_FILE_BYTES, roots: Sequence[Path] | None = None
) -> bytes:
    """The bytes of the regular file `name`, which must lie inside one of `roots`.

    A relative `name` is relative to the first root; `roots` defaults to `file_roots()`.
    Symlinks are followed, but where they lead must be inside a root too. The open cannot
    block (a FIFO) and the size is enforced while reading, not taken from `st_size`.

    Raises:
        FileRefused: with a reason fit to show to whoever submitted `name`.
        OSError: an I/O error other than a refusal (a flaky mount), without host paths:
            worth retrying.
    """
    allowed = file_roots() if roots is None else _usable(roots)
    if not allowed:
        configured = roots is not None or os.environ.get(ROOTS_VARIABLE, "").strip()
        raise FileRefused(_shown(name), NO_USABLE_ROOT if configured else OFF)
    root, relative = _locate(name, allowed)
    descriptor = _open_inside(root, relative, name)
    try:
        return _read_regular(descriptor, name, max_bytes)
    finally:
        os.close(descriptor)


def _usable(roots: Iterable[Path]) -> tuple[Path, ...]:
    """Resolved existing folders, without those that must never be a root."""
    usable: list[Path] = []
    for root in roots:
        resolved = Path(os.path.realpath(root))
        if resolved.is_dir() and not _is_pseudo(resolved) and resolved != Path("/"):
            usable.append(resolved)
    return tuple(usable)


def _is_pseudo(path: Path) -> bool:
    return any(path == folder or folder in path.parents for folder in PSEUDO_FOLDERS)


def _locate(name: str, roots: Sequence[Path]) -> tuple[Path, PurePath]:
    """The root that holds `name` once resolved, and the resolved path relative to it."""
    if not name or "\x00" in name:
        raise FileRefused(_shown(name), "not a file name")
    given = Path(name)
    if ".." in given.parts:
        raise FileRefused(_shown(name), "a path may not contain '..'")
    resolved = Path(os.path.realpath(given if given.is_absolute() else roots[0] / given))
    for root in roots:
        if resolved.is_relative_to(root):
            return root, resolved.relative_to(root)
    raise FileRefused(_shown(name), OUTSIDE)


def _open_inside(root: Path, relative: PurePath, name: str) -> int:
    """Open `root/relative` one component at a time, following no symlink.

    `relative` was resolved a moment ago, so it holds no symlinks; one that appears since
    (a swapped folder) fails with ELOOP instead of leading out of the root.
    """
    if not relative.parts:
        raise FileRefused(_shown(name), "is a directory, not a document")
    try:
        folder = os.open(root, _OPEN | os.O_DIRECTORY)
        try:
            for part in relative.parts[:-1]:
                inner = os.open(part, _OPEN | os.O_DIRECTORY, dir_fd=folder)
                os.close(folder)
                folder = inner
            # O_NONBLOCK: opening a FIFO waits for a writer otherwise.
            return os.open(relative.parts[-1], _OPEN | os.O_NONBLOCK, dir_fd=folder)
        finally:
            os.close(folder)
    except OSError as error:
        raise _refusal(error, name) from None


def _refusal(error: OSError, name: str) -> Exception:
    """The error to raise for a failed open: a refusal, or a retryable OSError without paths."""
    problems = {
        errno.ENOENT: "file not found",
        errno.ENOTDIR: "file not found",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ELOOP: "is a symbolic link that changed while it was opened; refused",
        errno.ENXIO: "is not a regular file (a device, FIFO or socket); refused",
        errno.ENAMETOOLONG: "not a file name (too long)",
    }
    if error.errno in problems:
        return FileRefused(_shown(name), problems[error.errno])
    return OSError(error.errno, f"{_shown(name)}: {error.strerror}")


def _read_regular(descriptor: int, name: str, max_bytes: int) -> bytes:
    """At most `max_bytes` of an open regular file; a file that grows past them is refused."""
    status = os.fstat(descriptor)
    if stat.S_ISDIR(status.st_mode):
        raise FileRefused(_shown(name), "is a directory, not a document")
    if not stat.S_ISREG(status.st_mode):
        raise FileRefused(_shown(name), "is not a regular file (a device, FIFO or socket); refused")
    if status.st_dev in _pseudo_devices():  # /proc bind-mounted inside a root
        raise FileRefused(_shown(name), OUTSIDE)
    chunks: list[bytes] = []
    total = 0
    while total <= max_bytes:
        chunk = os.read(descriptor, min(_CHUNK, max_bytes + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > max_bytes:
        raise FileRefused(_shown(name), f"file is larger than {_size(max_bytes)}")
    return b"".join(chunks)


def _pseudo_devices() -> set[int]:
    """Device numbers of /proc, /sys and /dev, where they are file systems of their own."""
    try:
        host = os.stat("/").st_dev
    except OSError:
        return set()
    devices: set[int] = set()
    for folder in PSEUDO_FOLDERS:
        try:
            device = os.stat(folder).st_dev
        except OSError:
            continue
        if device != host:  # a plain folder on the root file system is no pseudo file system
            devices.add(device)
    return devices


def _size(limit: int) -> str:
    return f"{limit // 2**20} MiB" if limit % 2**20 == 0 else f"{limit} bytes"


def _shown(name: str) -> str:
    """The name as written, or quoted when it holds line breaks or other control characters."""
    return name if name.isprintable() else repr(name)
