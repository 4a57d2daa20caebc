"""Durations ("250ms", "5m", 30) and byte sizes ("1MiB", 1000) as people write them in YAML.

Kept apart from config so the CLI (`--from 5m`, `Retry(after=...)`) can share the exact same
grammar and messages. Text is parsed with `Decimal`, never `float`, so every value that
`format_duration` prints parses back to the very same `timedelta`.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator

_DURATION_HINT = "expected a duration like 250ms, 30s, 5m, 1h, 7d or a number of seconds"
_SIZE_HINT = "expected a size like 512KiB, 1MiB, 1MB, 2GiB or a number of bytes"

_US_PER_UNIT = {
    "d": 86_400_000_000,
    "h": 3_600_000_000,
    "m": 60_000_000,
    "s": 1_000_000,
    "ms": 1_000,
}
_BYTES_PER_UNIT = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_NUMBER_WITH_UNIT = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[a-z]*)")


def parse_duration(value: object) -> timedelta:
    """Read a non-negative duration; a bare number (or numeric string) is seconds.

    Raises:
        ValueError: with a message meant to be shown as is, after the field's path.
    """
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError(f"a duration cannot be negative, got {format_duration(value)}")
        return value
    microseconds = _scaled(value, _US_PER_UNIT, "s", _DURATION_HINT, "duration")
    try:
        return timedelta(microseconds=int(microseconds.to_integral_value()))
    except OverflowError:
        raise ValueError(f"duration {value!r} is too long") from None


def format_duration(duration: timedelta) -> str:
    """Write `duration` in the largest unit that holds it exactly: 90s -> "90s", 120s -> "2m".

    Sub-millisecond values are written as decimal seconds, so the result always parses back.
    """
    if duration < timedelta(0):
        return "-" + format_duration(-duration)
    total_us = (duration.days * 86_400 + duration.seconds) * 1_000_000 + duration.microseconds
    if total_us == 0:
        return "0s"
    for unit, size in _US_PER_UNIT.items():
        if total_us % size == 0:
            return f"{total_us // size}{unit}"
    seconds, micros = divmod(total_us, 1_000_000)
    return f"{seconds}.{micros:06d}".rstrip("0") + "s"


def parse_size(value: object) -> int:
    """Read a non-negative byte size: KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024.

    Raises:
        ValueError: with a message meant to be shown as is, after the field's path.
    """
    size = _scaled(value, _BYTES_PER_UNIT, "", _SIZE_HINT, "size")
    if size != size.to_integral_value():
        raise ValueError(f"a size must be a whole number of bytes, got {_shown(value)}")
    return int(size)


def format_size(size: int) -> str:
    """Write a byte count in the largest binary unit that holds it exactly: 1048576 -> "1MiB"."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        factor = _BYTES_PER_UNIT[unit.lower()]
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def _scaled(value: object, units: dict[str, int], bare: str, hint: str, what: str) -> Decimal:
    """The value times its unit, exactly; rejects bools, negatives, NaN and text it cannot read."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{hint}, got {_shown(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{hint}, got {_shown(value)}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a {what} cannot be negative, got {_shown(value)}")
        # Decimal(str(x)) keeps what the user wrote (0.1, not 0.1000000000000000055...).
        return Decimal(str(value)) * units[bare]
    text = value.strip().lower()
    if text.startswith("-"):
        raise ValueError(f"a {what} cannot be negative, got {_shown(value)}")
    match = _NUMBER_WITH_UNIT.fullmatch(text)
    unit = (match["unit"] or bare) if match else None
    if match is None or unit not in units:
        raise ValueError(f"{hint}, got {_shown(value)}")
    return Decimal(match["number"]) * units[unit]


def _shown(value: object) -> str:
    """How YAML would have spelt the value: true and null, not Python's True and None."""
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else repr(value)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A `timedelta` field that also accepts "250ms", "30s", "5m", "1h", "7d" and plain seconds."""

ByteSize = Annotated[int, BeforeValidator(parse_size)]
"""An `int` field of bytes that also accepts "512KiB", "1MiB", "1MB", "2GiB"."""
