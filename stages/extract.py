"""extract, the first stage: a document, wherever it is, becomes plain text with metadata.

A job names its document in one of four ways: inline `text`, base64 `content` (with a
`filename` for the type), a local `path`, or a `file://` `uri`. Paths and URIs are read by
framework.files, only inside the folders PIPELINE_FILES_ROOT opens (none by default). The type
comes from the file name's extension, else from the bytes. Plain text is read here; HTML,
Markdown and PDF in a reader process with a deadline and a memory limit (sandbox.py), because
a hostile document can keep their readers busy for minutes or exhaust memory. Anything this
stage cannot read is a document problem that no retry fixes, so it raises `Fail` with a
reason that names the document as the job named it, never the host's folders.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from framework import Fail, FileRefused
from framework.files import MAX_FILE_BYTES, read_file
from stages.extracted import UTF16_BOMS, Extracted, decode_text
from stages.formats import read_document, refuse_oversized
from stages.sandbox import read_isolated

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
IN_PROCESS = frozenset({"text"})  # readers linear on any input; the others run isolated
SNIFF_BYTES = 4096

# Both linear: `\s*+` and `\s++` never give back what they matched. The comments before the
# tag are skipped with str.find (_looks_like_html): as one pattern, `(<!--.*?-->\s*)*` tried
# every way of grouping `<!---->` repeats, doubling its time with each one.
_SPACE = re.compile(r"\s*+")
_HTML_TAG = re.compile(r"<(?:!doctype\s++html|html)\b", re.IGNORECASE)


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
    if "path" in doc:  # named in reasons by its filename when the job gives one
        path = str(doc["path"])
        return _read_file(path, str(filename or path), filename)
    if "uri" in doc:
        uri = str(doc["uri"])
        return _read_file(file_uri_path(uri), str(filename or uri), filename)
    raise Fail("document has none of text, content, path or uri: nothing to extract")


def _decode_base64(content: object, name: str) -> bytes:
    """`content` is base64 (line breaks allowed, as MIME writes it)."""
    if not isinstance(content, str):
        raise Fail(f"{name}: content must be a base64 string, not {type(content).__name__}")
    try:
        return base64.b64decode("".join(content.split()), validate=True)
    except binascii.Error as exc:
        raise Fail(f"{name}: content is not valid base64 ({exc})") from exc


def file_uri_path(uri: str) -> str:
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
    return url2pathname(parts.path)


def _read_file(path: str, shown: str, filename: str | None) -> Source:
    """A local file, as framework.files allows; `shown` is how reasons name it: the job's
    filename, else the path as the job wrote it."""
    named = shown if shown.isprintable() else repr(shown)  # reasons stay one line
    try:
        data = read_file(path, MAX_FILE_BYTES)
    except FileRefused as refused:
        raise Fail(f"{named}: {refused.problem}") from None
    # Other OSErrors (a flaky network mount) propagate: the engine retries them with backoff.
    return Source(named, filename or PurePath(path).name, data)


def _document_type(source: Source, declared: object) -> str:
    """The declared `type`, else PDF by its magic bytes, else the extension, else sniffing."""
    if declared is not None:
        if declared in TYPES:
            return str(declared)
        raise Fail(f"{source.name}: unsupported type {declared!r} (supported: {sorted(TYPES)})")
    if isinstance(source.data, bytes) and b"%PDF-" in source.data[:1024]:
        return "pdf"
    suffix = PurePath(source.filename).suffix.lower() if source.filename else ""
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    if suffix:
        raise Fail(f"{source.name}: unsupported file type {suffix!r} (supported: {SUPPORTED})")
    return _sniff(source)


def _sniff(source: Source) -> str:
    """HTML or plain text, for data without a telling name; binary data is refused."""
    data = source.data
    if isinstance(data, bytes):
        if b"\x00" in data[:SNIFF_BYTES] and not data.startswith(UTF16_BOMS):
            raise Fail(f"{source.name}: unsupported binary content (supported: {SUPPORTED})")
        data = decode_text(data[:SNIFF_BYTES])
    return "html" if _looks_like_html(data) else "text"


def _looks_like_html(text: str) -> bool:
    """Whether `text` opens, after whitespace and `<!-- -->` comments, with a doctype or <html>."""
    position = _after_space(text, 0)
    while text.startswith("<!--", position):
        closing = text.find("-->", position + 4)
        if closing < 0:
            return False
        position = _after_space(text, closing + 3)
    return _HTML_TAG.match(text, position) is not None


def _after_space(text: str, position: int) -> int:
    space = _SPACE.match(text, position)
    return space.end() if space else position


def _read(kind: str, source: Source) -> Extracted:
    """Hand the data to the reader for its type: here for plain text, else in a reader process."""
    refuse_oversized(kind, len(source.data), source.name)
    if kind == "pdf" and isinstance(source.data, str):
        raise Fail(f"{source.name}: a PDF must come as base64 content, a path or a uri")
    if kind in IN_PROCESS:
        return read_document(kind, source.data, source.name)
    return read_isolated(kind, source.data, source.name)


def _empty_hint(kind: str) -> str:
    """Why a document may come out empty, where the type suggests a reason."""
    if kind == "pdf":
        return ", or a scanned PDF without a text layer"
    if kind == "html":
        return ", or only boilerplate such as navigation and scripts"
    return ""
