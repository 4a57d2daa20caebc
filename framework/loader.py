"""Read pipeline.yaml into a PipelineSpec; every mistake in it becomes one one-line ConfigError.

Separate from config.py because this is where the file, YAML and the environment meet the
models: duplicate keys, `${VAR:-default}` expansion and rewriting pydantic's messages for
people all happen here. Messages read `FILE: dotted.path: problem`, where FILE is the path
exactly as the caller gave it (`pipeline.yaml` when run from its folder).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from framework.config import STAGE_INPUT_TAGS, PipelineConfig, RedisConfig, StageSettings
from framework.errors import ConfigError
from framework.specs import PipelineSpec, resolve

Loc = tuple[str | int, ...]

_REFERENCE = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<body>[^}]*)\}|(?P<open>\{))")
_VARIABLE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_YAML_HINTS = {
    "mapping values are not allowed here": "; quote a value that contains ': '",
    "found character '\\t' that cannot start any token": "; indent with spaces, not tabs",
}


class _FieldProblem(Exception):
    """A problem found at `loc` before pydantic runs; load_spec adds the file name."""

    def __init__(self, loc: Loc, problem: str) -> None:
        super().__init__(problem)
        self.loc = loc
        self.problem = problem


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""

    def construct_document(self, node: yaml.Node) -> Any:
        _reject_duplicates(node, (), set(), set())
        return super().construct_document(node)


def load_spec(path: str | Path, env: Mapping[str, str] | None = None) -> PipelineSpec:
    """Read, expand, validate and resolve one pipeline.yaml.

    Raises:
        ConfigError: for every mistake in the file, as one line naming the field.
    """
    label = str(path)
    environ = os.environ if env is None else env
    try:
        tree = _expand(_read_yaml(Path(path), label), (), environ)
        model = _with_redis_url(_validate(tree, label), environ, label)
    except _FieldProblem as problem:
        raise ConfigError(label, _dotted(problem.loc), problem.problem) from None
    except RecursionError:
        raise ConfigError(label, "", "nested too deeply") from None
    return resolve(model, Path(path), label=label)


def _read_yaml(path: Path, label: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = "run from the folder that holds it or pass -f PATH"
        raise ConfigError(label, "", f"file not found ({hint})") from None
    except IsADirectoryError:
        raise ConfigError(label, "", "is a folder, not a file") from None
    except UnicodeDecodeError as error:
        raise ConfigError(label, "", f"not UTF-8 text (bad byte at offset {error.start})") from None
    except OSError as error:
        raise ConfigError(label, "", f"cannot read: {error.strerror or error}") from None
    try:
        loader = StrictLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as error:
        raise _yaml_error(error, label) from None
    except yaml.YAMLError as error:  # a control character: reported without a line
        raise ConfigError(label, "", str(error).partition("\n")[0]) from None


def _yaml_error(error: yaml.MarkedYAMLError, label: str) -> ConfigError:
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = error.problem or error.context or "not valid YAML"
    if error.context and problem.startswith("but "):  # "but found another document"
        problem = f"{error.context}, {problem}"
    return ConfigError(label, where, problem + _YAML_HINTS.get(problem, ""))


def _reject_duplicates(node: yaml.Node, loc: Loc, open_: set[int], done: set[int]) -> None:
    """Walk the composed tree once, refusing repeated keys and anchors that contain themselves."""
    if id(node) in open_:
        raise _FieldProblem(loc, "an alias refers to the node that contains it")
    if id(node) in done:
        return
    open_.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_seen: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                line = key.start_mark.line + 1
                if (key.tag, name) in first_seen:
                    first = first_seen[(key.tag, name)]
                    problem = f"duplicate key at line {line} (first written at line {first})"
                    raise _FieldProblem((*loc, name), problem)
                first_seen[(key.tag, name)] = line
            _reject_duplicates(value, (*loc, name), open_, done)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _reject_duplicates(item, (*loc, index), open_, done)
    open_.discard(id(node))
    done.add(id(node))


def _expand(tree: Any, loc: Loc, env: Mapping[str, str]) -> Any:
    """Expand `${VAR}`, `${VAR:-default}` and `$$` in every string value (keys stay as written),
    except in `function:`: which code runs is the file's to say, not the environment's (with
    `FN=builtins:eval`, `function: ${FN}` would run every payload as Python)."""
    if isinstance(tree, str):
        if _is_function(loc):
            if "${" in tree:
                raise _FieldProblem(
                    loc, "${...} does not expand in function:; write the module path itself"
                )
            return tree
        return _REFERENCE.sub(lambda match: _substitute(match, loc, env), tree)
    if isinstance(tree, dict):
        return {key: _expand(value, (*loc, key), env) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_expand(item, (*loc, index), env) for index, item in enumerate(tree)]
    return tree


def _is_function(loc: Loc) -> bool:
    """`stages.NAME.function` or `defaults.function`."""
    if loc[-1:] != ("function",):
        return False
    return loc[:-1] == ("defaults",) or (len(loc) == 3 and loc[0] == "stages")


def _substitute(match: re.Match[str], loc: Loc, env: Mapping[str, str]) -> str:
    if match["dollar"]:
        return "$"
    if match["open"]:
        raise _FieldProblem(loc, "'${' is never closed; write $$ for a literal $")
    reference = _VARIABLE.fullmatch(match["body"])
    if reference is None:
        shown = "${" + match["body"] + "}"
        raise _FieldProblem(loc, f"cannot read {shown}; write ${{VAR}} or ${{VAR:-default}}")
    name, default = reference["name"], reference["default"]
    value = env.get(name)
    if default is not None and not value:  # as in the shell: unset or empty takes the default
        return default
    if value is None:
        problem = f"environment variable {name} is not set; set it or write ${{{name}:-default}}"
        raise _FieldProblem(loc, problem)
    return value


def _validate(tree: Any, label: str) -> PipelineConfig:
    if tree is None:
        raise ConfigError(label, "", "file is empty; it needs at least name: and stages:")
    if not isinstance(tree, dict):
        problem = f"must be a mapping with name: and stages: at the top, got {_describe(tree)}"
        raise ConfigError(label, "", problem)
    try:
        return PipelineConfig.model_validate(tree)
    except ValidationError as error:
        raise _config_error(error, label) from None


def _with_redis_url(model: PipelineConfig, env: Mapping[str, str], label: str) -> PipelineConfig:
    """No `redis.url` in the file: $REDIS_URL if set, else an embedded server."""
    if model.redis is not None and model.redis.url is not None:
        return model
    try:
        redis = RedisConfig(url=env.get("REDIS_URL") or "embedded")
    except ValidationError as error:
        problem = _problem(error.errors(include_url=False)[0], ("redis", "url"))
        raise ConfigError(
            label, "redis.url", f"from environment variable REDIS_URL: {problem}"
        ) from None
    return model.model_copy(update={"redis": redis})


def _config_error(error: ValidationError, label: str) -> ConfigError:
    """The first of pydantic's errors, at a path and in words a person can act on."""
    details = error.errors(include_url=False)
    detail = details[0]
    if detail["type"] == "missing":  # a misspelt key explains a "required" beside it
        parent = detail["loc"][:-1]
        typos = [d for d in details if d["type"] == "extra_forbidden" and d["loc"][:-1] == parent]
        detail = typos[0] if typos else detail
    loc = _clean(detail["loc"], detail["input"])
    return ConfigError(label, _dotted(loc), _problem(detail, loc))


def _clean(loc: Loc, key: object = None) -> Loc:
    """Drop pydantic's bookkeeping from a loc: `[key]` markers and the `input` union tags.

    A bad mapping key is its own input; a boolean one is spelt as YAML would (pydantic has
    already turned True into 1 in the loc).
    """
    parts: list[str | int] = []
    for index, part in enumerate(loc):
        if part == "[key]" and index == len(loc) - 1:
            parts[-1] = _describe(key) if isinstance(key, bool) else parts[-1]
            continue
        if part in STAGE_INPUT_TAGS and parts and parts[-1] == "input":
            continue
        parts.append(part)
    return tuple(parts)


def _dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)


def _problem(detail: ErrorDetails, loc: Loc) -> str:
    kind, ctx, got = detail["type"], detail.get("ctx", {}), _describe(detail["input"])
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<="}
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "missing":
        return "required"
    if kind in ("value_error", "assertion_error"):
        return str(ctx["error"])
    if kind in bounds:
        return f"must be {bounds[kind]} {next(iter(ctx.values()))}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be an integer, got {got}"
    if kind == "string_type" and isinstance(detail["input"], bool):
        return f"must be a string, got {got}; quote it (YAML reads yes, no, on, off as booleans)"
    if kind == "string_type":
        quote = "; quote it" if isinstance(detail["input"], int | float) else ""
        return f"must be a string, got {got}{quote}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping (key: value), got {got}"
    if kind == "literal_error":
        return f"must be {ctx['expected']}, got {got}"
    if kind == "string_too_short":
        return "must not be empty"
    message = detail["msg"]
    return f"{message[:1].lower()}{message[1:]}, got {got}"


def _unknown_key(loc: Loc) -> str:
    allowed = _allowed_keys(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    if len(loc) == 1 and loc[0] in StageSettings.model_fields:
        return "unknown key at the top level; stage settings go under defaults: or a stage"
    return "unknown key; allowed keys are: " + ", ".join(allowed)


def _allowed_keys(loc: Loc) -> list[str]:
    """The keys the model accepts at `loc`, found by walking the annotations down from the top."""
    shape: Any = PipelineConfig
    for part in loc:
        if isinstance(shape, type) and issubclass(shape, BaseModel):
            info = shape.model_fields.get(str(part))
            shape = _unwrap(info.annotation) if info else None
        elif get_origin(shape) is dict:
            shape = _unwrap(get_args(shape)[1])
        else:
            return []
    if isinstance(shape, type) and issubclass(shape, BaseModel):
        return [name for name, info in shape.model_fields.items() if not info.exclude]
    return []


def _unwrap(annotation: Any) -> Any:
    """The model (or dict) inside Annotated[...] and `X | None`."""
    if get_origin(annotation) is Annotated:
        return _unwrap(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        for option in get_args(annotation):
            inner = _unwrap(option)
            if get_origin(inner) is dict or (
                isinstance(inner, type) and issubclass(inner, BaseModel)
            ):
                return inner
    return annotation


def _describe(value: object) -> str:
    """A value as the user wrote it in YAML: 'abc', 12, true, null, a list."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "a mapping"
    return "a list" if isinstance(value, list) else type(value).__name__
