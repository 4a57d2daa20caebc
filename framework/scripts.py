"""The Lua scripts of `lua/`, loaded once, each called through one typed method.

Scripts run by EVALSHA; after a server restart (or on a new cluster node) the cache is empty,
so a NOSCRIPT reply falls back to EVAL, which caches the script again.
"""

from __future__ import annotations

import asyncio
import hashlib
from functools import cache
from importlib import resources
from typing import Any, Protocol

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)

CLUSTER_FANOUT = 50  # concurrent calls (and so connections) when pipelining is not possible


class AsyncRedis(Protocol):
    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any: ...
    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any: ...


class Script:
    """One Lua file; call it with the keys and arguments its header lists."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = resources.files("framework").joinpath("lua", f"{name}.lua").read_text()
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def __call__(self, client: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            try:
                return await client.evalsha(self.sha, len(keys), *keys, *args)
            except NoScriptError:
                return await client.eval(self.source, len(keys), *keys, *args)
        except ResponseError as error:
            raise unwrapped(error) from None

    async def many(self, client: Any, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run the script once per (keys, args) in one pipelined round trip, in order.

        A NOSCRIPT reply means that call did not run, so only those are sent again.
        """
        if isinstance(client, RedisCluster):  # redis-py cannot pipeline EVALSHA on a cluster
            replies = []
            for start in range(0, len(calls), CLUSTER_FANOUT):
                chunk = calls[start : start + CLUSTER_FANOUT]
                replies += await asyncio.gather(*(self(client, k, a) for k, a in chunk))
            return replies
        replies = [None] * len(calls)
        todo = list(range(len(calls)))
        for _ in range(2):
            pipe = client.pipeline(transaction=False)
            for index in todo:
                keys, args = calls[index]
                pipe.evalsha(self.sha, len(keys), *keys, *args)
            results = await pipe.execute(raise_on_error=False)
            missing = []
            for index, result in zip(todo, results, strict=True):
                if isinstance(result, NoScriptError):
                    missing.append(index)
                elif isinstance(result, ResponseError):
                    raise unwrapped(result)
                elif isinstance(result, Exception):
                    raise result
                else:
                    replies[index] = result
            if not missing:
                return replies
            await client.script_load(self.source)
            todo = missing
        raise NoScriptError(f"script {self.name} could not be loaded")

    def call_sync(self, client: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            try:
                return client.evalsha(self.sha, len(keys), *keys, *args)
            except NoScriptError:
                return client.eval(self.source, len(keys), *keys, *args)
        except ResponseError as error:
            raise unwrapped(error) from None


# Before 7.0, an error a command raised inside a script reaches the caller wrapped: "Error
# running script (call to f_...): @user_script:158: -OOM command not allowed ...". The ones
# that mean "not now" get their own class back, as 7.0 and later send them.
WRAPPED: dict[str, type[ResponseError]] = {
    "-OOM ": OutOfMemoryError,
    "-READONLY ": ReadOnlyError,
    "-MASTERDOWN ": MasterDownError,
    "-CLUSTERDOWN ": ClusterDownError,
    "-TRYAGAIN ": TryAgainError,
}


def unwrapped(error: ResponseError) -> ResponseError:
    text = str(error)
    if type(error) is ResponseError and text.startswith("Error running script"):
        for code, kind in WRAPPED.items():
            at = text.find(code)
            if at >= 0:
                return kind(text[at + 1 :])
    return error


@cache
def script(name: str) -> Script:
    return Script(name)


COMMIT = "commit"
SUBMIT = "submit"
PROMOTE = "promote"
RENEW = "renew"
RELEASE = "release"
RETIRE = "retire"
RECLAIM = "reclaim"
TRIM = "trim"
BACKLOG = "backlog"
REDRIVE = "redrive"
PURGE = "purge"
LAG = "lag"
SNAPSHOT = "snapshot"
REPLAY = "replay"
