"""The retry policy on its own (pure, no Redis): what `decide()` makes of an error, and `backoff()`.

Every failed stage call goes through `decide()` before commit.lua writes its outcome, so what a
job's `error` and a dead letter say, and when a retry runs, is fixed here; the worker tests see
the same outcomes only through a running pipeline.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from framework import Fail, Retry
from framework.outcome import DeadLetter, RetryLater, backoff, decide

FIRST = timedelta(seconds=1)
CAP = timedelta(minutes=5)


def raised(error: BaseException) -> BaseException:
    """`error` as a stage's call hands it over: raised, so it carries a traceback."""
    try:
        raise error
    except BaseException as caught:
        return caught


def decided(error: BaseException, attempt: int, max_attempts: int = 3) -> RetryLater | DeadLetter:
    return decide(raised(error), attempt, max_attempts, FIRST, CAP)


# ---------------------------------------------------------------------------------------------
# decide(): Fail, retries with backoff, dead letters once attempts run out
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3, 7])
def test_fail_dead_letters_at_once_with_its_reason(attempt: int) -> None:
    assert decided(Fail("not a document we take"), attempt) == DeadLetter(
        "Fail: not a document we take"
    )


def test_other_errors_retry_with_backoff_until_the_last_attempt() -> None:
    assert decided(ValueError("boom"), 1) == RetryLater(timedelta(seconds=1), "ValueError: boom")
    assert decided(ValueError("boom"), 2) == RetryLater(timedelta(seconds=2), "ValueError: boom")
    assert decided(ValueError("boom"), 5, 6) == RetryLater(
        timedelta(seconds=16), "ValueError: boom"
    )


@pytest.mark.parametrize("attempt", [3, 4])
def test_the_last_attempt_dead_letters_with_the_traceback(attempt: int) -> None:
    def stage() -> None:
        raise ValueError("boom")

    try:
        stage()
    except ValueError as error:
        outcome = decide(error, attempt, 3, FIRST, CAP)
    assert isinstance(outcome, DeadLetter)
    assert outcome.error == f"ValueError: boom (after {attempt} attempts)"
    assert outcome.traceback.startswith("Traceback (most recent call last):\n")
    assert "in stage\n" in outcome.traceback
    assert outcome.traceback.endswith("ValueError: boom\n")


def test_an_error_without_a_message_is_named_by_its_type() -> None:
    assert decided(RuntimeError(), 1) == RetryLater(FIRST, "RuntimeError")


def test_retry_after_overrides_the_backoff() -> None:
    assert decided(Retry(after=30), 1) == RetryLater(
        timedelta(seconds=30), "Retry: retry requested"
    )
    assert decided(Retry(after=timedelta(hours=2), reason="rate limited"), 2) == RetryLater(
        timedelta(hours=2), "Retry: rate limited"
    )


def test_retry_without_after_takes_the_backoff() -> None:
    assert decided(Retry(), 2) == RetryLater(timedelta(seconds=2), "Retry: retry requested")


def test_retry_on_the_last_attempt_dead_letters() -> None:
    outcome = decided(Retry(after=30, reason="still busy"), 3)
    assert isinstance(outcome, DeadLetter)
    assert outcome.error == "Retry: still busy (after 3 attempts)"


# ---------------------------------------------------------------------------------------------
# decide(): secrets in URLs never reach an error or a traceback
# ---------------------------------------------------------------------------------------------


def test_credentials_in_urls_are_masked_in_error_and_traceback() -> None:
    error = ConnectionError("cannot reach redis://:hunter2@cache:6379/0")
    assert decided(error, 1) == RetryLater(
        FIRST, "ConnectionError: cannot reach redis://***@cache:6379/0"
    )
    letter = decided(error, 3)
    assert isinstance(letter, DeadLetter)
    assert (
        letter.error == "ConnectionError: cannot reach redis://***@cache:6379/0 (after 3 attempts)"
    )
    assert "redis://***@cache:6379/0" in letter.traceback
    assert "hunter2" not in letter.traceback


def test_credential_parameters_are_masked() -> None:
    outcome = decided(OSError("GET https://api.example.com/v1?api-key=k3y&q=1 failed"), 1)
    assert outcome == RetryLater(
        FIRST, "OSError: GET https://api.example.com/v1?api-key=***&q=1 failed"
    )


def test_a_fail_reason_is_masked_too() -> None:
    assert decided(Fail("cannot fetch https://user:s3cret@files.example/doc.pdf"), 1) == DeadLetter(
        "Fail: cannot fetch https://***@files.example/doc.pdf"
    )


@given(
    secret=st.text("0123456789abcdef", min_size=4, max_size=40).map(lambda s: "zq" + s),
    attempt=st.integers(min_value=1, max_value=5),
    fail=st.booleans(),
)
def test_no_secret_survives_in_any_outcome(secret: str, attempt: int, fail: bool) -> None:
    text = f"redis://default:{secret}@cache:6380 and https://h.example/?token={secret}"
    outcome = decided(Fail(text) if fail else ConnectionError(text), attempt)
    shown = outcome.error + (outcome.traceback if isinstance(outcome, DeadLetter) else "")
    assert secret not in shown


# ---------------------------------------------------------------------------------------------
# backoff(): first delay after attempt 1, doubling, capped
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "seconds"),
    [(1, 1), (2, 2), (3, 4), (4, 8), (9, 256), (10, 300), (11, 300)],
)
def test_backoff_doubles_from_the_first_delay_up_to_the_cap(attempt: int, seconds: int) -> None:
    assert backoff(attempt, FIRST, CAP) == timedelta(seconds=seconds)


@pytest.mark.parametrize("attempt", [0, -1, -1000])
def test_attempt_zero_or_below_waits_the_first_delay(attempt: int) -> None:
    assert backoff(attempt, FIRST, CAP) == FIRST


@pytest.mark.parametrize("attempt", [48, 62, 1000, 10**18, sys.maxsize])
def test_very_large_attempts_are_capped_without_overflow(attempt: int) -> None:
    assert backoff(attempt, FIRST, CAP) == CAP
    assert backoff(attempt, FIRST, timedelta.max) == timedelta.max  # 2**47 s is past it


def test_a_zero_backoff_stays_zero() -> None:
    assert backoff(1, timedelta(0), CAP) == timedelta(0)
    assert backoff(10**9, timedelta(0), CAP) == timedelta(0)


durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30))
attempts = st.integers(min_value=-10, max_value=2**70)


@given(first=durations, cap=durations, a=attempts, b=attempts)
def test_backoff_grows_with_attempts_and_never_passes_the_cap(
    first: timedelta, cap: timedelta, a: int, b: int
) -> None:
    first, cap = min(first, cap), max(first, cap)  # as config allows: retry_backoff <= max
    low, high = sorted((a, b))
    assert min(first, cap) <= backoff(low, first, cap) <= backoff(high, first, cap) <= cap


@given(first=durations, cap=durations, attempt=st.integers(min_value=-10, max_value=200))
def test_backoff_is_first_times_two_to_the_attempts_after_the_first(
    first: timedelta, cap: timedelta, attempt: int
) -> None:
    """Against the definition, in exact microseconds (Python ints do not overflow)."""
    first, cap = min(first, cap), max(first, cap)
    micro = timedelta(microseconds=1)
    expected = min(first // micro * 2 ** max(attempt - 1, 0), cap // micro)
    assert backoff(attempt, first, cap) == expected * micro
