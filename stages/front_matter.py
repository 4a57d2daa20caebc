"""YAML front matter at the top of a Markdown document, read at a cost the document cannot choose.

YAML aliases let a few hundred bytes stand for hundreds of millions of nodes (a "billion
laughs": 452 bytes took 4.4 s and 280 MB), so the loader refuses them, and only the first
64 KiB of a document can be front matter. Refused front matter is not an error: it stays in
the document as text, like anything else that starts with `---` but is no YAML mapping.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import Node

from stages.extracted import json_safe

MAX_FRONT_MATTER_CHARS = 64 * 1024
FENCE = "---"


class NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases (`*name`), and with them merge keys (`<<: *name`)."""

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, "aliases are not allowed here", mark)
        return super().compose_node(parent, index)


def split_front_matter(raw: str) -> tuple[dict[str, Any], str]:
    """The front matter as JSON-safe metadata and the body after it; ({}, raw) when there is none.

    Front matter is a YAML mapping between a `---` first line and the next `---` line, both
    within the first 64 KiB.
    """
    found = _find(raw)
    if found is None:
        return {}, raw
    block, end = found
    try:
        parsed = yaml.load(block, Loader=NoAliasLoader)  # a SafeLoader: plain data only
    # ValueError: a timestamp like 2025-13-45, an integer past Python's 4,300-digit limit.
    except (yaml.YAMLError, ValueError, RecursionError):
        return {}, raw
    if not isinstance(parsed, dict):
        return {}, raw
    return {str(key): json_safe(value) for key, value in parsed.items()}, raw[end:]


def _find(raw: str) -> tuple[str, int] | None:
    """The YAML between the fences and where the body starts, by str.find: linear on any text."""
    first_end = raw.find("\n", 0, MAX_FRONT_MATTER_CHARS)
    if first_end < 0 or not _is_fence(raw, 0, first_end):
        return None
    start = first_end + 1
    candidate = raw.find("\n" + FENCE, start, MAX_FRONT_MATTER_CHARS)
    while candidate >= 0:
        line_end = raw.find("\n", candidate + 1)
        line_end = len(raw) if line_end < 0 else line_end
        if _is_fence(raw, candidate + 1, line_end):
            return raw[start : candidate + 1], min(line_end + 1, len(raw))
        candidate = raw.find("\n" + FENCE, line_end, MAX_FRONT_MATTER_CHARS)
    return None


def _is_fence(raw: str, start: int, end: int) -> bool:
    """Whether `raw[start:end]` is `---` with nothing but spaces and tabs after it."""
    return raw.startswith(FENCE, start, end) and not raw[start + len(FENCE) : end].strip(" \t")
