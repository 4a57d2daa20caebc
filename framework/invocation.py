"""Import a stage's `module:function`, read its signature once, and call it: an async function
on the event loop (`call`, `call_batch`), a plain one in a runner thread (`call_in_thread`,
`call_batch_in_thread`; worker/thread_runners.py owns the threads and their timeouts).

Everything a user function can do (return a dict, a model, a list, None; raise; hang; block)
becomes exactly one outcome per message here, so the worker never sees a user exception.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
import typing
from collections.abc import Awaitable, Callable, Sequence
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

    # -- one message -----------------------------------------------------------------------

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

    def failure(self, error: BaseException, delivery: Delivery) -> Outcome:
        """The outcome of a call that raised: a retry or a dead letter."""
        spec = self.spec
        return decide(
            error, delivery.attempt, spec.max_attempts, spec.retry_backoff, spec.retry_backoff_max
        )

    def timed_out(self, delivery: Delivery) -> Outcome:
        """The outcome of a call that ran past the stage's `timeout`: a failed attempt."""
        assert self.spec.timeout is not None
        limit = format_duration(self.spec.timeout)
        return self.failure(StageTimeout(f"stage call ran past its timeout of {limit}"), delivery)

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

    def _arguments(self, argument: Any, context: Context | None) -> tuple[Any, ...]:
        return (argument, context) if self.wants_context else (argument,)

    async def call(self, delivery: Delivery, context: Context | None) -> Outcome:
        """An async function on one message; every way it can end is an outcome."""
        argument = self.prepare(delivery)
        if type(argument) is DeadLetter:
            return argument
        try:
            if self._direct:  # async, no ctx, no timeout: the common case, awaited as it is
                result = await self.function(argument)
            else:
                result = await self._awaited(self.function(*self._arguments(argument, context)))
        except StageTimeout:
            return self.timed_out(delivery)
        except Exception as error:  # user code: any failure is an outcome, never a crash
            return self.failure(error, delivery)
        return self.outcome(result)

    def call_in_thread(self, delivery: Delivery, context: Context | None) -> Outcome:
        """A plain function on one message, in the runner thread that calls this."""
        argument = self.prepare(delivery)
        if type(argument) is DeadLetter:
            return argument
        try:
            result = self.function(*self._arguments(argument, context))
        except Exception as error:  # user code: any failure is an outcome, never a crash
            return self.failure(error, delivery)
        return self.outcome(result)

    async def _awaited(self, call: Awaitable[Any]) -> Any:
        if self.spec.timeout is None:
            return await call
        try:
            return await asyncio.wait_for(call, self.spec.timeout.total_seconds())
        except TimeoutError:
            raise StageTimeout from None

    # -- a batch -----------------------------------------------------------------------------

    def _prepared(
        self, deliveries: list[Delivery]
    ) -> tuple[list[Outcome | None], list[Any], list[int]]:
        outcomes: list[Outcome | None] = [None] * len(deliveries)
        arguments, positions = [], []
        for position, delivery in enumerate(deliveries):
            argument = self.prepare(delivery)
            if isinstance(argument, DeadLetter):
                outcomes[position] = argument
            else:
                arguments.append(argument)
                positions.append(position)
        return outcomes, arguments, positions

    async def call_batch(
        self, deliveries: list[Delivery], context: Context | None
    ) -> list[Outcome]:
        """An async `batch:` function; each item is then acknowledged, retried or
        dead-lettered on its own."""
        outcomes, arguments, positions = self._prepared(deliveries)
        if arguments:
            try:
                results = await self._awaited(self.function(*self._arguments(arguments, context)))
            except StageTimeout:
                results = StageTimeout()
            except Exception as error:  # the whole batch failed: each item a failed attempt
                results = error
            self._fill(outcomes, positions, deliveries, arguments, results)
        return [outcome if outcome is not None else Drop() for outcome in outcomes]

    def call_batch_in_thread(
        self, deliveries: list[Delivery], context: Context | None
    ) -> list[Outcome]:
        """A plain `batch:` function, in the runner thread that calls this."""
        outcomes, arguments, positions = self._prepared(deliveries)
        if arguments:
            try:
                results: Any = self.function(*self._arguments(arguments, context))
            except Exception as error:  # the whole batch failed: each item a failed attempt
                results = error
            self._fill(outcomes, positions, deliveries, arguments, results)
        return [outcome if outcome is not None else Drop() for outcome in outcomes]

    def _fill(
        self,
        outcomes: list[Outcome | None],
        positions: list[int],
        deliveries: list[Delivery],
        arguments: list[Any],
        results: Any,
    ) -> None:
        """Each item's outcome from what the batch call returned (or raised)."""
        if isinstance(results, StageTimeout):
            for position in positions:
                outcomes[position] = self.timed_out(deliveries[position])
            return
        if not isinstance(results, BaseException) and (
            not isinstance(results, list | tuple) or len(results) != len(arguments)
        ):
            got = len(results) if isinstance(results, list | tuple) else type(results).__name__
            results = TypeError(
                f"batch function must return one result per payload: got {got} for {len(arguments)}"
            )
        for index, position in enumerate(positions):
            if isinstance(results, BaseException):
                outcomes[position] = self.failure(results, deliveries[position])
            else:
                outcomes[position] = self._emit(results[index])
