"""The baseline: a careful hand-written redis-py stage loop, as a user would write it.

XREADGROUP COUNT 100, then XADD of each output and XACK of the batch in one MULTI/EXEC.
No job tracking, no ownership check, no lease: the least a stage can do on Redis Streams.

    python bench/handloop.py REDIS_URL IN_STREAM OUT_STREAM GROUP
"""

from __future__ import annotations

import signal
import sys
from typing import cast

import redis
from redis.typing import EncodableT, FieldT

# An XREADGROUP reply as this client gets it (RESP2, not decoded); redis-py types it for every
# protocol and decoding mode. Fields are typed as XADD takes them: they go out unchanged.
Reply = list[tuple[bytes, list[tuple[bytes, dict[FieldT, EncodableT]]]]]


def run(url: str, source: str, target: str, group: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.xgroup_create(source, group, id="0", mkstream=True)
    except redis.ResponseError:
        pass
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    while not stopping:
        reply = client.xreadgroup(group, "hand-1", {source: ">"}, count=100, block=200)
        if not reply:
            continue
        entries = cast(Reply, reply)[0][1]
        pipe = client.pipeline(transaction=True)
        for _entry_id, fields in entries:
            pipe.xadd(target, fields)
        pipe.xack(source, group, *[entry_id for entry_id, _ in entries])
        pipe.execute()


if __name__ == "__main__":
    run(*sys.argv[1:5])
