"""Turn one document format into title, plain text and metadata, within stated limits.

Separate from extract.py, which decides where the bytes come from and which format they are:
each reader here only knows its format (HTML in html_text.py, front matter in front_matter.py).
`read_document` is the one entry point: extract calls it in-process for plain text, and the
reader process (sandbox_child.py) calls it for HTML, Markdown and PDF, whose readers a hostile
document can keep busy or fill with memory. The limits here are those a reader can check
itself; time and memory are bounded by that process.
"""

from __future__ import annotations

import io
import re
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from pypdf import PdfReader

from framework import Fail
from stages.extracted import Extracted, as_title, decode_text, json_safe, tidy
from stages.front_matter import split_front_matter
from stages.html_text import MAX_HTML_BYTES, read_html

MAX_PDF_BYTES = 50 * 1024 * 1024
MAX_PDF_PAGES = 2000  # the pages after these are not read; metadata says how many were
PDF_SHORT_LINE = 0.7  # of the longest line on the page: shorter lines end a paragraph
SIZE_LIMITS = {"html": MAX_HTML_BYTES, "pdf": MAX_PDF_BYTES}
KIND_NAMES = {"html": "HTML", "pdf": "PDF", "markdown": "Markdown", "text": "text"}

_LINE_END_HYPHEN = re.compile(r"(\w)-\n(?=[a-z])")


def read_document(kind: str, data: bytes | str, name: str) -> Extracted:
    """Read `data` as `kind` (text, markdown, html or pdf); `name` is for reasons only."""
    refuse_oversized(kind, len(data), name)
    if kind == "pdf":
        if isinstance(data, str):
            raise Fail(f"{name}: a PDF must come as base64 content, a path or a uri")
        return read_pdf(data, name)
    if kind == "html":
        return read_html(data, name)  # given bytes, the page's charset is honoured
    raw = data if isinstance(data, str) else decode_text(data)
    return read_markdown(raw) if kind == "markdown" else read_text(raw)


def refuse_oversized(kind: str, size: int, name: str) -> None:
    """`Fail` when a document is over its format's size limit, before anything reads it."""
    limit = SIZE_LIMITS.get(kind)
    if limit is not None and size > limit:
        shown = KIND_NAMES[kind]
        raise Fail(f"{name}: larger than {limit // 2**20} MiB, the limit for {shown}; refused")


def read_text(raw: str) -> Extracted:
    """Plain text: the first line is the title when it stands alone and looks like one."""
    raw = raw.replace("\r\n", "\n")
    first, _, rest = raw.lstrip().partition("\n")
    stands_alone = rest.startswith("\n") or not rest.strip()
    title = as_title(first) if stands_alone else None
    return Extracted(text=tidy(raw), title=title)


def read_markdown(raw: str) -> Extracted:
    """Markdown: markup stripped to its text; the title from front matter or the first heading."""
    raw = raw.replace("\r\n", "\n")
    metadata, body = split_front_matter(raw)
    tokens = MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(body)
    title = metadata.get("title") or _first_heading(tokens)
    return Extracted(text=tidy(_markdown_text(tokens)), title=as_title(title), metadata=metadata)


def read_pdf(data: bytes, name: str) -> Extracted:
    """PDF text layer, page by page (the first 2,000); metadata from the information dictionary."""
    refuse_oversized("pdf", len(data), name)
    try:
        reader = PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted and not reader.decrypt("")
        pages = [] if encrypted else _pdf_pages(reader)
        metadata = {} if encrypted else _pdf_metadata(reader)
    except MemoryError:
        raise  # the reader process reports it: the document needs more memory than allowed
    # pypdf raises many types on damaged files (PdfReadError, ValueError, KeyError,
    # struct.error...): whatever it raises, the file cannot be read, and retrying won't help.
    except Exception as exc:
        said = " ".join(str(exc).split())[:200]  # one line, whatever pypdf put in it
        raise Fail(f"{name}: corrupt or unreadable PDF ({type(exc).__name__}: {said})") from exc
    if encrypted:
        raise Fail(f"{name}: PDF is encrypted with a password; cannot read its text")
    # Pages join without a break: a paragraph that runs on to the next page stays whole.
    raw = "".join(_pdf_paragraphs(_LINE_END_HYPHEN.sub(r"\1", page)) for page in pages)
    first_line = raw.strip().partition("\n")[0]
    title = metadata.get("title") or as_title(first_line)
    return Extracted(text=tidy(raw), title=title, metadata=metadata)


def _pdf_pages(reader: PdfReader) -> list[str]:
    """The text of each page read, in order."""
    count = min(len(reader.pages), MAX_PDF_PAGES)
    return [reader.pages[number].extract_text() or "" for number in range(count)]


def _pdf_paragraphs(page: str) -> str:
    """Mark paragraph ends in a page's text: a PDF has lines, not paragraphs.

    A line much shorter than the page's longest ends a paragraph or is a heading; without
    this, headings would run into the sentences after them.
    """
    lines = [line.strip() for line in page.splitlines()]
    width = max((len(line) for line in lines), default=0)
    return "".join(
        line + ("\n\n" if len(line) < width * PDF_SHORT_LINE else "\n") for line in lines
    )


def _first_heading(tokens: list[Token]) -> str | None:
    """The text of the first h1, else of the first heading of any level."""
    headings = [
        (tokens[i].tag, _inline_text(tokens[i + 1]))
        for i in range(len(tokens) - 1)
        if tokens[i].type == "heading_open"
    ]
    h1 = next((text for tag, text in headings if tag == "h1"), None)
    return h1 or next((text for _, text in headings), None)


def _markdown_text(tokens: list[Token]) -> str:
    """Text of the block tokens; raw HTML blocks are dropped (they are markup, not prose)."""
    parts: list[str] = []
    for token in tokens:
        if token.type == "inline":
            parts.append(_inline_text(token))
        elif token.type in ("fence", "code_block"):
            parts.append("\n\n" + token.content + "\n\n")
        elif token.type in ("th_close", "td_close"):
            parts.append(" ")
        elif token.type in ("paragraph_close", "heading_close", "tr_close", "hr"):
            parts.append("\n\n")
    return "".join(parts)


def _inline_text(token: Token) -> str:
    """Text of an inline token: emphasis and links dropped, code and image alt text kept."""
    breaks = {"softbreak": " ", "hardbreak": "\n"}
    kept = ("text", "code_inline", "image")
    return "".join(
        child.content if child.type in kept else breaks.get(child.type, "")
        for child in token.children or []
    )


def _pdf_metadata(reader: PdfReader) -> dict[str, Any]:
    """Page count and the information dictionary's non-empty entries, dates as ISO strings."""
    pages = len(reader.pages)
    metadata: dict[str, Any] = {"pages": pages}
    if pages > MAX_PDF_PAGES:
        metadata["pages_read"] = MAX_PDF_PAGES
    info = reader.metadata
    if info is None:
        return metadata
    fields = {
        "title": info.title,
        "author": info.author,
        "subject": info.subject,
        "creator": info.creator,
        "producer": info.producer,
        "created": info.creation_date,
        "modified": info.modification_date,
    }
    for key, value in fields.items():
        if value:
            metadata[key] = str(value).strip() if isinstance(value, str) else json_safe(value)
    return metadata
