"""Files on disk -> job payloads, shared by `run` and `submit`.

A file is one job: `{"filename", "text"}` when it is UTF-8 text, `{"filename", "content"}`
(base64) otherwise. PDFs always travel as `content`, even when their bytes happen to be ASCII,
because a stage reading a PDF needs its bytes, not text. Folders are walked recursively, in
sorted order, skipping hidden files and folders, so a run is repeatable.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from framework.cli.common import UsageProblem
from framework.errors import PayloadError, PayloadTooLarge
from framework.wire import encode_payload

BINARY_MAGIC = (b"%PDF-",)


@dataclass(frozen=True, slots=True)
class Document:
    """One file to submit: `path` as the user will see it, `name` as the stage sees it."""

    path: Path
    name: str

    def payload(self) -> dict[str, str]:
        data = self.path.read_bytes()
        text = _as_text(data)
        if text is not None:
            return {"filename": self.name, "text": text}
        return {"filename": self.name, "content": base64.b64encode(data).decode("ascii")}

    def encoded(self, max_payload: int) -> dict[str, str]:
        """The payload, refused with the file's name when it is over `max_payload`."""
        payload = self.payload()
        try:
            encode_payload(payload, max_payload)
        except PayloadError as error:
            raise PayloadError(f"{self.path}: {error}") from None
        return payload


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
    """The files under `folder`; a symlink is followed only where it stays inside `folder`
    (os.walk does not descend into linked folders), so a folder handed in cannot hand out
    the rest of the host (a link to ~/.ssh or /etc)."""
    found: list[Document] = []
    inside = folder.resolve()
    for root, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in files:
            path = Path(root) / name
            if name.startswith(".") or not path.is_file():
                continue
            if path.is_symlink() and not path.resolve().is_relative_to(inside):
                raise UsageProblem(
                    f"{path}: a symlink that leads out of {folder}; it is not followed "
                    "(name the file itself to submit it)"
                )
            found.append(Document(path, path.relative_to(folder).as_posix()))
    return sorted(found, key=lambda document: document.name)


def check_sizes(documents: Iterable[Document], max_payload: int) -> None:
    """Refuse, before anything is submitted, files too large to be a payload."""
    for document in documents:
        size = document.path.stat().st_size
        if size > max_payload:
            raise PayloadTooLarge(
                f"{document.path}: {size} bytes, over max_payload {max_payload}; "
                "raise max_payload in pipeline.yaml or submit a path instead"
            )
