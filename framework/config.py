"""pydantic models that mirror pipeline.yaml, and `resolve()`: one concrete StageSpec per stage.

Two layers on purpose: the models accept what people write (stage settings optional, so
`defaults:` can fill them), the frozen dataclasses are what the engine reads (every value
concrete, every stream named), so no worker ever writes `stage.x or defaults.x`. Checks that
need the whole file (inputs, cycles, merged settings) live in `resolve()` and raise
`ConfigError` at the path the user wrote.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
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
from framework.errors import ConfigError
from framework.keys import RESERVED_STAGE_NAMES, Keys
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


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One stage with every setting concrete and its streams named: all a worker reads."""

    name: str
    function: str
    input_stream: str
    input_stage: str | None
    source: bool
    output_stream: str
    consumers: tuple[str, ...]
    start: Literal["beginning", "new"]
    concurrency: int
    batch: int | None
    timeout: timedelta | None
    max_attempts: int
    retry_backoff: timedelta
    retry_backoff_max: timedelta
    lease: timedelta
    max_backlog: int | None


@dataclass(frozen=True, slots=True)
class Retention:
    """History kept per stream; both None means never trim."""

    max_len: int | None
    max_age: timedelta | None


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """A validated pipeline: what every command and worker is built from."""

    name: str
    redis_url: str
    retention: Retention
    result_ttl: timedelta
    max_payload: int
    stages: tuple[StageSpec, ...]
    source: Path
    label: str = field(default="", compare=False)
    """The file as the user named it, for messages; the basename of `source` when empty."""

    @property
    def base_dir(self) -> Path:
        """The folder holding pipeline.yaml; stage functions import relative to it."""
        return self.source.parent

    @property
    def keys(self) -> Keys:
        return Keys(self.name)

    @property
    def result_ttl_seconds(self) -> int:
        """`result_ttl` as EXPIRE takes it: whole seconds, at least one."""
        return max(int(self.result_ttl.total_seconds()), 1)

    @property
    def first(self) -> StageSpec:
        return self.stages[0]

    def stage(self, name: str) -> StageSpec:
        for spec in self.stages:
            if spec.name == name:
                return spec
        known = ", ".join(spec.name for spec in self.stages)
        raise ConfigError(
            self.label or self.source.name, "stages", f"unknown stage {name!r}; stages are: {known}"
        )


def resolve(model: PipelineConfig, source: Path, *, label: str | None = None) -> PipelineSpec:
    """Apply defaults, name every stream and check the input graph.

    Raises:
        ConfigError: an input names no stage, the stage itself, or closes a cycle; or a
            stage's retry_backoff exceeds its retry_backoff_max.
    """
    label = label or source.name
    defaults = model.defaults or DefaultsConfig()
    for name, stage in model.stages.items():
        if stage.function is None and defaults.function is None:
            raise ConfigError(label, f"stages.{name}.function", "required")
    keys = Keys(model.name)
    merged = {name: _merge(defaults, stage) for name, stage in model.stages.items()}
    inputs = {name: _input_of(model, keys, merged, name, label) for name in model.stages}
    _check_acyclic(model, inputs, label)
    specs = tuple(
        _stage_spec(model, keys, name, merged[name], inputs, label) for name in model.stages
    )
    return PipelineSpec(
        name=model.name,
        redis_url=model.redis.url if model.redis and model.redis.url else "embedded",
        retention=_retention(model.retention),
        result_ttl=model.result_ttl,
        max_payload=model.max_payload,
        stages=specs,
        source=source.absolute(),
        label=label,
    )


def _merge(defaults: DefaultsConfig, stage: StageConfig) -> StageSettings:
    """The stage's own settings over `defaults:`; `model_fields_set` keeps "written" apart."""
    written = {key: getattr(defaults, key) for key in defaults.model_fields_set}
    written.update({key: getattr(stage, key) for key in stage.model_fields_set})
    written = {k: v for k, v in written.items() if k in StageSettings.model_fields}
    return StageSettings.model_construct(_fields_set=set(written), **written)


def _function_of(model: PipelineConfig, stage: str) -> str:
    own = model.stages[stage].function
    shared = model.defaults.function if model.defaults is not None else None
    return own or shared or ""  # resolve() has refused a stage with neither


def _origin(model: PipelineConfig, stage: str, key: str) -> str:
    """Where a merged setting was written, so an error points at the line to change."""
    in_defaults = model.defaults is not None and key in model.defaults.model_fields_set
    if in_defaults and key not in model.stages[stage].model_fields_set:
        return f"defaults.{key}"
    return f"stages.{stage}.{key}"


def _input_of(
    model: PipelineConfig, keys: Keys, merged: dict[str, StageSettings], name: str, label: str
) -> tuple[str | None, str]:
    """(input stage or None, input stream key) of one stage."""
    wanted = merged[name].input
    if isinstance(wanted, StreamInput):
        if wanted.stream.startswith(keys.prefix + ":") and wanted.stream != keys.input:
            problem = f"{wanted.stream!r} is one of this pipeline's own keys; write input: STAGE"
            raise ConfigError(label, _origin(model, name, "input") + ".stream", problem)
        return None, wanted.stream
    names = list(model.stages)
    where = _origin(model, name, "input")
    if wanted is None:
        above = names[names.index(name) - 1] if names.index(name) > 0 else None
        return above, keys.input if above is None else keys.stage(above)
    if wanted == name:
        raise ConfigError(label, where, "a stage cannot read its own output")
    if wanted not in model.stages:
        raise ConfigError(label, where, _unknown_stage(wanted, names))
    return wanted, keys.stage(wanted)


def _unknown_stage(wanted: str, names: list[str]) -> str:
    close = difflib.get_close_matches(wanted, names, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "stages are: " + ", ".join(names)
    return f"unknown stage {wanted!r}; {hint}"


def _check_acyclic(
    model: PipelineConfig, inputs: dict[str, tuple[str | None, str]], label: str
) -> None:
    """Reject inputs that chase each other in a circle: no message could ever enter them.

    Only a written `input:` can point back up the file, so every cycle holds one; the first
    such stage in file order is where the error points.
    """
    for start in model.stages:
        chain = [start]
        upstream = inputs[start][0]
        while upstream is not None and upstream not in chain:
            chain.append(upstream)
            upstream = inputs[upstream][0]
        if upstream == start and len(chain) > 1:
            reads = ", ".join(
                f"{a} reads {b}" for a, b in zip(chain, [*chain[1:], start], strict=True)
            )
            path = _origin(model, start, "input")
            raise ConfigError(label, path, f"inputs form a cycle: {reads}")


def _stage_spec(
    model: PipelineConfig,
    keys: Keys,
    name: str,
    settings: StageSettings,
    inputs: dict[str, tuple[str | None, str]],
    label: str,
) -> StageSpec:
    backoff = _or(settings.retry_backoff, timedelta(seconds=1))
    backoff_max = _or(settings.retry_backoff_max, timedelta(minutes=5))
    if backoff > backoff_max:
        raise _backoff_error(model, name, settings, label)
    input_stage, input_stream = inputs[name]
    return StageSpec(
        name=name,
        function=_function_of(model, name),
        input_stream=input_stream,
        input_stage=input_stage,
        source=input_stage is None,
        output_stream=keys.stage(name),
        consumers=tuple(other for other, (upstream, _) in inputs.items() if upstream == name),
        start=_or(settings.start, "beginning"),
        concurrency=_or(settings.concurrency, 1),
        batch=settings.batch,
        timeout=settings.timeout,
        max_attempts=_or(settings.max_attempts, 3),
        retry_backoff=backoff,
        retry_backoff_max=backoff_max,
        lease=_or(settings.lease, timedelta(seconds=30)),
        max_backlog=settings.max_backlog,
    )


def _backoff_error(
    model: PipelineConfig, name: str, settings: StageSettings, label: str
) -> ConfigError:
    """Point at retry_backoff if the user wrote it, else at the retry_backoff_max they wrote."""
    backoff = format_duration(_or(settings.retry_backoff, timedelta(seconds=1)))
    backoff_max = format_duration(_or(settings.retry_backoff_max, timedelta(minutes=5)))
    if "retry_backoff" in settings.model_fields_set:
        problem = f"must not be more than retry_backoff_max ({backoff_max}), got {backoff}"
        return ConfigError(label, _origin(model, name, "retry_backoff"), problem)
    problem = f"must be at least retry_backoff ({backoff}), got {backoff_max}"
    return ConfigError(label, _origin(model, name, "retry_backoff_max"), problem)


def _retention(config: RetentionConfig | None) -> Retention:
    if config is None:
        return Retention(max_len=100_000, max_age=None)
    return Retention(max_len=config.max_len, max_age=config.max_age)


def _or(value: T | None, default: T) -> T:
    """`value or default` that keeps falsy values such as a zero backoff."""
    return default if value is None else value
