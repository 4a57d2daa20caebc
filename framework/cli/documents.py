"""Files on disk -> job payloads, shared by `run` and `submit`.

A file is one job: `{"filename", "text"}` when it is UTF-8 text, `{"filename", "content"}`
(base64) otherwise. PDFs always travel as `content`, even when their bytes happen to be ASCII,
because a stage reading a PDF needs its bytes, not text. Folders are walked recursively, in
sorted order, skipping hidden files and folders, so a run is repeatable.

`pipeline submit` sends documents to workers that may run anywhere: a file too large to be a
payload, or a symlink that leads out of a folder it was given, refuses the whole submit before
anything is queued. `pipeline run` runs the stages itself, here, with the folders it was given
as the only ones they may read (framework/files.py): such a file becomes a job that names it
by `path`, read by the stage where it runs, and refused there with a reason when it may not be
(a symlink out of the folder, a file it cannot read), so every file is one job and the others
go on.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framework.cli.common import UsageProblem
from framework.errors import PayloadError, PayloadTooLarge
from framework.wire import encode_payload

BINARY_MAGIC = (b"%PDF-",)


@dataclass(frozen=True, slots=True)
class Document:
    """One file to submit: `path` as the user will see it, `name` as the stage sees it.
    `leads_out`: a symlink whose target lies outside the folder it was found in."""

    path: Path
    name: str
    leads_out: bool = False

    def payload(self) -> dict[str, str]:
        data = self.path.read_bytes()
        text = _as_text(data)
        if text is not None:
            return {"filename": self.name, "text": text}
        return {"filename": self.name, "content": base64.b64encode(data).decode("ascii")}

    def reference(self) -> dict[str, str]:
        """The job that names the file instead of carrying it (its absolute path, symlinks
        as found: where they lead is for the reading stage to judge)."""
        return {"filename": self.name, "path": str(self.path.absolute())}

    def encoded(self, max_payload: int) -> dict[str, str]:
        """The payload, refused with the file's name when it is over `max_payload`."""
        payload = self.payload()
        try:
            encode_payload(payload, max_payload)
        except PayloadError as error:
            raise PayloadError(f"{self.path}: {error}") from None
        return payload

    def job(self, max_payload: int) -> dict[str, Any]:
        """What `pipeline run` submits: the document itself when it can travel as a payload,
        else a reference to it (too large, not readable here, a symlink out of its folder)."""
        if self.leads_out:
            return self.reference()
        try:
            if self.path.stat().st_size > max_payload:
                return self.reference()
            return self.encoded(max_payload)
        except (OSError, PayloadError):
            return self.reference()


def _as_text(data: bytes) -> str | None:
    if b"\x00" in data or any(magic in data[:1024] for magic in BINARY_MAGIC):
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def find_documents(paths: Sequence[Path]) -> list[Document]:
    """Every document named: files as given, folders walked; a missing path is a usage error."""
    documents: list[Document] = []
    for path in paths:
        if path.is_dir():
            documents += _walk(path)
        elif path.is_file():
            documents.append(Document(path, path.name))
        elif path.exists():
            raise UsageProblem(f"{path}: not a regular file or folder")
        else:
            raise UsageProblem(f"{path}: no such file or folder")
    if not documents:
        shown = ", ".join(str(path) for path in paths)
        raise UsageProblem(f"no documents found in {shown} (hidden files are skipped)")
    return documents


def _walk(folder: Path) -> list[Document]:
    """The files under `folder` (os.walk does not descend into linked folders); a symlink that
    leads out of `folder` is marked, so that it is never read as if it were inside."""
    found: list[Document] = []
    inside = folder.resolve()
    for root, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in files:
            path = Path(root) / name
            if name.startswith(".") or not (path.is_file() or path.is_symlink()):
                continue
            leads_out = path.is_symlink() and not path.resolve().is_relative_to(inside)
            found.append(Document(path, path.relative_to(folder).as_posix(), leads_out))
    return sorted(found, key=lambda document: document.name)


def check_for_submit(documents: Iterable[Document], max_payload: int) -> None:
    """Refuse, before anything is submitted, what `pipeline submit` cannot send: a file too
    large to be a payload, or a symlink that leads out of a folder it was given."""
    for document in documents:
        if document.leads_out:
            raise UsageProblem(
                f"{document.path}: a symlink that leads out of its folder; it is not followed "
                "(name the file itself to submit it)"
            )
        size = document.path.stat().st_size
        if size > max_payload:
            raise PayloadTooLarge(
                f"{document.path}: {size} bytes, over max_payload {max_payload}; raise "
                "max_payload in pipeline.yaml, or submit a job naming it by path (for workers "
                "whose PIPELINE_FILES_ROOT holds it)"
            )
