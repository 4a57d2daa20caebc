"""Turn one document format into title, plain text and metadata.

Separate from extract.py, which decides where the bytes come from and which format they are:
each reader here only knows its format. Every reader returns text in one shape, paragraphs
separated by a blank line and whitespace inside a paragraph collapsed, which is what the
sentence splitter in stages/text.py relies on.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import yaml
from bs4 import BeautifulSoup, Tag
from markdown_it import MarkdownIt
from markdown_it.token import Token
from pypdf import PdfReader

from framework import Fail

# fmt: off
# Removed before reading an HTML page: they hold menus, ads and code, not the document.
BOILERPLATE_TAGS = [
    "script", "style", "noscript", "template", "nav", "header", "footer", "aside",
    "form", "button", "iframe", "svg", "canvas", "dialog",
]
BOILERPLATE_ROLES = ["navigation", "banner", "contentinfo", "complementary", "search"]
BLOCK_TAGS = [
    "p", "div", "section", "article", "main", "h1", "h2", "h3", "h4", "h5", "h6", "li",
    "ul", "ol", "dl", "dt", "dd", "table", "tr", "blockquote", "pre", "figure",
    "figcaption", "hr", "address", "details", "summary", "caption",
]
# fmt: on
TITLE_MAX_CHARS = 120
PDF_SHORT_LINE = 0.7  # of the longest line on the page: shorter lines end a paragraph

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_LINE_END_HYPHEN = re.compile(r"(\w)-\n(?=[a-z])")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)---[ \t]*(?:\n|\Z)", re.DOTALL)


@dataclass
class Extracted:
    """What a reader found in a document."""

    text: str
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def tidy(raw: str) -> str:
    """Paragraphs separated by one blank line, each with its whitespace collapsed to spaces."""
    paragraphs = (" ".join(block.split()) for block in _PARAGRAPH_BREAK.split(raw))
    return "\n\n".join(p for p in paragraphs if p)


def read_text(raw: str) -> Extracted:
    """Plain text: the first line is the title when it stands alone and looks like one."""
    raw = raw.replace("\r\n", "\n")
    first, _, rest = raw.lstrip().partition("\n")
    stands_alone = rest.startswith("\n") or not rest.strip()
    title = _as_title(first) if stands_alone else None
    return Extracted(text=tidy(raw), title=title)


def read_markdown(raw: str) -> Extracted:
    """Markdown: markup stripped to its text; the title from front matter or the first heading."""
    raw = raw.replace("\r\n", "\n")
    metadata, body = _front_matter(raw)
    tokens = MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(body)
    title = metadata.get("title") or _first_heading(tokens)
    return Extracted(text=tidy(_markdown_text(tokens)), title=_as_title(title), metadata=metadata)


def read_html(raw: bytes | str) -> Extracted:
    """HTML: boilerplate removed, block elements kept apart as paragraphs."""
    soup = BeautifulSoup(raw, "html.parser")
    title = _html_title(soup)
    metadata = _html_metadata(soup)
    _remove_boilerplate(soup)
    body = soup.body or soup
    for tag in body.find_all(BLOCK_TAGS):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    for tag in body.find_all(["td", "th"]):
        tag.insert_after(" ")
    for tag in body.find_all("br"):
        tag.replace_with("\n")
    return Extracted(text=tidy(body.get_text()), title=title, metadata=metadata)


def read_pdf(data: bytes, name: str) -> Extracted:
    """PDF text layer, page by page; metadata from the document information dictionary."""
    try:
        reader = PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted and not reader.decrypt("")
        pages = [] if encrypted else [page.extract_text() or "" for page in reader.pages]
        metadata = {} if encrypted else _pdf_metadata(reader)
    # pypdf raises many types on damaged files (PdfReadError, ValueError, KeyError,
    # struct.error...): whatever it raises, the file cannot be read, and retrying won't help.
    except Exception as exc:
        raise Fail(f"{name}: corrupt or unreadable PDF ({type(exc).__name__}: {exc})") from exc
    if encrypted:
        raise Fail(f"{name}: PDF is encrypted with a password; cannot read its text")
    # Pages join without a break: a paragraph that runs on to the next page stays whole.
    raw = "".join(_pdf_paragraphs(_LINE_END_HYPHEN.sub(r"\1", page)) for page in pages)
    first_line = raw.strip().partition("\n")[0]
    title = metadata.get("title") or _as_title(first_line)
    return Extracted(text=tidy(raw), title=title, metadata=metadata)


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


def _as_title(candidate: object) -> str | None:
    """A one-line, not too long, non-empty string; anything else is no title."""
    if not isinstance(candidate, str):
        return None
    title = " ".join(candidate.split())
    return title if 0 < len(title) <= TITLE_MAX_CHARS else None


def _front_matter(raw: str) -> tuple[dict[str, Any], str]:
    """YAML front matter (`---` lines at the top) as metadata, and the body after it."""
    match = _FRONT_MATTER.match(raw)
    if not match:
        return {}, raw
    try:
        parsed = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}, raw  # not front matter after all: keep it as text
    if not isinstance(parsed, dict):
        return {}, raw
    return {str(key): _json_safe(value) for key, value in parsed.items()}, raw[match.end() :]


def _json_safe(value: Any) -> Any:
    """YAML gives dates and nested structures; payloads travel as JSON."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


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


def _html_title(soup: BeautifulSoup) -> str | None:
    """`<title>`, else the first `<h1>`, before boilerplate removal can take the header away."""
    for tag in (soup.title, soup.find("h1")):
        if isinstance(tag, Tag) and (title := _as_title(tag.get_text())):
            return title
    return None


def _html_metadata(soup: BeautifulSoup) -> dict[str, Any]:
    """The page's language and its description, author and keywords meta tags."""
    metadata: dict[str, Any] = {}
    html = soup.find("html")
    if isinstance(html, Tag) and html.get("lang"):
        metadata["lang"] = str(html["lang"])
    for name in ("description", "author", "keywords"):
        tag = soup.find("meta", attrs={"name": name})
        if isinstance(tag, Tag) and tag.get("content"):
            metadata[name] = " ".join(str(tag["content"]).split())
    return metadata


def _remove_boilerplate(soup: BeautifulSoup) -> None:
    """Drop menus, banners, footers, sidebars, scripts and styles, with all they contain."""
    found = soup.find_all(BOILERPLATE_TAGS) + soup.find_all(role=BOILERPLATE_ROLES)
    for tag in found:
        if not tag.decomposed:  # already gone with an ancestor
            tag.decompose()


def _pdf_metadata(reader: PdfReader) -> dict[str, Any]:
    """Page count and the information dictionary's non-empty entries, dates as ISO strings."""
    metadata: dict[str, Any] = {"pages": len(reader.pages)}
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
            metadata[key] = str(value).strip() if isinstance(value, str) else _json_safe(value)
    return metadata
