"""What every reader returns, and the one text shape they share.

Separate from the readers so that each reader module (formats.py, html_text.py) and the
reader process in sandbox_child.py agree on it without importing one another. The text is
paragraphs separated by a blank line, whitespace inside a paragraph collapsed: what the
sentence splitter in stages/text.py relies on.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

TITLE_MAX_CHARS = 120
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
JSON_INT_BITS = 63  # orjson, and so the wire, refuses integers past 64-bit

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*+\n")


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


def as_title(candidate: object) -> str | None:
    """A one-line, not too long, non-empty string; anything else is no title."""
    if not isinstance(candidate, str):
        return None
    title = " ".join(candidate.split())
    return title if 0 < len(title) <= TITLE_MAX_CHARS else None


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with BOM; else Windows-1252, which reads anything."""
    if data.startswith(UTF16_BOMS):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def json_safe(value: Any) -> Any:
    """YAML and PDF metadata give dates, big integers and nested structures; payloads are JSON."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return value if abs(value) < 2**JSON_INT_BITS else str(value)
    if value is None or isinstance(value, str | float | bool):
        return value
    return str(value)
