"""`pipeline submit FILE... | --data JSON | -`: queue jobs, print one job id per line.

All-or-nothing on input: every payload is read and checked (JSON, max_payload) before the
first is submitted, so a bad line 9000 of a JSON Lines file does not leave 8999 jobs queued
and the user unsure which. With `--wait`, each job's outcome follows as one JSON line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, TextIO

import orjson
import typer

from framework.cli.common import FileOption, UsageProblem, connected, load_pipeline, run
from framework.cli.display import json_line
from framework.cli.documents import check_for_submit, find_documents
from framework.errors import BacklogFull, PayloadError, PipelineError, SubmitCutShort
from framework.pipeline import Pipeline, valid_job_id
from framework.wire import decode_json_text, encode_payload

STDIN = "-"


def parse_json(text: str | bytes, where: str, max_payload: int) -> Any:
    """One payload from JSON text, or a PayloadError that says where it came from."""
    try:
        payload = orjson.loads(decode_json_text(text.strip()))
        encode_payload(payload, max_payload)
    except PayloadError as error:
        raise PayloadError(f"{where}: {error}") from None
    return payload


def read_json_lines(stream: TextIO, max_payload: int) -> list[Any]:
    """One payload per non-blank line; the first bad line fails the whole input."""
    payloads = [
        parse_json(line, f"stdin line {number}", max_payload)
        for number, line in enumerate(stream, start=1)
        if line.strip()
    ]
    if not payloads:
        raise UsageProblem("stdin: no JSON lines to submit")
    return payloads


def read_payloads(sources: list[str], data: str | None, max_payload: int) -> list[Any]:
    if data is not None:
        if sources:
            raise UsageProblem("give FILE arguments, - or --data, not several")
        return [parse_json(data, "--data", max_payload)]
    if sources == [STDIN]:
        return read_json_lines(sys.stdin, max_payload)
    if not sources:
        raise UsageProblem("nothing to submit: give FILE..., --data JSON, or - for JSON Lines")
    if STDIN in sources:
        raise UsageProblem("- (stdin) cannot be combined with FILE arguments")
    documents = find_documents([Path(source) for source in sources])
    check_for_submit(documents, max_payload)
    return [document.encoded(max_payload) for document in documents]


async def submit_and_wait(
    pipeline: Pipeline,
    payloads: list[Any],
    job_id: str | None,
    wait: bool,
    timeout: float | None,
) -> bool:
    """Submit, print the ids; with `wait`, print each outcome. True when none failed."""
    async with connected(pipeline):
        try:
            job_ids = None if job_id is None else [job_id]
            ids = await pipeline.submit_many_async(payloads, job_ids)
        except BacklogFull as full:
            for _, queued in full.queued:  # these are queued: say so, or they are submitted twice
                typer.echo(queued)
            raise PartlyQueued(full, len(payloads)) from None
        except SubmitCutShort as cut:
            for _, queued in cut.queued:
                typer.echo(queued)
            raise PipelineError(cut_short(cut, len(payloads))) from None
        for job_id in ids:
            typer.echo(job_id)
        if not wait:
            return True
        sys.stdout.flush()  # the ids are useful while we wait
        finished = await pipeline.wait_all_async(ids, timeout)
    for job_id in ids:
        job = finished[job_id]
        typer.echo(json_line({"job": job.id, "state": job.state, "result": job.result,
                              "error": job.error}))  # fmt: skip
    return all(finished[job_id].state == "done" for job_id in ids)


class PartlyQueued(PipelineError):
    """Backpressure stopped a submit part way: what was queued, and what to submit again."""

    def __init__(self, full: BacklogFull, total: int) -> None:
        if not full.queued:
            super().__init__(f"{full}; nothing was submitted")
            return
        super().__init__(
            f"{full}; queued {len(full.queued)} of {total} jobs (their ids above), not "
            f"queued: job{'s' if len(full.refused) > 1 else ''} {spans(full.refused)} "
            "(counting from 1, in input order)"
        )


def cut_short(cut: SubmitCutShort, total: int) -> str:
    parts = [f"{cut.cause}; queued {len(cut.queued)} of {total} jobs (their ids above)"]
    if cut.unknown:
        unknown = [cut.job_ids[position] for position in cut.unknown]
        shown = " ".join(unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        parts.append(
            f"not known whether jobs {spans(cut.unknown)} were queued: their ids are {shown}; "
            "`pipeline status ID` tells, and submitting again with --job-id ID is safe"
        )
    if cut.not_queued:
        parts.append(f"not queued: jobs {spans(cut.not_queued)} (counting from 1)")
    return "; ".join(parts)


def spans(positions: list[int]) -> str:
    """0-based positions as 1-based ranges: [5, 6, 7, 9] -> "6-8, 10"."""
    ranges: list[list[int]] = []
    for position in sorted(positions):
        if ranges and position == ranges[-1][1] + 1:
            ranges[-1][1] = position
        else:
            ranges.append([position, position])
    return ", ".join(f"{a + 1}" if a == b else f"{a + 1}-{b + 1}" for a, b in ranges)


def submit(
    ctx: typer.Context,
    sources: Annotated[
        list[str] | None,
        typer.Argument(help="Files or folders (each file one job), or - for JSON Lines on stdin."),
    ] = None,
    data: Annotated[str | None, typer.Option("--data", "-d", help="One job, this JSON.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait, print each job's outcome.")] = False,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="With --wait: give up after this many seconds.")
    ] = None,
    job_id: Annotated[
        str | None,
        typer.Option(help="The job's id (one job only); submitting the same id again is a no-op."),
    ] = None,
    file: FileOption = None,
) -> None:
    """Queue jobs and print one job id per line; with --wait, exit 1 if any job failed."""
    if timeout is not None and not wait:
        raise UsageProblem("--timeout only applies with --wait")
    pipeline = load_pipeline(ctx)
    try:
        payloads = read_payloads(list(sources or []), data, pipeline.spec.max_payload)
    except PayloadError as error:  # what the command was given: nothing was queued
        nothing = "; nothing was submitted" if sources == [STDIN] else ""
        raise UsageProblem(f"{error}{nothing}") from None
    if job_id is not None and len(payloads) != 1:
        raise UsageProblem(f"--job-id needs exactly one job, got {len(payloads)}")
    if job_id is not None and not valid_job_id(job_id):
        raise UsageProblem(f"--job-id {job_id!r}: must be 1-200 characters, no whitespace")
    if not run(submit_and_wait(pipeline, payloads, job_id, wait, timeout)):
        raise typer.Exit(1)
