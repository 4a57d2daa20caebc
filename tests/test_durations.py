"""Durations and byte sizes as people write them in pipeline.yaml (pure, no Redis)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from framework.durations import (
    ByteSize,
    Duration,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)

HINT = "expected a duration like 250ms, 30s, 5m, 1h, 7d or a number of seconds"
SIZE_HINT = "expected a size like 512KiB, 1MiB, 1MB, 2GiB or a number of bytes"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("250ms", timedelta(milliseconds=250)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("7d", timedelta(days=7)),
        ("1.5h", timedelta(minutes=90)),
        ("0", timedelta(0)),
        ("1.5", timedelta(seconds=1.5)),
        (" 2 m ", timedelta(minutes=2)),
        ("10S", timedelta(seconds=10)),
        (30, timedelta(seconds=30)),
        (0.25, timedelta(milliseconds=250)),
        (timedelta(seconds=3), timedelta(seconds=3)),
    ],
)
def test_parse_duration_accepts(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", f"{HINT}, got 'abc'"),
        ("", f"{HINT}, got ''"),
        ("5 minutes", f"{HINT}, got '5 minutes'"),
        ("10y", f"{HINT}, got '10y'"),
        ("1e3", f"{HINT}, got '1e3'"),
        (True, f"{HINT}, got true"),
        (None, f"{HINT}, got null"),
        ([1], f"{HINT}, got [1]"),
        (float("nan"), f"{HINT}, got nan"),
        (-1, "a duration cannot be negative, got -1"),
        ("-5s", "a duration cannot be negative, got '-5s'"),
        (timedelta(seconds=-1), "a duration cannot be negative, got -1s"),
        ("99999999999999d", "duration '99999999999999d' is too long"),
    ],
)
def test_parse_duration_rejects_with_a_message_for_people(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        parse_duration(value)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(seconds=90), "90s"),
        (timedelta(minutes=2), "2m"),
        (timedelta(hours=36), "36h"),
        (timedelta(days=7), "7d"),
        (timedelta(milliseconds=1500), "1500ms"),
        (timedelta(microseconds=1500), "0.0015s"),
        (timedelta(seconds=-30), "-30s"),
    ],
)
def test_format_duration_uses_the_largest_exact_unit(duration: timedelta, text: str) -> None:
    assert format_duration(duration) == text


@given(st.timedeltas(min_value=timedelta(0)))
def test_format_then_parse_duration_round_trips(duration: timedelta) -> None:
    assert parse_duration(format_duration(duration)) == duration


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["ms", "s", "m", "h", "d"]))
def test_every_unit_parses_exactly(number: int, unit: str) -> None:
    seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert parse_duration(f"{number}{unit}") == timedelta(milliseconds=number * seconds * 1000)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1MiB", 1024**2),
        ("512KiB", 512 * 1024),
        ("1MB", 1000**2),
        ("2GiB", 2 * 1024**3),
        ("1000", 1000),
        ("1.5KiB", 1536),
        ("10 kb", 10_000),
        ("5B", 5),
        (4096, 4096),
    ],
)
def test_parse_size_accepts(value: object, expected: int) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lots", f"{SIZE_HINT}, got 'lots'"),
        ("1 parsec", f"{SIZE_HINT}, got '1 parsec'"),
        (True, f"{SIZE_HINT}, got true"),
        (-1, "a size cannot be negative, got -1"),
        ("0.1KiB", "a size must be a whole number of bytes, got '0.1KiB'"),
    ],
)
def test_parse_size_rejects_with_a_message_for_people(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        parse_size(value)
    assert str(caught.value) == message


@given(st.integers(min_value=0, max_value=2**60))
def test_format_then_parse_size_round_trips(size: int) -> None:
    assert parse_size(format_size(size)) == size


class _Settings(BaseModel):
    timeout: Duration
    max_payload: ByteSize


def test_annotated_types_validate_in_pydantic_models() -> None:
    settings = _Settings.model_validate({"timeout": "5m", "max_payload": "1MiB"})
    assert settings.timeout == timedelta(minutes=5)
    assert settings.max_payload == 1024**2
    with pytest.raises(ValidationError, match="got 'soon'"):
        _Settings.model_validate({"timeout": "soon", "max_payload": 1})
