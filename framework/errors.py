"""Every exception the framework raises, in one tree, so callers can catch at the right depth.

```
PipelineError                 root of everything the framework raises; .exit_code (default 1)
├── ConfigError               "pipeline.yaml: stages.embed.batch: must be >= 1"; exit 2
│   └── StageImportError      `function:` does not import, or its signature cannot be served
├── UsageProblem              a command used wrongly (a missing file, options that clash); exit 2
├── PayloadError              refused at submit: not JSON, or over max_payload
│   ├── PayloadTooLarge       over max_payload (HTTP 413)
│   ├── BodyNotJson           an HTTP body that is not JSON at all (400)
│   └── WrongContentType      an HTTP body that does not say it is JSON (415)
├── NotAuthorized             an HTTP request without the API's bearer token (401)
├── TooManyWaits              the HTTP API's cap on waits in progress is reached (503)
├── BacklogFull               refused at submit: the first stage is over its max_backlog
├── RedisUnavailable          cannot reach or start Redis
│   └── SubmitCutShort        a submit stopped part way by Redis: which jobs are queued
├── JobNotFound               unknown or expired job id
├── DeadLetterNotFound        no dead letter with that id
├── FileRefused               a job named a local file it may not read (files.read_file)
└── WaitTimeout               also a TimeoutError, so `except TimeoutError` works
StageTimeout(TimeoutError)    a stage call ran past its `timeout:`; a failed attempt, as the
                              error of a retry or a dead letter (we raise it, nobody catches it)
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


class UsageProblem(PipelineError):
    """A command used wrongly (a missing file, options that do not go together); exit 2."""

    exit_code = 2


class PayloadError(PipelineError):
    """A payload refused at submit, before anything was written."""


class PayloadTooLarge(PayloadError):
    """Over `max_payload`: large documents travel as a reference (path, URL)."""


class BodyNotJson(PayloadError):
    """A request body that is not JSON at all: the request is malformed (400), where a payload
    that is JSON but refused (a bad job id) is 422."""


class WrongContentType(PayloadError):
    """A body sent without `Content-Type: application/json`. Browsers send such bodies (a form,
    text/plain) from any site without asking the server first, so the API takes none."""


class NotAuthorized(PipelineError):
    """No bearer token, or the wrong one, where `pipeline serve` was started with a token."""

    def __init__(self) -> None:
        super().__init__("missing or wrong bearer token (Authorization: Bearer TOKEN)")


class TooManyWaits(PipelineError):
    """`GET /jobs/ID/wait` while as many waits as the API allows are in progress."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"{limit} waits are in progress, the most this server holds; "
            "retry later, or poll GET /jobs/ID"
        )


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


class RedisUnavailable(PipelineError):
    """Redis cannot be reached (or, for `url: embedded`, started)."""


class SubmitCutShort(RedisUnavailable):
    """A submit that Redis stopped part way: lost for longer than the submit waits, or a
    refusal after some jobs were queued. The jobs before it are queued; of the round trip that
    kept losing its reply nobody can say (`unknown`), and those after it are not queued.
    `queued` holds (position, job id); `unknown` and `not_queued` positions; `job_ids` the id of
    every job, in order, chosen before the first attempt: submitting a job again under its id
    queues it at most once, so resubmitting the unknown ones under theirs is safe."""

    def __init__(
        self,
        cause: BaseException,
        queued: list[tuple[int, str]],
        unknown: list[int],
        not_queued: list[int],
        job_ids: list[str],
    ) -> None:
        self.cause, self.queued, self.unknown, self.not_queued = cause, queued, unknown, not_queued
        self.job_ids = job_ids
        shown = ""
        if len(job_ids) == 1 and unknown:
            shown = f"; job {job_ids[0]} may or may not be queued: submit it again with that id"
        super().__init__(f"{cause}{shown}")


class JobNotFound(PipelineError):
    """No job hash under that id: never submitted, or expired after `result_ttl`."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id!r} not found (never submitted, or expired after result_ttl)")


class DeadLetterNotFound(PipelineError):
    """No dead letter with that id (`id` in `dead list --json` is the failed message's; the
    letter's own id is `dead_id`)."""

    def __init__(self, entry_id: str, letter_of_message: str | None = None) -> None:
        self.entry_id = entry_id
        if letter_of_message is not None:
            super().__init__(
                f"{entry_id!r} is the id of the message that failed; its dead letter's id is "
                f"{letter_of_message!r} (dead_id in dead list --json)"
            )
        else:
            super().__init__(f"no dead letter with id {entry_id!r} (see: pipeline dead list)")


class StageTimeout(TimeoutError):
    """A stage call ran past the stage's `timeout`; counts as a failed attempt."""


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
