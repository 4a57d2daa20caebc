"""Every exception the framework raises, in one tree, so callers can catch at the right depth.

```
PipelineError                 root of everything the framework raises; .exit_code (default 1)
├── ConfigError               "pipeline.yaml: stages.embed.batch: must be >= 1"; exit 2
│   └── StageImportError      `function:` does not import, or its signature cannot be served
├── PayloadError              refused at submit: not JSON, or over max_payload
│   └── PayloadTooLarge       over max_payload (HTTP 413)
├── BacklogFull               refused at submit: the first stage is over its max_backlog
├── SubmitCutShort            a submit of many jobs stopped part way by Redis
├── RedisUnavailable          cannot reach or start Redis
├── JobNotFound               unknown or expired job id
├── WaitTimeout               also a TimeoutError, so `except TimeoutError` works
└── FileRefused               a job named a local file it may not read (files.read_file)
StageSignal(Exception)        raised by stage code to steer its own message; we never raise it
├── Retry(after=None)         after: timedelta | seconds
└── Fail(reason)              dead-letter now
```

The CLI catches `PipelineError` once, prints `str(error)` and exits with `error.exit_code`.
"""

from __future__ import annotations

from datetime import timedelta


class PipelineError(Exception):
    """Root of the framework's own errors; `exit_code` is what the CLI exits with."""

    exit_code: int = 1


class ConfigError(PipelineError):
    """A mistake in pipeline.yaml, reported as `source: path: problem`."""

    exit_code = 2

    def __init__(self, source: str, path: str, problem: str) -> None:
        self.source = source
        self.path = path
        self.problem = problem
        where = f"{source}: {path}: " if path else f"{source}: "
        super().__init__(f"{where}{problem}")


class StageImportError(ConfigError):
    """A stage's `function:` cannot be imported or served."""


class PayloadError(PipelineError):
    """A payload refused at submit, before anything was written."""


class PayloadTooLarge(PayloadError):
    """Over `max_payload`: large documents travel as a reference (path, URL)."""


class BacklogFull(PipelineError):
    """Submit refused because the first stage is at its `max_backlog`.

    From `submit_many`, some jobs may have been queued before (or, in the same round trip,
    after) the refusal: `queued` holds their (position, job id), `refused` the positions that
    were not, so a caller resubmits exactly those.
    """

    def __init__(
        self,
        stage: str,
        backlog: int,
        limit: int,
        queued: list[tuple[int, str]] | None = None,
        refused: list[int] | None = None,
    ) -> None:
        self.stage = stage
        self.backlog = backlog
        self.limit = limit
        self.queued = queued or []
        self.refused = refused or []
        super().__init__(
            f"stage {stage!r} is full: backlog {backlog} is at max_backlog {limit}; "
            "retry later or add workers"
        )


class SubmitCutShort(PipelineError):
    """A submit of many jobs that Redis stopped part way (a lost connection, a refusal): the
    jobs before it are queued, those after it are not, and of the round trip it met nobody
    can say. `queued` holds (position, job id); `unknown` and `not_queued` positions."""

    def __init__(
        self,
        cause: BaseException,
        queued: list[tuple[int, str]],
        unknown: list[int],
        not_queued: list[int],
    ) -> None:
        self.cause, self.queued, self.unknown, self.not_queued = cause, queued, unknown, not_queued
        super().__init__(str(cause))


class RedisUnavailable(PipelineError):
    """Redis cannot be reached (or, for `url: embedded`, started)."""


class JobNotFound(PipelineError):
    """No job hash under that id: never submitted, or expired after `result_ttl`."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id!r} not found (never submitted, or expired after result_ttl)")


class WaitTimeout(PipelineError, TimeoutError):
    """`wait()` gave up; the job goes on and can be waited for again."""

    def __init__(self, job_id: str, timeout: float) -> None:
        self.job_id = job_id
        self.timeout = timeout
        super().__init__(f"job {job_id!r} not finished after {timeout:g}s")


class FileRefused(PipelineError):
    """A local file a job named, refused: outside PIPELINE_FILES_ROOT, not a regular file,
    missing, unreadable or too large. `name` is the file as the job wrote it; `problem` never
    names the host's folders, so the reason can go back to whoever submitted the job."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"{name}: {problem}")


# Not `...Error` (pep8-naming N818): user-facing names read as verbs, `raise Retry()`.
class StageSignal(Exception):
    """Raised by stage code to steer its own message; the framework never raises these."""


class Retry(StageSignal):
    """Run this message again later; `after` overrides the backoff."""

    def __init__(
        self, after: timedelta | float | None = None, reason: str = "retry requested"
    ) -> None:
        if isinstance(after, int | float):
            after = timedelta(seconds=after)
        self.after: timedelta | None = after
        self.reason = reason
        super().__init__(reason)


class Fail(StageSignal):
    """Dead-letter this message now, without further attempts."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
