"""`pipeline check`: validate pipeline.yaml and import every stage function, without Redis.

Meant for CI and for a container's start: a typo in `function:` or a stage module that fails
to import shows up here as one line and exit 2, not as a worker that crashes in production.
"""

from __future__ import annotations

import typer

from framework.cli.common import FileOption, load_pipeline
from framework.invocation import StageFunction
from framework.pipeline import Pipeline
from framework.specs import StageSpec


def import_stages(pipeline: Pipeline) -> list[StageSpec]:
    """Import and wrap every stage function once; raises StageImportError (exit 2)."""
    spec = pipeline.spec
    source = spec.label or spec.source.name
    checked = []
    for stage in spec.stages:
        StageFunction(stage, spec.base_dir, source, spec.max_payload)
        checked.append(stage)
    return checked


def describe(stage: StageSpec) -> str:
    batch = f"batch {stage.batch}" if stage.batch is not None else "no batch"
    return (
        f"{stage.name}: {stage.function}  input {stage.input_stream}  "
        f"{batch}, concurrency {stage.concurrency}"
    )


def check(ctx: typer.Context, file: FileOption = None) -> None:
    """Validate pipeline.yaml and import every stage function (exit 2 on any problem)."""
    pipeline = load_pipeline(ctx)
    for stage in import_stages(pipeline):
        typer.echo(describe(stage))
    typer.echo("ok")
