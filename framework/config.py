"""pydantic models that mirror pipeline.yaml: what people may write, checked field by field.

The first of two layers: these accept what people write (stage settings optional, so
`defaults:` can fill them); `specs.resolve()` turns them into what the engine reads. Every
check of one field lives here, with a message that says how to fix it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar

import redis
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from framework.durations import ByteSize, Duration, format_duration
from framework.keys import RESERVED_STAGE_NAMES
from framework.redact import redact

T = TypeVar("T")

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_URL_SCHEMES = ("redis://", "rediss://", "unix://")
STAGE_INPUT_TAGS = frozenset({"<stage>", "<stream>"})
"""Union tags pydantic puts into an error's `loc` under `input`; the loader drops them."""


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"names may use only letters, digits, _ and -, got {value!r}")
    return value


def _check_stage_name(value: str) -> str:
    _check_name(value)
    if value in RESERVED_STAGE_NAMES:
        reserved = ", ".join(sorted(RESERVED_STAGE_NAMES))
        raise ValueError(
            f"{value!r} is reserved for the pipeline's own keys ({reserved}); "
            "choose another stage name"
        )
    return value


# Python's own functions take a payload as code or as a file name (eval, exec, open): a stage
# is code the pipeline's authors wrote or installed, never one of these.
REFUSED_MODULES = frozenset({"builtins", "__builtin__", "__main__"})


def _check_function(value: str) -> str:
    module, colon, attr = value.partition(":")
    if colon and attr.isidentifier() and all(p.isidentifier() for p in module.split(".")):
        if module in REFUSED_MODULES:
            raise ValueError(
                f"{value!r}: functions of {module!r} cannot be stages; "
                "write the stage as a function in a module of your own"
            )
        return value
    hint = ""
    if not colon and "." in value:
        head, _, tail = value.rpartition(".")
        hint = f"; did you mean '{head}:{tail}'?"
    raise ValueError(f"must be 'module.path:name', got {value!r}{hint}")


def _check_url(value: str) -> str:
    if value == "embedded":
        return value
    shown = redact(value)  # never echo a password (user info or ?password=)
    if not (value.startswith(_URL_SCHEMES) and "://" in value[:-1]):
        raise ValueError(
            f"must be 'embedded' or a redis://, rediss:// or unix:// URL, got {shown!r}"
        )
    problem = _url_problem(value)
    if problem is not None:
        raise ValueError(f"{shown!r} is not a usable Redis URL: {problem}")
    return value


def _url_problem(url: str) -> str | None:
    """What redis-py would trip over when connecting (a bad port, database or option), found
    now: building a connection object parses everything and opens no socket."""
    if not url.startswith("unix://"):
        database = url.partition("://")[2].partition("?")[0].partition("/")[2]
        if "@" in database:  # a '/' in the password ends the host part early
            return "a '/' in the password must be written %2F"
        database = database.replace("/", "")  # as redis-py reads it
        if database and not database.isdigit():  # redis-py would quietly use database 0
            return f"the database after the host must be a number, got {database!r}"
    try:
        redis.ConnectionPool.from_url(url).make_connection()
    except TypeError as error:  # an option in the query string that no connection takes
        unknown = re.search(r"argument '(\w+)'", str(error))
        return f"unknown option {unknown.group(1)!r}" if unknown else str(error)
    except ValueError as error:
        return str(error)
    return None


def _not_bool(value: object) -> object:
    """pydantic reads `true` as 1 for an int; in a count that is always a slip."""
    if isinstance(value, bool):
        raise ValueError(f"must be an integer, got {str(value).lower()}")
    return value


def _min_duration(minimum: timedelta, *, inclusive: bool) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if value < minimum or (value == minimum and not inclusive):
            bound = "at least" if inclusive else "more than"
            got = format_duration(value)
            raise ValueError(f"must be {bound} {format_duration(minimum)}, got {got}")
        return value

    return AfterValidator(check)


def _input_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "<stage>"
    return "<stream>" if isinstance(value, dict | StreamInput) else None


Name = Annotated[str, AfterValidator(_check_name)]
StageName = Annotated[str, AfterValidator(_check_stage_name)]
FunctionPath = Annotated[str, AfterValidator(_check_function)]
RedisUrl = Annotated[str, AfterValidator(_check_url)]
Count = Annotated[int, BeforeValidator(_not_bool), Field(ge=1)]
PositiveDuration = Annotated[Duration, _min_duration(timedelta(0), inclusive=False)]
Lease = Annotated[Duration, _min_duration(timedelta(milliseconds=100), inclusive=True)]


class Model(BaseModel):
    """Base of every pipeline.yaml section: unknown keys are errors, and nothing mutates."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StreamInput(Model):
    """`input: {stream: KEY}`: a stream that another application writes."""

    stream: Annotated[str, Field(min_length=1)]


StageInput = Annotated[
    Annotated[str, Tag("<stage>")] | Annotated[StreamInput, Tag("<stream>")],
    Discriminator(
        _input_kind,
        custom_error_type="input_type",
        custom_error_message="must be a stage name or {stream: KEY}",
    ),
]


class StageSettings(Model):
    """Settings a stage may have and `defaults:` may give; None means "not written here".

    An explicit null is kept apart from an absent key via `model_fields_set`: for `batch`,
    `timeout` and `max_backlog` it means "none" (overriding `defaults:`), for `input` the stage
    above, and for settings that always have a value it is an error.
    """

    input: StageInput | None = None
    start: Literal["beginning", "new"] | None = None
    concurrency: Count | None = None
    batch: Count | None = None
    prefetch: Count | None = None
    timeout: PositiveDuration | None = None
    max_attempts: Count | None = None
    retry_backoff: Duration | None = None
    retry_backoff_max: Duration | None = None
    lease: Lease | None = None
    max_backlog: Count | None = None

    @field_validator(
        "start", "concurrency", "max_attempts", "retry_backoff", "retry_backoff_max", "lease"
    )
    @classmethod
    def _not_null(cls, value: T | None) -> T:
        if value is None:
            raise ValueError("must have a value; delete the line to use the default")
        return value


class DefaultsConfig(StageSettings):
    """`defaults:`: any stage setting, `function` too (stages that share one function that
    looks at `ctx.stage`); a stage's own setting wins."""

    function: FunctionPath | None = None


class StageConfig(StageSettings):
    """One entry under `stages:`; without `function`, `defaults.function` (resolve checks)."""

    function: FunctionPath | None = None


class RedisConfig(Model):
    """`redis:`; without `url` the loader falls back to $REDIS_URL, then "embedded"."""

    url: RedisUrl | None = None


class RetentionConfig(Model):
    """`retention:`: how much history each stream keeps."""

    max_len: Count | None = None
    max_age: PositiveDuration | None = None

    @model_validator(mode="after")
    def _something_set(self) -> RetentionConfig:
        if self.max_len is None and self.max_age is None:
            raise ValueError("set max_len and/or max_age")
        return self


class PipelineConfig(Model):
    """The whole pipeline.yaml. A section left empty (null) counts as absent."""

    name: Name
    redis: RedisConfig | None = None
    defaults: DefaultsConfig | None = None
    retention: RetentionConfig | None = None
    result_ttl: PositiveDuration = timedelta(days=1)
    max_payload: Annotated[ByteSize, Field(ge=1)] = 1024 * 1024
    stages: dict[StageName, StageConfig]

    @field_validator("stages")
    @classmethod
    def _some_stages(cls, value: dict[str, StageConfig]) -> dict[str, StageConfig]:
        if not value:
            raise ValueError("list at least one stage")
        return value
