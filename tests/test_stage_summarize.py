"""summarize: the extractive summary, and the LLM path against a fake OpenAI-compatible server.

The fake server is stdlib http.server on a free 127.0.0.1 port, in a thread; each test sets
the reply it should give. What matters for the engine is how failures are sorted: what
passes (429, 5xx, timeouts) must be `Retry`, what does not must be `Fail`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from document_jobs import document_job
from structlog.testing import capture_logs

from framework import Fail, Retry
from stages.extract import extract
from stages.summarize import retry_after_seconds, summarize
from stages.text import sentences
from stages.textrank import summary_length, textrank

DOCUMENTS = Path(__file__).resolve().parent.parent / "examples" / "documents"


@pytest.fixture(autouse=True)
def _no_llm_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own LLM settings must not leak into these tests."""
    for name in ("LLM_BASE_URL", "LLM_API_KEY", "LLM_MODEL", "LLM_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------------------------------
# Extractive
# ---------------------------------------------------------------------------------------------


async def test_extractive_summary_of_a_shipped_document() -> None:
    doc = extract(document_job(DOCUMENTS / "sourdough.txt"))
    out = await summarize(doc)
    assert out["summary_method"] == "extractive"
    picked = sentences(out["summary"])
    assert 3 <= len(picked) <= 7
    positions = [doc["text"].index(sentence) for sentence in picked]
    assert positions == sorted(positions)  # original order kept
    assert {key: out[key] for key in doc} == doc  # fields pass on


async def test_short_text_is_its_own_summary() -> None:
    text = "Only two sentences are here today. Both of them should be kept."
    assert (await summarize({"text": text}))["summary"] == text


def test_textrank_prefers_the_sentence_the_others_share_words_with() -> None:
    bags = [
        {"redis", "stream", "consumer", "group"},
        {"redis", "stream"},
        {"consumer", "group"},
        {"banana", "bread"},
    ]
    scores = textrank(bags)
    assert scores.index(max(scores)) == 0
    assert scores[3] == min(scores)


@pytest.mark.parametrize(("count", "length"), [(2, 2), (5, 3), (20, 4), (100, 7)])
def test_summary_length(count: int, length: int) -> None:
    assert summary_length(count) == length


async def test_logs_through_ctx() -> None:
    ctx = SimpleNamespace(log=structlog.get_logger())
    with capture_logs() as logs:
        await summarize({"text": "One sentence here. Another one there."}, ctx)
    assert logs[0]["event"] == "summarized"
    assert logs[0]["method"] == "extractive"


async def test_missing_text_fails() -> None:
    with pytest.raises(Fail, match="summarize needs a 'text' field"):
        await summarize({"filename": "x.txt"})


# ---------------------------------------------------------------------------------------------
# A fake OpenAI-compatible endpoint
# ---------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class FakeLLM:
    url: str = ""
    reply: Reply = field(default_factory=Reply)
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def answer(self, content: str) -> None:
        self.reply = Reply(
            body={"choices": [{"message": {"role": "assistant", "content": content}}]}
        )


def handler_for(fake: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            fake.requests.append(
                {"path": self.path, "headers": dict(self.headers), "json": json.loads(body)}
            )
            reply = fake.reply
            fake.release.wait(reply.delay)  # the timeout test's slow server; teardown ends it
            payload = (
                reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            )
            try:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first, as the timeout test wants

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLM]:
    server = QuietServer(("127.0.0.1", 0), handler_for(fake := FakeLLM()))
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_port}/v1"
    monkeypatch.setenv("LLM_BASE_URL", fake.url)
    monkeypatch.setenv("LLM_API_KEY", "sk-test")
    monkeypatch.setenv("LLM_MODEL", "test-model")
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


DOC = {"filename": "note.txt", "text": "Redis streams keep an append-only log. Groups share it."}


async def test_llm_summary(llm: FakeLLM) -> None:
    llm.answer("  A log that groups of workers share.  ")
    out = await summarize(DOC)
    assert out["summary"] == "A log that groups of workers share."
    assert out["summary_method"] == "llm:test-model"
    assert out["filename"] == "note.txt"
    (request,) = llm.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    assert request["json"]["model"] == "test-model"
    assert request["json"]["messages"][-1] == {"role": "user", "content": DOC["text"]}


async def test_default_model_and_no_key(llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_MODEL")
    monkeypatch.delenv("LLM_API_KEY")
    llm.answer("Summary.")
    assert (await summarize(DOC))["summary_method"] == "llm:gpt-4o-mini"
    assert "Authorization" not in llm.requests[0]["headers"]


async def test_rate_limit_retries_after_the_servers_delay(llm: FakeLLM) -> None:
    llm.reply = Reply(status=429, body={"error": "slow down"}, headers={"Retry-After": "7"})
    with pytest.raises(Retry) as retry:
        await summarize(DOC)
    assert retry.value.after == timedelta(seconds=7)


async def test_rate_limit_without_retry_after_waits_five_seconds(llm: FakeLLM) -> None:
    llm.reply = Reply(status=429, body={"error": "slow down"})
    with pytest.raises(Retry) as retry:
        await summarize(DOC)
    assert retry.value.after == timedelta(seconds=5)


async def test_server_error_retries(llm: FakeLLM) -> None:
    llm.reply = Reply(status=503, body={"error": "overloaded"})
    with pytest.raises(Retry, match="HTTP 503"):
        await summarize(DOC)


async def test_timeout_retries(llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_TIMEOUT", "0.3")
    llm.answer("too late")
    llm.reply.delay = 10
    started = time.monotonic()
    with pytest.raises(Retry, match=r"timed out after 0\.3s"):
        await summarize(DOC)
    assert time.monotonic() - started < 5


async def test_unreachable_endpoint_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    with QuietServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        port = closed.server_port  # bound, then closed on leaving: nobody listens there
    monkeypatch.setenv("LLM_BASE_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(Retry, match="unreachable"):
        await summarize(DOC)


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_refused_request_fails(llm: FakeLLM, status: int) -> None:
    llm.reply = Reply(status=status, body={"error": {"message": "invalid api key"}})
    with pytest.raises(Fail, match=rf"refused the request: HTTP {status}: .*invalid api key"):
        await summarize(DOC)


EMPTY_CHOICE = {"choices": [{"message": {"content": ""}}]}


@pytest.mark.parametrize("body", [b"not json", {"choices": []}, EMPTY_CHOICE])
async def test_answer_without_a_summary_fails(llm: FakeLLM, body: Any) -> None:
    llm.reply = Reply(body=body)
    with pytest.raises(Fail, match="answered without a summary"):
        await summarize(DOC)


async def test_bad_timeout_setting_fails(llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_TIMEOUT", "soon")
    with pytest.raises(Fail, match="LLM_TIMEOUT must be a positive number"):
        await summarize(DOC)


def test_retry_after_header_forms() -> None:
    assert retry_after_seconds("12") == 12
    assert retry_after_seconds("1.5") == 1.5
    assert retry_after_seconds("-3") == 0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("nan") is None
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 55 <= (retry_after_seconds(in_a_minute) or 0) <= 60


async def test_reasons_never_carry_the_endpoints_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key in the URL (user info, ?api-key=) stays out of Retry and Fail reasons, which
    become a job's `error` and log lines."""
    with QuietServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        port = closed.server_port
    monkeypatch.setenv("LLM_BASE_URL", f"http://user:SECRET1@127.0.0.1:{port}/v1?api-key=SECRET2")
    with pytest.raises(Retry) as retry:
        await summarize(DOC)
    assert "unreachable" in retry.value.reason
    assert "SECRET" not in retry.value.reason


async def test_refusal_reason_masks_the_key(llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_BASE_URL", llm.url.replace("://", "://user:SECRET1@") + "?key=SECRET2")
    llm.reply = Reply(status=401, body={"error": f"bad key for {llm.url}?api-key=SECRET3"})
    with pytest.raises(Fail) as fail:
        await summarize(DOC)
    assert "HTTP 401" in fail.value.reason
    assert "SECRET" not in fail.value.reason
