"""Import a stage's `module:function`, read its signature once, and serve it as one async call.

Everything a user function can do (return a dict, a model, a list, None; raise; hang; block)
becomes exactly one outcome per message here, so the worker never sees a user exception.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import sys
import typing
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from framework.context import Context
from framework.durations import format_duration
from framework.errors import StageImportError, StageTimeout
from framework.outcome import DeadLetter, Drop, Emit, Outcome, decide
from framework.specs import StageSpec
from framework.wire import Delivery


def import_function(spec: StageSpec, base_dir: Path, source: str) -> Callable[..., Any]:
    """Import `module.path:name`, with the folder of pipeline.yaml first on sys.path."""
    field = f"stages.{spec.name}.function"
    module_name, _, attribute = spec.function.partition(":")
    folder = str(base_dir)
    if not sys.path or sys.path[0] != folder:
        sys.path.insert(0, folder)  # first, so the pipeline's own `stages` package wins
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any import-time failure is the user's to fix, not a traceback
        raise StageImportError(
            source, field, f"cannot import {module_name!r}: {type(error).__name__}: {error}"
        ) from None
    except SystemExit as error:  # a module that exits as it is imported (a script's main)
        raise StageImportError(
            source, field, f"cannot import {module_name!r}: it called sys.exit({error.code!r})"
        ) from None
    function = getattr(module, attribute, None)
    if function is None:
        raise StageImportError(source, field, f"module {module_name!r} has no {attribute!r}")
    if not callable(function):
        raise StageImportError(source, field, f"{spec.function!r} is not callable")
    return typing.cast(Callable[..., Any], function)


def _payload_model(annotation: Any, batch: bool) -> type[BaseModel] | None:
    if batch and typing.get_origin(annotation) in (list, Sequence, typing.Sequence):
        args = typing.get_args(annotation)
        annotation = args[0] if args else None
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    return None


class StageFunction:
    """A user's stage function, wrapped so that each call returns outcomes and never raises."""

    def __init__(self, spec: StageSpec, base_dir: Path, source: str, max_payload: int) -> None:
        self.spec = spec
        self.max_payload = max_payload
        self.function = import_function(spec, base_dir, source)
        self.is_async = inspect.iscoroutinefunction(self.function)
        self.model, self.wants_context = self._read_signature(source)
        self._direct = self.is_async and not self.wants_context and spec.timeout is None
        self.executor: ThreadPoolExecutor | None = None
        if not self.is_async:
            self.executor = self._new_executor()

    def _new_executor(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(
            max_workers=self.spec.concurrency, thread_name_prefix=f"stage-{self.spec.name}"
        )

    def _read_signature(self, source: str) -> tuple[type[BaseModel] | None, bool]:
        field = f"stages.{self.spec.name}.function"
        try:
            parameters = list(inspect.signature(self.function).parameters.values())
            hints = typing.get_type_hints(self.function)
        except (TypeError, ValueError, NameError) as error:
            raise StageImportError(source, field, f"cannot read its signature: {error}") from None
        if not parameters:
            raise StageImportError(source, field, "takes no parameters; it needs one payload")
        payload, *rest = parameters
        wants_context = False
        for parameter in rest:
            if parameter.name == "ctx" or hints.get(parameter.name) is Context:
                wants_context = True
            elif parameter.default is inspect.Parameter.empty and parameter.kind in (
                inspect.Parameter.POSITIONAL_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
            ):
                raise StageImportError(
                    source,
                    field,
                    f"parameter {parameter.name!r} cannot be filled; a stage function takes "
                    "(payload) or (payload, ctx)",
                )
        return _payload_model(hints.get(payload.name), self.spec.batch is not None), wants_context

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)

    # -- calling -----------------------------------------------------------------------------

    def prepare(self, delivery: Delivery) -> Any | DeadLetter:
        """The argument for one payload, or the dead letter it earns without running."""
        if delivery.problem is not None:
            return DeadLetter(delivery.problem)
        if delivery.attempt > self.spec.max_attempts:
            return DeadLetter(
                f"attempt {delivery.attempt} is over max_attempts {self.spec.max_attempts}: "
                "the last run never finished (its worker died or was killed)"
            )
        if len(delivery.data) > self.max_payload:
            return DeadLetter(
                f"payload is {len(delivery.data)} bytes, over max_payload {self.max_payload}"
            )
        try:
            value = orjson.loads(delivery.data)
        except orjson.JSONDecodeError as error:
            return DeadLetter(f"payload is not valid JSON: {error}")
        if self.model is None:
            return value
        try:
            return self.model.model_validate(value)
        except ValidationError as error:
            summary = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in error.errors()
            )
            return DeadLetter(f"payload does not match {self.model.__name__}: {summary}")

    async def _invoke(self, argument: Any, context: Context | None) -> Any:
        args = (argument, context) if self.wants_context else (argument,)
        if self.is_async:
            call = self.function(*args)
        else:
            loop = asyncio.get_running_loop()
            call = loop.run_in_executor(self.executor, functools.partial(self.function, *args))
        if self.spec.timeout is None:
            return await call
        try:
            return await asyncio.wait_for(call, self.spec.timeout.total_seconds())
        except TimeoutError:
            if self.executor is not None:
                # A thread cannot be stopped: leave it to finish on its own and give the
                # stage fresh threads, so calls behind it are not timed out while they wait.
                self.executor.shutdown(wait=False)
                self.executor = self._new_executor()
            raise StageTimeout(
                f"stage call ran past its timeout of {format_duration(self.spec.timeout)}"
            ) from None

    def failure(self, error: BaseException, delivery: Delivery) -> Outcome:
        """The outcome of a call that raised: a retry or a dead letter."""
        spec = self.spec
        return decide(
            error, delivery.attempt, spec.max_attempts, spec.retry_backoff, spec.retry_backoff_max
        )

    def _emit(self, result: Any) -> Outcome:
        if result is None:
            return Drop()
        items = result if isinstance(result, list | tuple) else (result,)
        payloads = []
        for item in items:
            try:
                data = (
                    item.model_dump_json().encode()
                    if isinstance(item, BaseModel)
                    else orjson.dumps(item)
                )
            except TypeError as error:
                return DeadLetter(f"stage returned a value that is not JSON: {error}")
            if len(data) > self.max_payload:
                return DeadLetter(
                    f"stage output is {len(data)} bytes, over max_payload {self.max_payload}; "
                    "pass large data by reference"
                )
            payloads.append(data)
        return Emit(tuple(payloads))

    @property
    def direct(self) -> Callable[[Any], Awaitable[Any]] | None:
        """The function itself when it can be awaited as it is (async, no ctx, no timeout):
        the worker's runners then call `prepare`, it and `outcome` with no coroutine of ours
        around each call. None for every other kind of function: use `call`."""
        return self.function if self._direct else None

    def outcome(self, result: Any) -> Outcome:
        """The outcome of a call that returned `result`."""
        if type(result) is dict:  # the common case, without the general path's checks
            try:
                data = orjson.dumps(result)
            except TypeError:
                return self._emit(result)
            if len(data) <= self.max_payload:
                return Emit((data,))
        return self._emit(result)

    async def call(self, delivery: Delivery, context: Context | None) -> Outcome:
        """Run the function on one message; every way it can end is an outcome."""
        argument = self.prepare(delivery)
        if type(argument) is DeadLetter:
            return argument
        try:
            result = await self._invoke(argument, context)
        except Exception as error:  # user code: any failure is an outcome, never a crash
            return self.failure(error, delivery)
        return self.outcome(result)

    async def call_batch(
        self, deliveries: list[Delivery], context: Context | None
    ) -> list[Outcome]:
        """Run a `batch:` function; each item is then acknowledged, retried or dead-lettered."""
        outcomes: list[Outcome | None] = [None] * len(deliveries)
        arguments, positions = [], []
        for position, delivery in enumerate(deliveries):
            argument = self.prepare(delivery)
            if isinstance(argument, DeadLetter):
                outcomes[position] = argument
            else:
                arguments.append(argument)
                positions.append(position)
        if arguments:
            for position, outcome in zip(
                positions,
                await self._call_batch(arguments, deliveries, positions, context),
                strict=True,
            ):
                outcomes[position] = outcome
        return [outcome if outcome is not None else Drop() for outcome in outcomes]

    async def _call_batch(
        self,
        arguments: list[Any],
        deliveries: list[Delivery],
        positions: list[int],
        ctx: Context | None,
    ) -> list[Outcome]:
        try:
            results = await self._invoke(arguments, ctx)
            if not isinstance(results, list | tuple) or len(results) != len(arguments):
                got = len(results) if isinstance(results, list | tuple) else type(results).__name__
                raise TypeError(
                    f"batch function must return one result per payload: "
                    f"got {got} for {len(arguments)}"
                )
        except Exception as error:  # the whole batch failed: each item gets a failed attempt
            return [self.failure(error, deliveries[p]) for p in positions]
        return [self._emit(result) for result in results]
