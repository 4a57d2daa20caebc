"""The HTTP API of `pipeline serve`: submit jobs, read and wait for them, stage statistics, a
health check and the dashboard, over one connected Pipeline.

`create_app` only builds routes on the pipeline it is given; whoever made the pipeline connects
and closes it (the `serve` command around uvicorn, or a test around an ASGI transport). Errors
map to statuses in one place: the framework's exceptions already say what went wrong, and
their text (with any secret in a URL masked) is the response's `detail`.

Safe to put in front of users: with a token, every route but `/healthz` and the dashboard's
page (which holds no data) wants `Authorization: Bearer TOKEN`, `/docs` and `/openapi.json`
too. A body is refused as it arrives once it passes `max_payload`, and only JSON is taken, so
a form on another site cannot submit through a visitor's browser (no CORS headers are sent,
so such a request cannot be made to look like JSON either). A job submitted over HTTP never
names a file (`path`, `uri`): the workers' files are not the caller's to read. Waits share one
blocking read and are capped, so they cannot starve the other requests of connections.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from framework import __version__
from framework.connection import BUSY_SERVER_ERRORS
from framework.dashboard import dashboard_html
from framework.dead_letters import Selection, newest_first, purge_selected, retry
from framework.errors import (
    BacklogFull,
    BodyNotJson,
    DeadLetterNotFound,
    JobNotFound,
    NotAuthorized,
    PayloadError,
    PayloadTooLarge,
    PipelineError,
    RedisUnavailable,
    TooManyWaits,
    UsageProblem,
    WaitTimeout,
    WrongContentType,
)
from framework.jobs import DoneWatcher
from framework.pipeline import Pipeline
from framework.redact import redact
from framework.stats import read_stats

MAX_WAIT_SECONDS = 300.0  # a longer wait is better done as repeated calls
MAX_WAITS = 1000  # waits in progress at once; they share one connection, this bounds memory
FILE_FIELDS = ("path", "uri")  # how a document names a file on the workers' side

STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (BodyNotJson, 400),  # the first match counts: subclasses before their base class
    (UsageProblem, 422),
    (DeadLetterNotFound, 404),
    (WrongContentType, 415),
    (PayloadTooLarge, 413),
    (PayloadError, 422),
    (NotAuthorized, 401),
    (BacklogFull, 429),
    (TooManyWaits, 503),
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
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse({"detail": redact(str(error))}, status_code=status, headers=headers)


async def _handle_error(request: Request, error: Exception) -> JSONResponse:
    return _error_response(error)


def create_app(pipeline: Pipeline, token: str | None = None, max_waits: int = MAX_WAITS) -> FastAPI:
    """The API over `pipeline`, which the caller connects before serving and closes after.
    With `token`, requests must carry it as a bearer token."""
    app = FastAPI(
        title=f"pipeline {pipeline.name}",
        version=__version__,
        docs_url=None,  # served below, behind the token
        redoc_url=None,
        openapi_url=None,
    )
    for kind, _status in STATUS_OF:
        app.add_exception_handler(kind, _handle_error)
    authorized = Depends(bearer_token(token))
    add_job_routes(app, pipeline, authorized, max_waits)
    add_status_routes(app, pipeline, authorized, token)
    add_dead_letter_routes(app, pipeline, authorized)
    add_docs_routes(app, authorized)
    return app


def bearer_token(token: str | None) -> Any:
    """A dependency that refuses requests without `token` (none when no token is set)."""
    expected = token.encode() if token else None

    async def check(request: Request) -> None:
        if expected is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            given.strip().encode(), expected
        ):
            raise NotAuthorized()

    return check


async def read_json_body(request: Request, limit: int) -> Any:
    """The JSON body, refused (413) as soon as it passes `limit` bytes: a client announcing or
    sending more never gets its body into our memory."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise WrongContentType(
            f"POST {request.url.path} takes a JSON body: send Content-Type: application/json"
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is {declared} bytes, over max_payload {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body is over max_payload {limit} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        detail = f"payload is not valid JSON: {error.msg} at column {error.colno}"
        raise BodyNotJson(detail) from None


def refuse_file_references(payload: Any) -> None:
    if isinstance(payload, dict):
        named = [field for field in FILE_FIELDS if field in payload]
        if named:
            raise PayloadError(
                f"a job submitted over HTTP cannot name a file ({', '.join(named)}): send the "
                "document itself, as text or as base64 content"
            )


def add_job_routes(app: FastAPI, pipeline: Pipeline, authorized: Any, max_waits: int) -> None:
    watchers: dict[int, DoneWatcher] = {}  # one per client (a client belongs to one loop)

    async def watcher() -> DoneWatcher:
        client = await pipeline.client()
        found = watchers.get(id(client))
        if found is None or found.client is not client:
            found = watchers[id(client)] = DoneWatcher(
                client, pipeline.spec.keys, pipeline.stage_names
            )
        return found

    @app.post("/jobs", status_code=202, dependencies=[authorized])
    async def submit(request: Request, response: Response, job_id: str | None = None) -> Any:
        """Queue one job: the JSON body is its payload. 202 with its id; 200 with the job as
        it stands when a job with that `job_id` exists already (nothing is queued)."""
        payload = await read_json_body(request, pipeline.spec.max_payload)
        refuse_file_references(payload)
        submitted = await pipeline.submit_job_async(payload, job_id=job_id)
        if submitted.new:
            return {"job": submitted.job_id}
        response.status_code = 200
        existing = await pipeline.status_async(submitted.job_id)
        return {"job": submitted.job_id, **existing.to_dict()}

    @app.get("/jobs/{job_id}", dependencies=[authorized])
    async def job(job_id: str) -> dict[str, Any]:
        return (await pipeline.status_async(job_id)).to_dict()

    @app.get("/jobs/{job_id}/wait", dependencies=[authorized])
    async def wait(
        job_id: str, timeout: Annotated[float, Query(gt=0, le=MAX_WAIT_SECONDS)] = 30.0
    ) -> dict[str, Any]:
        """Block until the job is done or failed; 408 when `timeout` seconds pass first."""
        done = await watcher()
        if done.waiting >= max_waits:
            raise TooManyWaits(max_waits)
        return (await done.wait(job_id, timeout)).to_dict()


def add_status_routes(app: FastAPI, pipeline: Pipeline, authorized: Any, token: str | None) -> None:
    @app.get("/status", dependencies=[authorized])
    async def status() -> dict[str, Any]:
        """What `pipeline status --json` prints."""
        client = await pipeline.client()
        stats = await read_stats(client, await pipeline.server(), pipeline.spec)
        return stats.to_dict()

    @app.get("/healthz")
    async def healthz(request: Request) -> JSONResponse:
        """For orchestrators, without the token; the reason for a 503 only with it."""
        try:
            await (await pipeline.client()).ping()
        except (PipelineError, RedisConnectionError, RedisTimeoutError) as error:
            body: dict[str, Any] = {"ok": False}
            try:
                await bearer_token(token)(request)
                body["error"] = redact(str(error))
            except NotAuthorized:
                pass
            return JSONResponse(body, status_code=503)
        return JSONResponse({"ok": True})

    @app.get("/", response_class=HTMLResponse)
    async def dashboard() -> HTMLResponse:
        """The page holds no data: its script reads /status, with the token it asks for."""
        return HTMLResponse(dashboard_html(pipeline.name, pipeline.stage_names))


MAX_SELECTION_BYTES = 1024 * 1024  # a body naming dead letters: ids, a stage, or all


async def read_selection(request: Request) -> Selection:
    """`{"ids": [...]}`, `{"stage": "embed"}` or `{"all": true}`, as `pipeline dead` takes
    IDs, --stage or --all."""
    body = await read_json_body(request, MAX_SELECTION_BYTES)
    if not isinstance(body, dict):
        body = {"ids": None}
    ids, stage, everything = body.get("ids", []), body.get("stage"), body.get("all", False)
    if not (
        isinstance(ids, list)
        and all(isinstance(entry, str) for entry in ids)
        and isinstance(stage, str | None)
        and isinstance(everything, bool)
    ):
        raise UsageProblem('select letters with {"ids": [...]}, {"stage": "S"} or {"all": true}')
    selection = Selection(tuple(ids), stage, everything)
    selection.check()
    return selection


def add_dead_letter_routes(app: FastAPI, pipeline: Pipeline, authorized: Any) -> None:
    """What `pipeline dead` does, over HTTP (framework/dead_letters.py)."""

    @app.get("/dead", dependencies=[authorized])
    async def dead_letters(
        stage: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 20
    ) -> dict[str, Any]:
        """Dead letters, newest first, with their payloads."""
        client = await pipeline.client()
        letters = []
        async for letter in newest_first(client, pipeline.spec, stage):
            letters.append(letter.to_dict())
            if len(letters) >= limit:
                break
        return {"letters": letters}

    @app.post("/dead/retry", dependencies=[authorized])
    async def retry_letters(request: Request) -> dict[str, int]:
        """Send letters back to the stage that failed them, as a fresh first attempt."""
        selection = await read_selection(request)
        retried, skipped = await retry(await pipeline.client(), pipeline.spec, selection)
        return {"retried": retried, "skipped": skipped}

    @app.post("/dead/purge", dependencies=[authorized])
    async def purge_letters(request: Request) -> dict[str, int]:
        """Delete letters for good."""
        selection = await read_selection(request)
        return {"purged": await purge_selected(await pipeline.client(), pipeline.spec, selection)}


def add_docs_routes(app: FastAPI, authorized: Any) -> None:
    @app.get("/openapi.json", include_in_schema=False, dependencies=[authorized])
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[authorized])
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="openapi.json", title=f"{app.title} - docs")
