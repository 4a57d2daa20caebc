"""extract, the first stage: a document, wherever it is, becomes plain text with metadata.

A job names its document in one of four ways: inline `text`, base64 `content` (with a
`filename` for the type), a local `path`, or a `file://` `uri`. The type comes from the
file name's extension, else from the bytes. Anything this stage cannot read is a document
problem that no retry fixes, so it raises `Fail` with a reason that names the file.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from framework import Fail
from stages.formats import Extracted, read_html, read_markdown, read_pdf, read_text

EXTENSIONS = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".pdf": "pdf",
}
TYPES = frozenset(EXTENSIONS.values())
SUPPORTED = ", ".join(EXTENSIONS)
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
MAX_FILE_BYTES = 50 * 1024 * 1024  # a guard against pointing a worker at a disk image

_HTML_START = re.compile(r"\s*(<!--.*?-->\s*)*<(!doctype\s+html|html)\b", re.IGNORECASE | re.DOTALL)


@dataclass
class Source:
    """A document's raw data, and how reasons name it."""

    name: str
    filename: str | None
    data: bytes | str  # str only for inline `text`


def extract(doc: dict[str, Any]) -> dict[str, Any]:
    """Text, title and metadata of the document; the input's fields pass on, less `content`."""
    if not isinstance(doc, dict):  # `--data '[1]'`: no retry will make it a document
        shown = type(doc).__name__
        raise Fail(f"a document is a JSON object (text, content or path), got a JSON {shown}")
    source = _source(doc)
    kind = _document_type(source, doc.get("type"))
    found = _read(kind, source)
    if not found.text:
        raise Fail(f"{source.name}: no text after extraction (empty document{_empty_hint(kind)})")
    metadata = dict(found.metadata)
    if isinstance(source.data, bytes):
        metadata["bytes"] = len(source.data)
    if isinstance(doc.get("metadata"), dict):
        metadata.update(doc["metadata"])  # what the submitter said wins
    output = {key: value for key, value in doc.items() if key != "content"}
    output.update(
        filename=source.filename,
        type=kind,
        title=found.title,
        text=found.text,
        chars=len(found.text),
        metadata=metadata,
    )
    return output


def _source(doc: dict[str, Any]) -> Source:
    """The first of `text`, `content`, `path` and `uri` that the document has."""
    filename = doc.get("filename")
    if isinstance(doc.get("text"), str):
        return Source(filename or "inline text", filename, doc["text"])
    if "content" in doc:
        name = filename or "inline content"
        return Source(name, filename, _decode_base64(doc["content"], name))
    if "path" in doc:
        return _read_file(Path(str(doc["path"])), filename)
    if "uri" in doc:
        return _read_file(_file_uri_path(str(doc["uri"])), filename)
    raise Fail("document has none of text, content, path or uri: nothing to extract")


def _decode_base64(content: object, name: str) -> bytes:
    """`content` is base64 (line breaks allowed, as MIME writes it)."""
    if not isinstance(content, str):
        raise Fail(f"{name}: content must be a base64 string, not {type(content).__name__}")
    try:
        return base64.b64decode("".join(content.split()), validate=True)
    except binascii.Error as exc:
        raise Fail(f"{name}: content is not valid base64 ({exc})") from exc


def _file_uri_path(uri: str) -> Path:
    """The local path of a `file://` URI; other schemes would need a fetcher this stage lacks."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file":
        scheme = f"{parts.scheme}://" if parts.scheme else "a URI without a scheme"
        raise Fail(
            f"{uri}: unsupported URI scheme ({scheme}): only file:// URIs are read; "
            "submit the document's content or a local path instead"
        )
    if parts.netloc not in ("", "localhost"):
        raise Fail(f"{uri}: file URI on host {parts.netloc!r}: only local files are read")
    return Path(url2pathname(parts.path))


def _read_file(path: Path, filename: str | None) -> Source:
    """Read a local file; a relative path is relative to the worker's working directory."""
    name = str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise Fail(f"{name}: file is larger than {MAX_FILE_BYTES // 2**20} MiB")
        data = path.read_bytes()
    except FileNotFoundError as exc:
        where = "" if path.is_absolute() else f" in the working directory {Path.cwd()}"
        raise Fail(f"{name}: file not found{where}") from exc
    except IsADirectoryError as exc:
        raise Fail(f"{name}: is a directory, not a document") from exc
    except PermissionError as exc:
        raise Fail(f"{name}: permission denied") from exc
    # Other OSErrors (a flaky network mount) propagate: the engine retries them with backoff.
    return Source(name, filename or path.name, data)


def _document_type(source: Source, declared: object) -> str:
    """The declared `type`, else PDF by its magic bytes, else the extension, else sniffing."""
    if declared is not None:
        if declared in TYPES:
            return str(declared)
        raise Fail(f"{source.name}: unsupported type {declared!r} (supported: {sorted(TYPES)})")
    if isinstance(source.data, bytes) and b"%PDF-" in source.data[:1024]:
        return "pdf"
    suffix = Path(source.filename).suffix.lower() if source.filename else ""
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    if suffix:
        raise Fail(f"{source.name}: unsupported file type {suffix!r} (supported: {SUPPORTED})")
    return _sniff(source)


def _sniff(source: Source) -> str:
    """HTML or plain text, for data without a telling name; binary data is refused."""
    data = source.data
    if isinstance(data, bytes):
        if b"\x00" in data[:4096] and not data.startswith(UTF16_BOMS):
            raise Fail(f"{source.name}: unsupported binary content (supported: {SUPPORTED})")
        data = _decode(data[:4096])
    return "html" if _HTML_START.match(data) else "text"


def _read(kind: str, source: Source) -> Extracted:
    """Hand the data to the reader for its type."""
    if kind == "pdf":
        if isinstance(source.data, str):
            raise Fail(f"{source.name}: a PDF must come as base64 content, a path or a uri")
        return read_pdf(source.data, source.name)
    if kind == "html":
        return read_html(source.data)  # given bytes, BeautifulSoup honours the page's charset
    raw = source.data if isinstance(source.data, str) else _decode(source.data)
    return read_markdown(raw) if kind == "markdown" else read_text(raw)


def _decode(data: bytes) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with BOM; else Windows-1252, which reads anything."""
    if data.startswith(UTF16_BOMS):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _empty_hint(kind: str) -> str:
    """Why a document may come out empty, where the type suggests a reason."""
    if kind == "pdf":
        return ", or a scanned PDF without a text layer"
    if kind == "html":
        return ", or only boilerplate such as navigation and scripts"
    return ""
