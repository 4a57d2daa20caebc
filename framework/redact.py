"""Secrets out of text: URLs shown without their user info or credential parameters.

Every URL that reaches a log line, an error message, a dead letter or a job's `error` field
passes through here first. Redis URLs carry their password as user info
(`redis://:secret@host`) or as a query parameter (`?password=`); model endpoints carry API
keys the same ways (`https://user:key@host`, `?api-key=`, `?key=`). One function masks them
all, in a bare URL or anywhere inside a longer text (an exception's message, a traceback).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

MASK = "***"

# Query parameters whose value is a credential, matched without regard to case.
# fmt: off
SECRET_PARAMETERS = (
    "password", "passwd", "pass", "pwd", "secret", "client_secret", "token", "access_token",
    "refresh_token", "id_token", "api-key", "api_key", "apikey", "key", "access_key",
    "auth", "authorization", "sig", "signature", "credential", "credentials", "code",
)
# fmt: on

# Where a URL's user info ends: it runs to the last `@` before the query, the fragment or a
# blank, so a password with a raw `@`, `:` or `/` in it is masked whole.
_TOKEN_END = re.compile(r"[\s?#'\"<>]")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*\Z")
_PARAMETER = re.compile(
    r"(?P<name>[?&;](?:" + "|".join(map(re.escape, SECRET_PARAMETERS)) + r")=)[^&#;\s'\"]*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` with every URL's user info and credential parameters replaced by `***`."""
    if "://" in text:
        text = _without_user_info(text)
    if "=" in text:
        text = _PARAMETER.sub(lambda match: f"{match['name']}{MASK}", text)
    return text


def _without_user_info(text: str) -> str:
    """One pass over `text`, each URL looked at once (a regex here could backtrack over a long
    run of `a://a://...` once per `://`)."""
    parts: list[str] = []
    position = 0
    while (at := text.find("://", position)) >= 0:
        start = at + 3
        end_match = _TOKEN_END.search(text, start)
        end = end_match.start() if end_match else len(text)
        last_at = text.rfind("@", start, end)
        if last_at >= 0 and _SCHEME.search(text, max(0, at - 32), at):
            parts.append(text[position:start])
            parts.append(MASK)
            position = last_at
        else:
            parts.append(text[position:end])
            position = end
    parts.append(text[position:])
    return "".join(parts)


def redact_values(value: Any) -> Any:
    """`redact` applied to every string inside nested dicts, lists and tuples."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: redact_values(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_values(item) for item in value]
    return value


def redact_event(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: the last step before rendering, so that no secret that found its
    way into an event (an exception's text, a URL in a field) reaches the log."""
    for key, value in event.items():
        if isinstance(value, str | Mapping | list | tuple):
            event[key] = redact_values(value)
    return event
