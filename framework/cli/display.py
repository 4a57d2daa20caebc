"""Results and times written for people: one compact line per value, long parts abbreviated.

A document pipeline's results hold embeddings and whole texts; printed in full, one result
fills a screen. Here a float vector becomes `[384 floats]` and a long text its first words
and its length, so `run` and `status JOB` show many results at a glance. Full values are
one `--json` or `--output` away.
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime
from typing import Any

import orjson

MAX_STRING = 80  # characters of a string shown before it is cut
MAX_ITEMS = 8  # items of a list (or keys of an object) shown before the rest is counted
MAX_DEPTH = 4


def compact(value: Any, depth: int = 0) -> str:
    """One line, JSON-like, with long vectors, strings, lists and deep nesting abbreviated."""
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return _list(list(value), depth)
    if isinstance(value, dict):
        return _object(value, depth)
    return orjson.dumps(value).decode()


def result_lines(value: Any, width: int | None = None) -> list[str]:
    """A result as indented lines: one per key of an object (or item of a list), each cut to
    the terminal's width; a scalar result is one line."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    if isinstance(value, dict) and value:
        lines = [f"{key}: {compact(item, 1)}" for key, item in value.items()]
    elif isinstance(value, list) and value:
        lines = [compact(item, 1) for item in value[:MAX_ITEMS]]
        lines += [f"… +{len(value) - MAX_ITEMS} more"] if len(value) > MAX_ITEMS else []
    else:
        lines = [compact(value)]
    return [cut(f"  {line}", width) for line in lines]


def cut(line: str, width: int) -> str:
    return line if len(line) <= width else line[: max(width - 1, 1)] + "…"


def _string(value: str) -> str:
    if len(value) <= MAX_STRING:
        return orjson.dumps(value).decode()
    cut = orjson.dumps(value[:MAX_STRING] + "…").decode()
    return f"{cut} ({len(value)} chars)"


def _list(items: list[Any], depth: int) -> str:
    if len(items) > MAX_ITEMS and all(_is_number(item) for item in items):
        kind = "floats" if any(isinstance(item, float) for item in items) else "ints"
        return f"[{len(items)} {kind}]"
    if depth >= 1 and len(items) > 1 and _same_keys(items):
        keys = ", ".join(map(str, items[0]))
        return f"[{len(items)} × {{{keys}}}]"  # noqa: RUF001 - a times sign, not an x
    if depth >= MAX_DEPTH:
        return f"[{len(items)} items]" if items else "[]"
    shown = [compact(item, depth + 1) for item in items[:MAX_ITEMS]]
    if len(items) > MAX_ITEMS:
        shown.append(f"… +{len(items) - MAX_ITEMS} more")
    return "[" + ", ".join(shown) + "]"


def _object(value: dict[Any, Any], depth: int) -> str:
    if depth >= MAX_DEPTH:
        return "{…}" if value else "{}"
    pairs = list(value.items())
    shown = [f"{key}: {compact(item, depth + 1)}" for key, item in pairs[: MAX_ITEMS * 2]]
    if len(pairs) > MAX_ITEMS * 2:
        shown.append(f"… +{len(pairs) - MAX_ITEMS * 2} more")
    return "{" + ", ".join(shown) + "}"


def _same_keys(items: list[Any]) -> bool:
    """A list of records (objects with the same keys): shown as a count and the keys."""
    first = items[0]
    return isinstance(first, dict) and all(
        isinstance(item, dict) and item.keys() == first.keys() for item in items
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_line(value: Any) -> str:
    """Full JSON on one line, for `--json` and `--output`."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def duration_ms(ms: float) -> str:
    """`340ms`, `1.2s`, `2m05s`, `3h10m`: short, and precise where it matters."""
    if ms < 1000:
        return f"{ms:.0f}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, second = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{second:02d}s"
    hours, minute = divmod(minutes, 60)
    return f"{hours}h{minute:02d}m"


def timestamp(ms: int) -> str:
    """Local wall-clock time of a millisecond timestamp, with how long ago it was."""
    when = datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")
    ago = time.time() * 1000 - ms
    return f"{when} ({duration_ms(max(ago, 0))} ago)"


def first_line(text: str | None, limit: int = 120) -> str:
    """The first line of an error, cut to `limit` characters."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
