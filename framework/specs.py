"""What the engine reads: one frozen StageSpec per stage, and `resolve()`, which builds them
from the pipeline.yaml models (config.py).

The second of two layers: every value concrete, every stream named, so no worker ever writes
`stage.x or defaults.x`. Checks that need the whole file (inputs, cycles, merged settings)
live in `resolve()` and raise `ConfigError` at the path the user wrote.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal, TypeVar

from framework.config import (
    DefaultsConfig,
    PipelineConfig,
    RetentionConfig,
    StageConfig,
    StageSettings,
    StreamInput,
)
from framework.durations import format_duration
from framework.errors import ConfigError
from framework.keys import Keys

T = TypeVar("T")


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
    prefetch: int | None  # messages held at most; None: the read-ahead rule decides
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
        prefetch=settings.prefetch,
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
