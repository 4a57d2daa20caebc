"""The HTTP API of `pipeline serve`: submit jobs, read and wait for them, stage statistics, a
health check and the dashboard, over one connected Pipeline.

`create_app` only builds routes on the pipeline it is given; whoever made the pipeline connects
and closes it (the `serve` command around uvicorn, or a test around an ASGI transport), so the
app owns no event loop state of its own. Errors map to statuses in one place: the framework's
exceptions already say what went wrong, and their text is the response's `detail`.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from framework import __version__
from framework.connection import BUSY_SERVER_ERRORS
from framework.dashboard import dashboard_html
from framework.errors import (
    BacklogFull,
    JobNotFound,
    PayloadError,
    PayloadTooLarge,
    PipelineError,
    RedisUnavailable,
    WaitTimeout,
)
from framework.pipeline import Pipeline
from framework.redact import redact
from framework.stats import read_stats

MAX_WAIT_SECONDS = 300.0  # a longer wait is better done as repeated calls


class BodyNotJson(PayloadError):
    """A request body that is not JSON at all: the request is malformed (400), where a payload
    that is JSON but refused (a bad job id) is 422."""


STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (BodyNotJson, 400),  # the first match counts: subclasses before their base class
    (PayloadTooLarge, 413),
    (PayloadError, 422),
    (BacklogFull, 429),
    (JobNotFound, 404),
    (WaitTimeout, 408),
    (RedisUnavailable, 503),
    (RedisConnectionError, 503),  # Redis went away after we connected
    (RedisTimeoutError, 503),
    *((kind, 503) for kind in BUSY_SERVER_ERRORS),  # at maxmemory, failing over: "not now"
)


def _error_response(error: Exception) -> JSONResponse:
    status = next((code for kind, code in STATUS_OF if isinstance(error, kind)), 500)
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return JSONResponse({"detail": redact(str(error))}, status_code=status, headers=headers)


async def _handle_error(request: Request, error: Exception) -> JSONResponse:
    return _error_response(error)


def create_app(pipeline: Pipeline) -> FastAPI:
    """The API over `pipeline`, which the caller connects before serving and closes after."""
    app = FastAPI(title=f"pipeline {pipeline.name}", version=__version__)
    for kind, _status in STATUS_OF:
        app.add_exception_handler(kind, _handle_error)
    add_job_routes(app, pipeline)
    add_status_routes(app, pipeline)
    return app


def add_job_routes(app: FastAPI, pipeline: Pipeline) -> None:
    @app.post("/jobs", status_code=202)
    async def submit(request: Request, job_id: str | None = None) -> dict[str, str]:
        """Queue one job: the JSON body is its payload."""
        try:
            payload = orjson.loads(await request.body())
        except orjson.JSONDecodeError as error:
            detail = f"payload is not valid JSON: {error.msg} at column {error.colno}"
            raise BodyNotJson(detail) from None
        return {"job": await pipeline.submit_async(payload, job_id=job_id)}

    @app.get("/jobs/{job_id}")
    async def job(job_id: str) -> dict[str, Any]:
        return (await pipeline.status_async(job_id)).to_dict()

    @app.get("/jobs/{job_id}/wait")
    async def wait(
        job_id: str, timeout: Annotated[float, Query(gt=0, le=MAX_WAIT_SECONDS)] = 30.0
    ) -> dict[str, Any]:
        """Block until the job is done or failed; 408 when `timeout` seconds pass first."""
        return (await pipeline.wait_async(job_id, timeout)).to_dict()


def add_status_routes(app: FastAPI, pipeline: Pipeline) -> None:
    @app.get("/status")
    async def status() -> dict[str, Any]:
        """What `pipeline status --json` prints."""
        client = await pipeline.client()
        stats = await read_stats(client, await pipeline.server(), pipeline.spec)
        return stats.to_dict()

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        try:
            await (await pipeline.client()).ping()
        except (PipelineError, RedisConnectionError, RedisTimeoutError) as error:
            return JSONResponse({"ok": False, "error": str(error)}, status_code=503)
        return JSONResponse({"ok": True})

    @app.get("/", response_class=HTMLResponse)
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(dashboard_html(pipeline.name, pipeline.stage_names))
