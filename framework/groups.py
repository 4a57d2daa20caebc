"""Consumer groups, created idempotently before anything is written.

Whichever of `submit` or a worker touches the pipeline first creates every group, so a job
submitted before any worker ever ran (or an entry another application XADDed) is processed.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from redis.exceptions import ResponseError

from framework import scripts
from framework.connection import AsyncClient, Server
from framework.specs import PipelineSpec
from framework.wire import text


async def ensure_groups(client: AsyncClient, spec: PipelineSpec) -> None:
    """Create each stage's group on its input stream (MKSTREAM), leaving existing ones alone."""
    for stage in spec.stages:
        start = "0" if stage.start == "beginning" else "$"
        try:
            await client.xgroup_create(stage.input_stream, stage.name, id=start, mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise


async def reader_groups(client: AsyncClient, stream: str) -> set[str]:
    """The consumer groups reading `stream` now (none when it does not exist yet)."""
    try:
        groups = await client.xinfo_groups(stream)
    except ResponseError:  # no such key
        return set()
    return {text(group["name"]) for group in groups}


def is_unblocked(error: ResponseError) -> bool:
    """A blocked XREADGROUP released because its key is gone from this node: deleted, or its
    cluster slot migrated (Redis 7). Read again; the cluster client follows the slot."""
    return str(error).startswith("UNBLOCKED")


def is_missing_group(error: ResponseError) -> bool:
    """The group (or its stream) vanished: FLUSHALL, a deleted key, a server without AOF."""
    return "NOGROUP" in str(error)


# A consumer idle this long with nothing pending is gone (or idle, and made again on its next
# read); removing it loses nothing.
STALE_CONSUMER = timedelta(hours=1)


async def retire_consumers(
    client: AsyncClient,
    stream: str,
    group: str,
    me: str = "",
    stale: timedelta = STALE_CONSUMER,
    *,
    local: bool = False,
) -> int:
    """Remove `me` if it holds nothing, and other consumers holding nothing that are idle past
    `stale`; with `local` (an embedded Redis, which only this host's processes use) also those
    whose process is gone. Elsewhere containers may share a host name (host networking) but
    not their PIDs, so a PID is no evidence there."""
    idle_ms = int(stale.total_seconds() * 1000)
    gone: list[str] = []
    if local:
        try:
            names = [text(c["name"]) for c in await client.xinfo_consumers(stream, group)]
        except ResponseError:  # no group yet: nothing to retire
            return 0
        gone = [name for name in names if name != me and process_gone(name)]
    args = [group, me, idle_ms, *gone]
    return int(await scripts.script(scripts.RETIRE)(client, [stream], args))


def process_gone(consumer: str, host: str | None = None) -> bool:
    """Whether `consumer` (HOSTNAME-PID-N) named a process of this host that no longer runs:
    a Ctrl-C'd `pipeline run` against the embedded Redis, whose restart from its AOF makes
    every consumer look freshly seen. Another host's consumers are never judged from here."""
    prefix, _, rest = consumer.partition(f"{host or socket.gethostname()}-")
    pid, _, counter = rest.partition("-")
    if prefix or not (pid.isdigit() and counter.isdigit()):
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


async def announce_consumer(
    client: AsyncClient, server: Server, stream: str, group: str, me: str
) -> None:
    """Make the consumer now (6.2+), so XINFO CONSUMERS shows an idle worker too."""
    if server.has_autoclaim:  # XGROUP CREATECONSUMER came with 6.2, as XAUTOCLAIM did
        await client.execute_command("XGROUP", "CREATECONSUMER", stream, group, me)
