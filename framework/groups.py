"""Consumer groups, created idempotently before anything is written.

Whichever of `submit` or a worker touches the pipeline first creates every group, so a job
submitted before any worker ever ran (or an entry another application XADDed) is processed.
"""

from __future__ import annotations

from redis.exceptions import ResponseError

from framework.config import PipelineSpec
from framework.connection import AsyncClient


async def ensure_groups(client: AsyncClient, spec: PipelineSpec) -> None:
    """Create each stage's group on its input stream (MKSTREAM), leaving existing ones alone."""
    for stage in spec.stages:
        start = "0" if stage.start == "beginning" else "$"
        try:
            await client.xgroup_create(stage.input_stream, stage.name, id=start, mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise


def is_missing_group(error: ResponseError) -> bool:
    """The group (or its stream) vanished: FLUSHALL, a deleted key, a server without AOF."""
    return "NOGROUP" in str(error)
