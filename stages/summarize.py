"""summarize: a short summary, from an LLM when one is configured, else extractive.

With `LLM_BASE_URL` set, any OpenAI-compatible endpoint writes the summary (`LLM_API_KEY`,
`LLM_MODEL`, `LLM_TIMEOUT`). Its failures are sorted for the engine: rate limits, server
errors and timeouts pass, so they raise `Retry`; a refused request (bad key, unknown model)
does not, so it raises `Fail`. Their reasons become a job's `error`, so they name the endpoint
with any key in its URL masked. Without an endpoint, TextRank picks the most central sentences
of the document itself (see stages/textrank.py).
"""

from __future__ import annotations

import asyncio
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from framework import Fail, Retry
from framework.redact import redact
from stages.text import require_text
from stages.textrank import extractive_summary

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRY_AFTER = 5.0
# Long documents are cut to fit any small model's context window; the opening of a
# document carries most of what a summary says.
LLM_INPUT_CHARS = 24_000
SYSTEM_PROMPT = (
    "Summarize the user's document in three to five sentences, in the document's own "
    "language. Answer with the summary only."
)


@dataclass(frozen=True)
class LlmSettings:
    """Where and how to ask for a summary, read from the environment at each call."""

    base_url: str
    api_key: str | None
    model: str
    timeout: float

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"


async def summarize(doc: dict[str, Any], ctx: Any = None) -> dict[str, Any]:
    """Add `summary` and `summary_method` (`llm:<model>` or `extractive`)."""
    text = require_text(doc, "summarize")
    settings = llm_settings()
    if settings is None:
        # TextRank is CPU work: off the event loop, so concurrent LLM calls are not stalled.
        summary = await asyncio.to_thread(extractive_summary, text)
        method = "extractive"
    else:
        summary = await llm_summary(text, settings)
        method = f"llm:{settings.model}"
    if ctx is not None:
        ctx.log.info("summarized", method=method, chars=len(text), summary_chars=len(summary))
    return {**doc, "summary": summary, "summary_method": method}


def llm_settings() -> LlmSettings | None:
    """The LLM endpoint from the environment; None when `LLM_BASE_URL` is unset or empty."""
    base_url = os.environ.get("LLM_BASE_URL", "").strip()
    if not base_url:
        return None
    timeout = os.environ.get("LLM_TIMEOUT", "").strip() or str(DEFAULT_TIMEOUT)
    try:
        seconds = float(timeout)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise Fail(f"LLM_TIMEOUT must be a positive number of seconds, not {timeout!r}")
    return LlmSettings(
        base_url=base_url,
        api_key=os.environ.get("LLM_API_KEY") or None,
        model=os.environ.get("LLM_MODEL") or DEFAULT_MODEL,
        timeout=seconds,
    )


async def llm_summary(text: str, settings: LlmSettings) -> str:
    """POST /chat/completions; raises Retry or Fail as the module docstring sorts them."""
    body = {
        "model": settings.model,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": text[:LLM_INPUT_CHARS]},
        ],
        "temperature": 0.2,
    }
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    try:
        # httpx's timeout bounds each read; asyncio.timeout bounds the whole exchange, so a
        # server that trickles bytes cannot hold the message past LLM_TIMEOUT either.
        async with (
            asyncio.timeout(settings.timeout),
            httpx.AsyncClient(timeout=settings.timeout) as client,
        ):
            response = await client.post(settings.url, json=body, headers=headers)
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise Retry(reason=f"LLM request timed out after {settings.timeout:g}s") from exc
    except httpx.TransportError as exc:
        where = redact(settings.url)
        raise Retry(reason=redact(f"LLM endpoint {where} unreachable: {exc!r}")) from exc
    check_status(response)
    return summary_from(response)


def check_status(response: httpx.Response) -> None:
    """Raise Retry for what passes (429, 408, 5xx) and Fail for other refusals."""
    status = response.status_code
    where = f"LLM endpoint {redact(str(response.request.url))}"
    if status == 429:
        after = retry_after_seconds(response.headers.get("Retry-After"))
        raise Retry(
            after=DEFAULT_RETRY_AFTER if after is None else after,
            reason=f"{where} is rate limiting (HTTP 429)",
        )
    if status == 408 or status >= 500:
        after = retry_after_seconds(response.headers.get("Retry-After"))
        raise Retry(after=after, reason=f"{where} failed with HTTP {status}")
    if status >= 400:
        raise Fail(f"{where} refused the request: HTTP {status}: {_excerpt(response.text)}")


def summary_from(response: httpx.Response) -> str:
    """The first choice's message text; an answer without one cannot be used."""
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        content = None
    if not isinstance(content, str) or not content.strip():
        raise Fail(
            f"LLM endpoint {redact(str(response.request.url))} answered without a summary: "
            f"{_excerpt(response.text)}"
        )
    return content.strip()


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header, either delay-seconds or an HTTP date, as seconds from now."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _excerpt(body: str, limit: int = 300) -> str:
    """The start of a response body, on one line, for a dead letter's reason (an endpoint that
    echoes the request URL would otherwise put its key there)."""
    flat = redact(" ".join(body[: limit * 4].split()))
    return flat if len(flat) <= limit else flat[:limit] + "..."
