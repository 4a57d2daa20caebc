"""extract: every shipped document type, every way to name a document, and every refusal.

No Redis: stage functions are plain functions. Refusals must be `Fail` (dead-letter now, a
retry cannot help) with a reason that names the document. Paths are read only inside
PIPELINE_FILES_ROOT, which these tests set to the shipped documents unless they say otherwise.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfWriter

from framework import Fail
from stages.extract import extract

DOCUMENTS = Path(__file__).resolve().parent.parent / "examples" / "documents"


def minimal_pdf(lines: list[str]) -> bytes:
    """A one-page PDF with a text layer, written by hand: no PDF library needed to make it."""
    shown = " ".join(f"({line}) '" for line in lines)
    stream = f"BT /F1 12 Tf 72 720 Td 16 TL {shown} ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def blank_pdf() -> bytes:
    """A PDF whose only page has no text layer, like a scan."""
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(autouse=True)
def documents_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_FILES_ROOT", str(DOCUMENTS))


@pytest.mark.parametrize(
    ("filename", "kind", "title", "phrase"),
    [
        ("sourdough.txt", "text", "Sourdough Baking at Home", "wild yeasts"),
        ("the-lighthouse-keeper.txt", "text", "The Lighthouse Keeper", "Gannet Rock"),
        ("honigbienen.txt", "text", "Wie Honigbienen zusammenarbeiten", "Schwänzeltanz"),
        ("redis-streams.md", "markdown", "Redis Streams in Practice", "pending entries list"),
        ("photosynthesis.html", "html", "How Photosynthesis Works", "Calvin cycle"),
        ("printing-press.pdf", "pdf", "The Printing Press and the Spread of Ideas", "Gutenberg"),
    ],
)
def test_shipped_documents(filename: str, kind: str, title: str, phrase: str) -> None:
    out = extract({"path": str(DOCUMENTS / filename)})
    assert out["filename"] == filename
    assert out["type"] == kind
    assert out["title"] == title
    assert phrase in out["text"]
    assert out["chars"] == len(out["text"])
    assert 300 <= len(out["text"].split()) <= 1500
    assert out["metadata"]["bytes"] == (DOCUMENTS / filename).stat().st_size


def test_html_boilerplate_is_removed() -> None:
    out = extract({"path": str(DOCUMENTS / "photosynthesis.html")})
    text = out["text"]
    for boilerplate in (
        "Subscribe to our newsletter",  # nav
        "Example Science Notes",  # header and footer
        "analytics",  # script
        "font-family",  # style
        "Related articles",  # aside
        "Privacy policy",  # footer
    ):
        assert boilerplate not in text
    assert "The light-dependent reactions\n\nThe first stage" in text  # blocks stay apart
    assert "inside chloroplasts, small green organelles" in text  # inline markup joins
    assert out["metadata"]["lang"] == "en"
    assert out["metadata"]["description"].startswith("An introduction to photosynthesis")


def test_markdown_markup_is_stripped_and_front_matter_kept() -> None:
    out = extract({"path": str(DOCUMENTS / "redis-streams.md")})
    text = out["text"]
    for markup in ("**", "`", "# ", "---", "](", "1. Read"):
        assert markup not in text
    assert text.startswith("Redis Streams in Practice\n\nA Redis stream is an append-only log")
    assert "Read new messages with XREADGROUP" in text  # list items and code survive
    assert out["metadata"]["tags"] == ["redis", "messaging", "queues"]
    assert out["metadata"]["date"] == "2025-01-15"


def test_pdf_metadata_and_paragraphs() -> None:
    out = extract({"path": str(DOCUMENTS / "printing-press.pdf")})
    assert out["metadata"]["pages"] == 2
    assert out["metadata"]["author"] == "docpipe examples"
    assert "\n\nBefore Gutenberg\n\nFor most of history" in out["text"]
    assert "common rather than precious." in out["text"]  # a paragraph across a page break


def test_handmade_pdf_from_base64_content() -> None:
    pdf = minimal_pdf(["Tiny PDFs have text layers too.", "This is the second line."])
    out = extract({"content": b64(pdf), "filename": "tiny.pdf"})
    assert out["type"] == "pdf"
    assert "Tiny PDFs have text layers too." in out["text"]
    assert "second line" in out["text"]


def test_pdf_is_recognised_by_its_bytes_without_a_filename() -> None:
    out = extract({"content": b64((DOCUMENTS / "printing-press.pdf").read_bytes())})
    assert out["type"] == "pdf"
    assert out["filename"] is None


def test_content_gives_the_same_text_as_path() -> None:
    path = DOCUMENTS / "redis-streams.md"
    by_content = extract({"content": b64(path.read_bytes()), "filename": "redis-streams.md"})
    assert by_content["text"] == extract({"path": str(path)})["text"]


def test_relative_path_is_relative_to_the_first_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(
        "PIPELINE_FILES_ROOT", os.pathsep.join([str(DOCUMENTS.parent), str(tmp_path)])
    )
    monkeypatch.chdir(tmp_path)  # the working directory plays no part
    out = extract({"path": "documents/sourdough.txt"})
    assert out["title"] == "Sourdough Baking at Home"
    assert out["filename"] == "sourdough.txt"
    with pytest.raises(Fail) as failure:
        extract({"path": "documents/nope.txt"})
    assert failure.value.reason == "documents/nope.txt: file not found"  # no host folder named


def test_paths_need_a_root_but_content_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPELINE_FILES_ROOT")
    path = DOCUMENTS / "sourdough.txt"
    for doc in ({"path": str(path)}, {"uri": path.as_uri()}):
        with pytest.raises(Fail, match="reading local files is off on this worker: set PIPELI"):
            extract(doc)
    by_content = extract({"content": b64(path.read_bytes()), "filename": "sourdough.txt"})
    assert by_content["title"] == "Sourdough Baking at Home"
    assert extract({"text": path.read_text()})["title"] == "Sourdough Baking at Home"


def test_file_uri() -> None:
    out = extract({"uri": (DOCUMENTS / "the-lighthouse-keeper.txt").as_uri()})
    assert out["filename"] == "the-lighthouse-keeper.txt"
    assert "Tobias Wren" in out["text"]


def test_inline_text_is_sniffed_as_html() -> None:
    page = (
        "<!doctype html><html><head><title>Inline page</title></head>"
        '<body><nav>Menu</nav><div role="navigation">Skip to content</div>'
        "<p>The body says something.</p></body></html>"
    )
    out = extract({"text": page})
    assert (out["type"], out["title"], out["text"]) == (
        "html",
        "Inline page",
        "The body says something.",
    )


def test_inline_markdown_by_declared_type() -> None:
    out = extract({"text": "# Notes\n\nSome *emphasis* here.", "type": "markdown"})
    assert (out["title"], out["text"]) == ("Notes", "Notes\n\nSome emphasis here.")


def test_output_drops_content_and_passes_other_fields_on() -> None:
    doc = {
        "content": b64(b"Just a line of text."),
        "filename": "note.txt",
        "source": "unit-test",
        "metadata": {"owner": "ops"},
    }
    out = extract(doc)
    assert "content" not in out
    assert out["source"] == "unit-test"
    assert out["metadata"] == {"bytes": 20, "owner": "ops"}
    assert out["text"] == "Just a line of text."


def test_utf16_text_with_bom() -> None:
    data = "Grüße aus dem Text.".encode("utf-16")
    assert extract({"content": b64(data), "filename": "gruss.txt"})["text"] == "Grüße aus dem Text."


PDF_BYTES = b"%PDF-1.7\nthis is not a pdf"
REFUSALS = {
    "corrupt pdf": ({"content": b64(PDF_BYTES), "filename": "broken.pdf"}, "broken.pdf: corrupt"),
    "pdf header only": ({"content": b64(b"%PDF-"), "filename": "stub.pdf"}, "stub.pdf: corrupt"),
    "blank text": ({"text": "  \n\n ", "filename": "blank.txt"}, "blank.txt: no text after"),
    "only boilerplate": (
        {"text": "<html><body><nav>Home</nav></body></html>", "filename": "nav.html"},
        "nav.html: no text after extraction (empty document, or only boilerplate",
    ),
    "scanned pdf": (
        {"content": b64(blank_pdf()), "filename": "scan.pdf"},
        "scan.pdf: no text after extraction (empty document, or a scanned PDF",
    ),
    "unsupported extension": (
        {"content": b64(b"PK\x03\x04"), "filename": "report.docx"},
        "report.docx: unsupported file type '.docx'",
    ),
    "binary without name": (
        {"content": b64(b"\x89PNG\r\n\x1a\n\x00\x00")},
        "inline content: unsupported binary content",
    ),
    "unsupported declared type": ({"text": "hello", "type": "rtf"}, "unsupported type 'rtf'"),
    "bad base64": ({"content": "not base64!", "filename": "x.txt"}, "x.txt: content is not valid"),
    "path outside the root": (
        {"path": "/nonexistent/missing.txt"},
        "/nonexistent/missing.txt: outside the folders this worker may read",
    ),
    "missing path": ({"path": str(DOCUMENTS / "missing.txt")}, "missing.txt: file not found"),
    "dot dot": ({"path": "../README.md"}, "../README.md: a path may not contain '..'"),
    "uri outside the root": (
        {"uri": "file:///etc/passwd"},
        "file:///etc/passwd: outside the folders this worker may read",
    ),
    "http uri": (
        {"uri": "https://example.com/doc.html"},
        "https://example.com/doc.html: unsupported URI scheme (https://)",
    ),
    "remote file uri": ({"uri": "file://server/share/a.txt"}, "file URI on host 'server'"),
    "no source": ({"filename": "orphan.txt"}, "none of text, content, path or uri"),
    "not an object": (
        [1, 2],
        "a document is a JSON object (text, content or path), got a JSON list",
    ),
}


@pytest.mark.parametrize(("doc", "reason"), REFUSALS.values(), ids=REFUSALS.keys())
def test_refusals_fail_with_a_reason_naming_the_document(doc: Any, reason: str) -> None:
    """`doc` is any JSON, as a submit may send it: "not an object" is a list."""
    with pytest.raises(Fail) as failure:
        extract(doc)
    assert reason in failure.value.reason


def test_truncated_shipped_pdf_fails() -> None:
    head = (DOCUMENTS / "printing-press.pdf").read_bytes()[:400]
    with pytest.raises(Fail, match=r"cut\.pdf: corrupt or unreadable PDF"):
        extract({"content": b64(head), "filename": "cut.pdf"})


def test_empty_file_and_directory_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_FILES_ROOT", str(tmp_path))
    empty = tmp_path / "empty.md"
    empty.write_bytes(b"")
    with pytest.raises(Fail, match=r"empty\.md: no text after extraction"):
        extract({"path": str(empty)})
    with pytest.raises(Fail, match="is a directory"):
        extract({"path": str(tmp_path)})
