"""The `pipeline` command: the typer app, the global `-f`, and the one place errors are handled.

`main()` catches `PipelineError` once and prints `str(error)` as one line on stderr, exiting
with `error.exit_code`: a user's mistake never shows a traceback, while a bug of ours (any
other exception) still does. Usage errors are one line too, exit 2; Ctrl-C exits 130 quietly.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Annotated, NoReturn

import structlog
import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from framework import logs
from framework.cli import check, dead, replay, run, serve, status, submit, worker
from framework.cli.common import Options
from framework.errors import PipelineError
from framework.redact import redact

# typer 0.2x vendors click (its ClickException derives from typer.TyperException); older typer
# re-exports click's own. Either way it is the base of BadParameter.
UsageErrors: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)

app = typer.Typer(
    name="pipeline",
    help="Multi-stage document pipelines on Redis Streams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # our bugs get a plain, complete traceback
)


@app.callback()
def options(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Option(
            "--file", "-f", envvar="PIPELINE_FILE", help="The pipeline definition to use."
        ),
    ] = Path("pipeline.yaml"),
) -> None:
    """Multi-stage document pipelines on Redis Streams."""
    ctx.obj = Options(file=file)


app.command("run")(run.run_command)
app.command("worker")(worker.worker)
app.command("submit")(submit.submit)
app.command("status")(status.status)
app.command("check")(check.check)
app.command("replay")(replay.replay_command)
app.command("serve")(serve.serve)
app.add_typer(dead.app, name="dead")


def _exit(message: str, code: int) -> NoReturn:
    sys.stdout.flush()
    print(redact(message), file=sys.stderr)
    _leave(code)


def _leave(code: int) -> NoReturn:
    """Exit with `code`. A sync stage call still running (past a worker's grace period, or a
    run's --timeout) would hold the process at exit, where Python joins the thread pool's
    threads until the call returns: its message is handed back or left to its lease, and
    everything is closed, so leave it behind."""
    main = threading.main_thread()
    running = [t for t in threading.enumerate() if t is not main and not t.daemon and t.is_alive()]
    if running:
        structlog.get_logger().warning("exiting_with_calls_running", threads=len(running))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _bug() -> NoReturn:
    """An exception we did not expect is a bug of ours: its traceback, and exit 1 without
    waiting for runner threads (an idle one, or a hung call, would hold the process)."""
    traceback.print_exc()
    _leave(1)


def _usage_message(error: Exception) -> str:
    format_message = getattr(error, "format_message", None)
    message = format_message() if callable(format_message) else str(error)
    context = getattr(error, "ctx", None)
    if context is None:
        return f"error: {message}"
    return f"error: {message} (see: {context.command_path} --help)"


# A refusal of the server's (or no server), worth one line; a DataError or an InvalidResponse is
# a bug of ours and keeps its traceback.
SERVER_REFUSALS: tuple[type[Exception], ...] = (
    ResponseError,
    RedisConnectionError,
    RedisTimeoutError,
)
ONE_LINE: tuple[type[Exception], ...] = (PipelineError, *SERVER_REFUSALS)


def _server_problem(error: BaseException) -> str:
    """ "Refused" only for a reply that refused; a connection lost on the way is not one."""
    if isinstance(error, ResponseError):
        return f"Redis refused: {error}"
    return f"lost the connection to Redis: {error}"


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `pipeline` console script (and `python -m framework`)."""
    logs.configure()
    try:
        code = app(args=argv, prog_name="pipeline", standalone_mode=False)
    except PipelineError as error:
        _exit(str(error), error.exit_code)
    except UsageErrors as error:  # a bad option, a missing argument; or help for no arguments
        code = int(getattr(error, "exit_code", 2))
        if not str(error):
            sys.exit(code)
        _exit(_usage_message(error), code)
    except SERVER_REFUSALS as error:  # the server said no (no permission), or went away
        _exit(_server_problem(error), 1)
    except ExceptionGroup as group:  # a worker's tasks: the same, when that is all they met
        matched, rest = group.split(ONE_LINE)
        if matched is None or rest is not None:
            _bug()
        first = _first(matched)
        if isinstance(first, PipelineError):
            _exit(str(first), first.exit_code)
        _exit(_server_problem(first), 1)
    except (typer.Abort, KeyboardInterrupt):
        _leave(130)
    except Exception:
        _bug()
    _leave(code if isinstance(code, int) else 0)
