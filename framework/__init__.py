"""Multi-stage document pipelines on Redis Streams: the public API.

`Pipeline`, `Context` and `Job` load on first use, so `import framework` (and the `pipeline`
command's first instructions, which note stop signals) stay quick.
"""

from typing import TYPE_CHECKING, Any

from framework.errors import (
    BacklogFull,
    ConfigError,
    Fail,
    FileRefused,
    JobNotFound,
    PayloadError,
    PayloadTooLarge,
    PipelineError,
    RedisUnavailable,
    Retry,
    StageImportError,
    StageSignal,
    SubmitCutShort,
    WaitTimeout,
)

if TYPE_CHECKING:
    from framework.context import Context
    from framework.jobs import Job
    from framework.pipeline import Pipeline

__version__ = "0.1.0"

_LAZY = {"Context": "framework.context", "Job": "framework.jobs", "Pipeline": "framework.pipeline"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'framework' has no attribute {name!r}")


__all__ = [
    "BacklogFull",
    "ConfigError",
    "Context",
    "Fail",
    "FileRefused",
    "Job",
    "JobNotFound",
    "PayloadError",
    "PayloadTooLarge",
    "Pipeline",
    "PipelineError",
    "RedisUnavailable",
    "Retry",
    "StageImportError",
    "StageSignal",
    "SubmitCutShort",
    "WaitTimeout",
    "__version__",
]
