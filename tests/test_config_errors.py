"""pipeline.yaml: what a valid file resolves to, and the one-line error for every mistake.

Pure: no Redis. Each test writes its file into `tmp_path` and loads it by the relative name
`pipeline.yaml`, so messages read exactly as a user running from that folder sees them.
"""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framework.errors import ConfigError
from framework.loader import load_spec
from framework.specs import PipelineSpec

DESIGN_EXAMPLE = """\
name: docs                       # names the keys: every key of this pipeline is under {docs}
redis:
  url: ${REDIS_URL:-embedded}    # ${VAR} and ${VAR:-default} expand from the environment
defaults:                        # any stage setting may be set here for all stages
  max_attempts: 3
  retry_backoff: 1s
  retry_backoff_max: 5m
  lease: 30s
  concurrency: 1
retention:
  max_len: 100000
stages:
  extract:
    function: stages.extract:extract      # input: the pipeline's input stream
  analyze:
    function: stages.analyze:analyze      # input: the output of the stage above
  summarize:
    function: stages.summarize:summarize
    concurrency: 8
    timeout: 60s
  embed:
    function: stages.embed:embed
    batch: 32                    # the function gets a list of up to 32 payloads
"""

ONE_STAGE = "name: docs\nstages:\n  a:\n    function: m:f\n"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the folder that will hold pipeline.yaml, as a user would."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(here: Path, text: str, env: dict[str, str] | None = None) -> PipelineSpec:
    (here / "pipeline.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return load_spec("pipeline.yaml", env={} if env is None else env)


def error_of(here: Path, text: str, env: dict[str, str] | None = None) -> str:
    """The message of the ConfigError that loading `text` raises; checks exit code and shape."""
    with pytest.raises(ConfigError) as caught:
        load(here, text, env)
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- valid files -------------------------------------------------------------------------


def test_design_example_resolves_inputs_streams_and_defaults(here: Path) -> None:
    spec = load(here, DESIGN_EXAMPLE)
    assert spec.name == "docs"
    assert spec.redis_url == "embedded"
    assert spec.retention.max_len == 100_000
    assert spec.retention.max_age is None
    assert spec.result_ttl == timedelta(days=1)
    assert spec.max_payload == 1024 * 1024
    assert spec.source == here / "pipeline.yaml"
    assert spec.source.is_absolute()
    assert spec.base_dir == here
    assert spec.keys.input == "{docs}:input"
    assert [s.name for s in spec.stages] == ["extract", "analyze", "summarize", "embed"]

    extract, analyze, summarize, embed = spec.stages
    assert spec.first is extract
    assert (extract.input_stream, extract.input_stage, extract.source) == (
        "{docs}:input",
        None,
        True,
    )
    assert (analyze.input_stream, analyze.input_stage) == ("{docs}:extract", "extract")
    assert (embed.input_stream, embed.input_stage, embed.source) == (
        "{docs}:summarize",
        "summarize",
        False,
    )
    assert extract.output_stream == "{docs}:extract"
    assert [s.consumers for s in spec.stages] == [("analyze",), ("summarize",), ("embed",), ()]
    assert embed.consumers == ()  # the last stage: what it emits is a job's result

    assert extract.function == "stages.extract:extract"
    assert (extract.concurrency, extract.batch, extract.timeout) == (1, None, None)
    assert (extract.max_attempts, extract.start, extract.max_backlog) == (3, "beginning", None)
    assert extract.retry_backoff == timedelta(seconds=1)
    assert extract.retry_backoff_max == timedelta(minutes=5)
    assert extract.lease == timedelta(seconds=30)
    assert (summarize.concurrency, summarize.timeout) == (8, timedelta(seconds=60))
    assert embed.batch == 32


def test_builtin_defaults_apply_without_a_defaults_section(here: Path) -> None:
    spec = load(here, ONE_STAGE)
    stage = spec.stage("a")
    assert (stage.max_attempts, stage.concurrency, stage.start) == (3, 1, "beginning")
    assert (stage.retry_backoff, stage.retry_backoff_max) == (
        timedelta(seconds=1),
        timedelta(minutes=5),
    )
    assert stage.lease == timedelta(seconds=30)
    assert spec.retention.max_len == 100_000


def test_a_function_under_defaults_serves_every_stage_that_names_none(here: Path) -> None:
    spec = load(
        here,
        """\
        name: docs
        defaults: {function: "m:route"}
        stages:
          a: {}
          b: {function: m:g}
        """,
    )
    assert [stage.function for stage in spec.stages] == ["m:route", "m:g"]


def test_stage_settings_override_defaults_and_null_means_none(here: Path) -> None:
    spec = load(
        here,
        """\
        name: docs
        defaults: {concurrency: 4, batch: 8, timeout: 10s, start: new}
        stages:
          a: {function: m:f}
          b: {function: m:g, concurrency: 2, batch: null, start: beginning}
        """,
    )
    a, b = spec.stages
    assert (a.concurrency, a.batch, a.timeout, a.start) == (4, 8, timedelta(seconds=10), "new")
    assert (b.concurrency, b.batch, b.timeout, b.start) == (
        2,
        None,
        timedelta(seconds=10),
        "beginning",
    )


def test_branching_stages_share_an_input_and_both_consume_it(here: Path) -> None:
    spec = load(
        here,
        """\
        name: docs
        stages:
          extract: {function: m:extract}
          summarize: {function: m:summarize}
          embed: {function: m:embed, input: extract}
        """,
    )
    assert spec.stage("extract").consumers == ("summarize", "embed")
    assert spec.stage("embed").input_stream == "{docs}:extract"
    assert spec.stage("summarize").consumers == spec.stage("embed").consumers == ()


def test_stream_input_reads_an_external_stream(here: Path) -> None:
    spec = load(
        here,
        """\
        name: docs
        stages:
          ingest: {function: m:f, input: {stream: "orders:new"}}
          enrich: {function: m:g}
        """,
    )
    ingest = spec.stage("ingest")
    assert (ingest.input_stream, ingest.input_stage, ingest.source) == ("orders:new", None, True)
    assert spec.stage("enrich").input_stream == "{docs}:ingest"


def test_an_input_may_name_a_later_stage(here: Path) -> None:
    spec = load(
        here,
        """\
        name: docs
        stages:
          last: {function: m:f, input: middle}
          first: {function: m:g, input: {stream: ext}}
          middle: {function: m:h}
        """,
    )
    assert spec.stage("last").input_stream == "{docs}:middle"
    assert spec.stage("first").consumers == ("middle",)
    assert spec.stage("middle").consumers == ("last",)


def test_env_var_set_is_used(here: Path) -> None:
    spec = load(here, DESIGN_EXAMPLE, env={"REDIS_URL": "redis://cache:6379/0"})
    assert spec.redis_url == "redis://cache:6379/0"


def test_env_var_default_is_used_when_unset(here: Path) -> None:
    text = "name: docs\nredis:\n  url: ${REDIS_URL:-unix:///tmp/r.sock}\n" + ONE_STAGE[11:]
    assert load(here, text).redis_url == "unix:///tmp/r.sock"


def test_env_vars_expand_inside_strings_and_dollar_dollar_escapes(here: Path) -> None:
    text = """\
    name: docs
    stages:
      a: {function: "stages.extract:run", batch: "${BATCH}", input: {stream: "c${X:-ost}$$"}}
    """
    stage = load(here, text, env={"BATCH": "16"}).stage("a")
    assert (stage.function, stage.batch, stage.input_stream) == ("stages.extract:run", 16, "cost$")


def test_without_a_redis_section_the_url_comes_from_redis_url_or_is_embedded(here: Path) -> None:
    assert load(here, ONE_STAGE).redis_url == "embedded"
    assert (
        load(here, ONE_STAGE, env={"REDIS_URL": "rediss://x:6380"}).redis_url == "rediss://x:6380"
    )


def test_the_file_is_named_as_the_user_gave_it(here: Path) -> None:
    (here / "conf").mkdir()
    (here / "conf" / "pipeline.yaml").write_text("name: docs\nstages: {}\n")
    with pytest.raises(
        ConfigError, match=r"^conf/pipeline\.yaml: stages: list at least one stage$"
    ):
        load_spec("conf/pipeline.yaml", env={})


def test_unknown_stage_lookup_lists_the_stages(here: Path) -> None:
    spec = load(here, DESIGN_EXAMPLE)
    with pytest.raises(ConfigError) as caught:
        spec.stage("embedd")
    assert str(caught.value) == (
        "pipeline.yaml: stages: unknown stage 'embedd'; "
        "stages are: extract, analyze, summarize, embed"
    )


# --- every mistake, as one line ------------------------------------------------------------


def stage_with(*lines: str) -> str:
    return "name: docs\nstages:\n  a:\n    function: m:f\n" + "".join(
        f"    {line}\n" for line in lines
    )


ERRORS = {
    "bad YAML syntax": (
        "name: docs\nstages:\n  a:\n  function: m:f\n    b: 1\n",
        "pipeline.yaml: line 5, column 6: mapping values are not allowed here; "
        "quote a value that contains ': '",
    ),
    "unclosed bracket": (
        "name: docs\nstages: [a\n",
        "pipeline.yaml: line 3, column 1: expected ',' or ']', but got '<stream end>'",
    ),
    "tab indentation": (
        "name: docs\nstages:\n\ta: 1\n",
        "pipeline.yaml: line 3, column 1: found character '\\t' that cannot start any token; "
        "indent with spaces, not tabs",
    ),
    "unknown key with suggestion": (
        stage_with("retry_bakoff: 1s"),
        "pipeline.yaml: stages.a.retry_bakoff: unknown key; did you mean 'retry_backoff'?",
    ),
    "unknown key without a close match": (
        "name: docs\nretention: {zzz: 1}\nstages:\n  a:\n    function: m:f\n",
        "pipeline.yaml: retention.zzz: unknown key; allowed keys are: max_len, max_age",
    ),
    "stage setting at the top level": (
        "name: docs\nconcurrency: 4\nstages:\n  a:\n    function: m:f\n",
        "pipeline.yaml: concurrency: unknown key at the top level; "
        "stage settings go under defaults: or a stage",
    ),
    "unknown key in a stream input": (
        stage_with("input: {strem: x}"),
        "pipeline.yaml: stages.a.input.strem: unknown key; did you mean 'stream'?",
    ),
    "misspelt required key": (
        "name: docs\nstages:\n  a:\n    functon: m:f\n",
        "pipeline.yaml: stages.a.functon: unknown key; did you mean 'function'?",
    ),
    "wrong type": (
        stage_with("batch: abc"),
        "pipeline.yaml: stages.a.batch: must be an integer, got 'abc'",
    ),
    "boolean count": (
        stage_with("concurrency: true"),
        "pipeline.yaml: stages.a.concurrency: must be an integer, got true",
    ),
    "fractional count": (
        stage_with("max_attempts: 2.5"),
        "pipeline.yaml: stages.a.max_attempts: must be an integer, got 2.5",
    ),
    "out of range": (
        "name: docs\nstages:\n  embed:\n    function: m:f\n    batch: 0\n",
        "pipeline.yaml: stages.embed.batch: must be >= 1",
    ),
    "out of range under defaults": (
        "name: docs\ndefaults:\n  max_attempts: 0\nstages:\n  a:\n    function: m:f\n",
        "pipeline.yaml: defaults.max_attempts: must be >= 1",
    ),
    "bad literal": (
        stage_with("start: end"),
        "pipeline.yaml: stages.a.start: must be 'beginning' or 'new', got 'end'",
    ),
    "null for a setting that needs a value": (
        stage_with("concurrency:"),
        "pipeline.yaml: stages.a.concurrency: must have a value; "
        "delete the line to use the default",
    ),
    "unknown input stage with suggestion": (
        "name: docs\nstages:\n  extract: {function: m:f}\n  b: {function: m:g, input: extrct}\n",
        "pipeline.yaml: stages.b.input: unknown stage 'extrct'; did you mean 'extract'?",
    ),
    "unknown input stage": (
        "name: docs\nstages:\n  a: {function: m:f}\n  b: {function: m:g, input: zzz}\n",
        "pipeline.yaml: stages.b.input: unknown stage 'zzz'; stages are: a, b",
    ),
    "input to itself": (
        "name: docs\nstages:\n  a: {function: m:f}\n  b: {function: m:g, input: b}\n",
        "pipeline.yaml: stages.b.input: a stage cannot read its own output",
    ),
    "cyclic inputs": (
        "name: docs\nstages:\n  a: {function: m:f, input: c}\n  b: {function: m:g}\n"
        "  c: {function: m:h}\n",
        "pipeline.yaml: stages.a.input: inputs form a cycle: a reads c, c reads b, b reads a",
    ),
    "input neither a stage nor a stream": (
        stage_with("input: 3"),
        "pipeline.yaml: stages.a.input: must be a stage name or {stream: KEY}, got 3",
    ),
    "empty stream key": (
        stage_with("input: {stream: ''}"),
        "pipeline.yaml: stages.a.input.stream: must not be empty",
    ),
    "duplicate stage names": (
        "name: docs\nstages:\n  a:\n    function: m:f\n  a:\n    function: m:g\n",
        "pipeline.yaml: stages.a: duplicate key at line 5 (first written at line 3)",
    ),
    "duplicate setting": (
        stage_with("batch: 2", "batch: 3"),
        "pipeline.yaml: stages.a.batch: duplicate key at line 6 (first written at line 5)",
    ),
    "reserved stage name": (
        "name: docs\nstages:\n  dead:\n    function: m:f\n",
        "pipeline.yaml: stages.dead: 'dead' is reserved for the pipeline's own keys "
        "(dead, done, input, job, retry, stats); choose another stage name",
    ),
    "bad stage name characters": (
        "name: docs\nstages:\n  my stage:\n    function: m:f\n",
        "pipeline.yaml: stages.my stage: names may use only letters, digits, _ and -, "
        "got 'my stage'",
    ),
    "bad pipeline name characters": (
        "name: 'd{o}cs'\nstages:\n  a:\n    function: m:f\n",
        "pipeline.yaml: name: names may use only letters, digits, _ and -, got 'd{o}cs'",
    ),
    "stage name YAML reads as a boolean": (
        "name: docs\nstages:\n  on:\n    function: m:f\n",
        "pipeline.yaml: stages.true: must be a string, got true; "
        "quote it (YAML reads yes, no, on, off as booleans)",
    ),
    "bad function path form": (
        "name: docs\nstages:\n  a:\n    function: stages.extract.extract\n",
        "pipeline.yaml: stages.a.function: must be 'module.path:name', "
        "got 'stages.extract.extract'; did you mean 'stages.extract:extract'?",
    ),
    "missing function": (
        "name: docs\nstages:\n  a:\n    batch: 2\n",
        "pipeline.yaml: stages.a.function: required",
    ),
    "bad function under defaults": (
        "name: docs\ndefaults:\n  function: m.f\nstages:\n  a:\n    batch: 2\n",
        "pipeline.yaml: defaults.function: must be 'module.path:name', got 'm.f'; did you mean "
        "'m:f'?",
    ),
    "missing env var without default": (
        "name: docs\nredis:\n  url: ${REDIS_URL}\nstages:\n  a:\n    function: m:f\n",
        "pipeline.yaml: redis.url: environment variable REDIS_URL is not set; "
        "set it or write ${REDIS_URL:-default}",
    ),
    "unreadable env reference": (
        stage_with("input: {stream: '${1X}'}"),
        "pipeline.yaml: stages.a.input.stream: cannot read ${1X}; write ${VAR} or ${VAR:-default}",
    ),
    "bad duration": (
        stage_with("timeout: 5 minutes"),
        "pipeline.yaml: stages.a.timeout: expected a duration like 250ms, 30s, 5m, 1h, 7d "
        "or a number of seconds, got '5 minutes'",
    ),
    "zero timeout": (
        stage_with("timeout: 0"),
        "pipeline.yaml: stages.a.timeout: must be more than 0s, got 0s",
    ),
    "lease too short": (
        stage_with("lease: 50ms"),
        "pipeline.yaml: stages.a.lease: must be at least 100ms, got 50ms",
    ),
    "backoff over its cap": (
        stage_with("retry_backoff: 10m"),
        "pipeline.yaml: stages.a.retry_backoff: must not be more than retry_backoff_max (5m), "
        "got 10m",
    ),
    "cap under the backoff": (
        "name: docs\ndefaults:\n  retry_backoff_max: 500ms\nstages:\n  a:\n    function: m:f\n",
        "pipeline.yaml: defaults.retry_backoff_max: must be at least retry_backoff (1s), got 500ms",
    ),
    "empty retention": (
        "name: docs\nretention: {}\nstages:\n  a:\n    function: m:f\n",
        "pipeline.yaml: retention: set max_len and/or max_age",
    ),
    "bad redis url hides the password": (
        "name: docs\nredis:\n  url: 'reddis://:secret@host'\nstages:\n  a:\n    function: m:f\n",
        "pipeline.yaml: redis.url: must be 'embedded' or a redis://, rediss:// or unix:// URL, "
        "got 'reddis://***@host'",
    ),
    "redis url with a port that is not a number": (
        "name: docs\nredis:\n  url: 'redis://:pw@h:port'\nstages:\n  a:\n    function: m:f\n",
        "pipeline.yaml: redis.url: 'redis://***@h:port' is not a usable Redis URL: Port could "
        "not be cast to integer value as 'port'",
    ),
    "redis url with a port out of range": (
        "name: docs\nredis:\n  url: redis://h:99999\nstages:\n  a:\n    function: m:f\n",
        "pipeline.yaml: redis.url: 'redis://h:99999' is not a usable Redis URL: Port out of "
        "range 0-65535",
    ),
    "redis url with an unknown option": (
        "name: docs\nredis:\n  url: redis://h?colour=red\nstages:\n  a:\n    function: m:f\n",
        "pipeline.yaml: redis.url: 'redis://h?colour=red' is not a usable Redis URL: unknown "
        "option 'colour'",
    ),
    "redis url whose password has a slash": (
        "name: docs\nredis:\n  url: 'rediss://:k+e/y=@h:6380/0'\n"
        "stages:\n  a:\n    function: m:f\n",
        "pipeline.yaml: redis.url: 'rediss://***@h:6380/0' is not a usable Redis URL: a '/' in "
        "the password must be written %2F",
    ),
    "redis url with a database that is not a number": (
        "name: docs\nredis:\n  url: redis://h/zero\nstages:\n  a:\n    function: m:f\n",
        "pipeline.yaml: redis.url: 'redis://h/zero' is not a usable Redis URL: the database "
        "after the host must be a number, got 'zero'",
    ),
    "bad max_payload": (
        "name: docs\nmax_payload: 1 furlong\nstages:\n  a:\n    function: m:f\n",
        "pipeline.yaml: max_payload: expected a size like 512KiB, 1MiB, 1MB, 2GiB or a number "
        "of bytes, got '1 furlong'",
    ),
    "missing name": ("stages:\n  a:\n    function: m:f\n", "pipeline.yaml: name: required"),
    "missing stages": ("name: docs\n", "pipeline.yaml: stages: required"),
    "no stages": ("name: docs\nstages: {}\n", "pipeline.yaml: stages: list at least one stage"),
    "stages as a list": (
        "name: docs\nstages:\n  - extract\n",
        "pipeline.yaml: stages: must be a mapping (key: value), got a list",
    ),
    "empty file": ("", "pipeline.yaml: file is empty; it needs at least name: and stages:"),
    "only comments": (
        "# todo\n",
        "pipeline.yaml: file is empty; it needs at least name: and stages:",
    ),
    "top level a list": (
        "- name: docs\n",
        "pipeline.yaml: must be a mapping with name: and stages: at the top, got a list",
    ),
    "two documents": (
        "name: docs\n---\nname: other\n",
        "pipeline.yaml: line 2, column 1: expected a single document in the stream, "
        "but found another document",
    ),
    "python tag": (
        "name: !!python/object:os.system docs\n",
        "pipeline.yaml: line 1, column 7: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object:os.system'",
    ),
}


@pytest.mark.parametrize(("text", "expected"), ERRORS.values(), ids=ERRORS.keys())
def test_each_mistake_is_one_line_naming_file_field_and_problem(
    here: Path, text: str, expected: str
) -> None:
    assert error_of(here, text) == expected


def test_env_var_that_is_set_but_not_a_url(here: Path) -> None:
    assert error_of(here, ONE_STAGE, env={"REDIS_URL": "http://u:pw@x"}) == (
        "pipeline.yaml: redis.url: from environment variable REDIS_URL: must be 'embedded' "
        "or a redis://, rediss:// or unix:// URL, got 'http://***@x'"
    )


def test_function_is_read_as_written_never_from_the_environment(here: Path) -> None:
    """`FN=builtins:eval` must not make a stage `eval` its payloads."""
    text = "name: docs\nstages:\n  a:\n    function: ${FN}\n"
    assert error_of(here, text, env={"FN": "builtins:eval"}) == (
        "pipeline.yaml: stages.a.function: ${...} does not expand in function:; "
        "write the module path itself"
    )
    shared = "name: docs\ndefaults:\n  function: ${FN:-m:f}\nstages:\n  a: {}\n"
    assert error_of(here, shared) == (
        "pipeline.yaml: defaults.function: ${...} does not expand in function:; "
        "write the module path itself"
    )
    literal = 'name: docs\nstages:\n  a:\n    function: pkg.mod:fn\n    input: {stream: "${S}"}\n'
    spec = load(here, literal, env={"S": "events"})
    assert spec.stages[0].function == "pkg.mod:fn"
    assert spec.stages[0].input_stream == "events"  # other values still expand


@pytest.mark.parametrize("function", ["builtins:eval", "builtins:exec", "__main__:main"])
def test_a_builtin_function_is_refused(here: Path, function: str) -> None:
    text = f"name: docs\nstages:\n  a:\n    function: {function}\n"
    module = function.partition(":")[0]
    assert error_of(here, text) == (
        f"pipeline.yaml: stages.a.function: '{function}': functions of '{module}' cannot be "
        "stages; write the stage as a function in a module of your own"
    )


def test_missing_file(here: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_spec("pipeline.yaml", env={})
    assert caught.value.exit_code == 2
    assert str(caught.value) == (
        "pipeline.yaml: file not found (run from the folder that holds it or pass -f PATH)"
    )


def test_a_folder_is_not_a_file(here: Path) -> None:
    (here / "pipeline.yaml").mkdir()
    with pytest.raises(ConfigError, match=r"^pipeline\.yaml: is a folder, not a file$"):
        load_spec("pipeline.yaml", env={})


def test_binary_garbage(here: Path) -> None:
    (here / "pipeline.yaml").write_bytes(b"name: \xff\xfe")
    with pytest.raises(ConfigError, match=r"^pipeline\.yaml: not UTF-8 text"):
        load_spec("pipeline.yaml", env={})


def test_recursive_alias_is_refused(here: Path) -> None:
    assert error_of(here, "name: docs\nx: &a [*a]\n") == (
        "pipeline.yaml: x.0: an alias refers to the node that contains it"
    )


# --- never a traceback ---------------------------------------------------------------------

KEYS = [
    "name", "redis", "url", "defaults", "retention", "max_len", "max_age", "result_ttl",
    "max_payload", "stages", "a", "b", "input", "stream", "start", "concurrency", "batch",
    "timeout", "max_attempts", "retry_backoff", "retry_backoff_max", "lease", "max_backlog",
    "function", "zz",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**20),
    st.floats(),
    st.sampled_from(["m:f", "a", "b", "1s", "-1", "${X}", "${X:-1}", "$$", "${", "redis://x"]),
    st.text(max_size=4),
)
TREES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.integers(0, 2), inner, max_size=5)
    ),
    max_leaves=20,
)
FILES = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["docs", "x y"]),
        "stages": st.dictionaries(st.sampled_from(KEYS), TREES),
    },
    optional=dict.fromkeys(("redis", "defaults", "retention", "result_ttl"), TREES),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(FILES | TREES)
def test_any_file_loads_or_raises_config_error(here: Path, tree: object) -> None:
    (here / "pipeline.yaml").write_text(yaml.safe_dump(tree))
    error: ConfigError | None = None
    try:
        load_spec("pipeline.yaml", env={})
    except ConfigError as caught:  # any other exception fails the test with its traceback
        error = caught
    if error is not None:
        assert error.exit_code == 2
        assert "\n" not in str(error)
