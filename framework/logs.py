"""structlog setup: readable on a terminal, JSON lines elsewhere. Called by entry points only.

Importing the framework never configures logging: a library must not take over its host's
logs. `PIPELINE_LOG_LEVEL` (debug, info, warning, error) sets the level.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

from framework.redact import redact_event

# The level `configure` set; before any call, what the environment asks for.
_level: int | None = None


def _level_from(name: str | None) -> int:
    text = (name or os.environ.get("PIPELINE_LOG_LEVEL") or "info").upper()
    return logging.getLevelNamesMapping().get(text, logging.INFO)


def configure(level: str | None = None, json: bool | None = None) -> None:
    """Console renderer on a TTY, JSON with dict tracebacks otherwise."""
    global _level
    numeric = _level = _level_from(level)
    as_json = (not sys.stderr.isatty()) if json is None else json
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    # Tracebacks become data before the last step masks secrets in them (and in every other
    # value): an exception's text can hold a URL with its password.
    processors.append(
        structlog.processors.dict_tracebacks if as_json else structlog.processors.format_exc_info
    )
    processors.append(redact_event)
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *args: LineDroppingLogger(sys.stderr),
        cache_logger_on_first_use="pytest" not in sys.modules,
    )
    _route_library_logs(processors, renderer, numeric)


class LineDroppingLogger(structlog.PrintLogger):
    """Prints each event as a line, and drops a line that cannot be written (stderr's reader
    gone: a closed pipe, a full disk). A worker whose log went away must still stop on SIGTERM,
    hand back what it holds and commit what it finished: a lost log line costs nothing else,
    an exception from a log call would cost all of that."""

    def msg(self, message: str) -> None:
        try:
            super().msg(message)
        except (OSError, ValueError):  # ValueError: the file was closed under us
            pass

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def _route_library_logs(processors: list[Any], renderer: Any, level: int) -> None:
    """Libraries log through `logging` (pypdf's "EOF marker not found", say): without a handler
    Python prints their bare text to stderr, which breaks one-JSON-object-per-line. Their
    warnings and errors go out as our events, with the logger's name; their chatter below
    WARNING stays out unless the level asks for debug."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *processors],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))


def logging_enabled(level: int) -> bool:
    """Whether events at `level` are kept, so hot paths can skip building what would be dropped:
    by the level `configure` set (`pipeline run` sets error), else the environment's."""
    configured = _level if _level is not None else _level_from(None)
    return configured <= level
