"""`pipeline worker` freezes what it holds once its stage functions are imported, unless told
not to: Python's collector then leaves the start-up heap alone (README, "Memory of a worker")."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipelines import start_worker, stop, write_pipeline
from servers import RedisServer

from framework.pipeline import Pipeline

CODE = """
import gc

MADE_AT_IMPORT = ["of the stage module"]

def frozen(doc):
    # Frozen objects are in none of the collector's generations.
    tracked = any(o is MADE_AT_IMPORT for o in gc.get_objects())
    return {"frozen": gc.get_freeze_count(), "stage_module_frozen": not tracked}
"""


@pytest.mark.parametrize(("setting", "frozen"), [(None, True), ("0", False)])
def test_a_worker_freezes_its_startup_heap_unless_told_not_to(
    redis7: RedisServer, pipeline_name: str, tmp_path: Path, setting: str | None, frozen: bool
) -> None:
    path = write_pipeline(tmp_path, pipeline_name, 'only:\n  function: "{mod}:frozen"', CODE)
    env = {} if setting is None else {"PIPELINE_GC_FREEZE": setting}
    worker = start_worker(path, "only", redis7.url, log=tmp_path / "worker.log", **env)
    try:
        with Pipeline.load(path, {"REDIS_URL": redis7.url}) as pipeline:
            job = pipeline.wait(pipeline.submit({}), timeout=30)
    finally:
        assert stop(worker) == 0, (tmp_path / "worker.log").read_text()[-2000:]
    count = job.result["frozen"]
    if frozen:
        assert count > 10_000  # the framework's and the stage's modules, classes, functions
    else:
        assert count == 0
    assert job.result["stage_module_frozen"] is frozen  # frozen after the stage's import
