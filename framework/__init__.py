"""Multi-stage document pipelines on Redis Streams: the public API."""

from framework.errors import (
    BacklogFull,
    ConfigError,
    Fail,
    JobNotFound,
    PayloadError,
    PipelineError,
    RedisUnavailable,
    Retry,
    StageImportError,
    StageSignal,
    WaitTimeout,
)

__version__ = "0.1.0"

__all__ = [
    "BacklogFull",
    "ConfigError",
    "Fail",
    "JobNotFound",
    "PayloadError",
    "PipelineError",
    "RedisUnavailable",
    "Retry",
    "StageImportError",
    "StageSignal",
    "WaitTimeout",
    "__version__",
]
