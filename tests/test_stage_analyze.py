"""analyze: language, counts and key phrases, on the shipped documents and small known texts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from document_jobs import document_job

from framework import Fail
from stages.analyze import analyze
from stages.extract import extract
from stages.text import sentences

DOCUMENTS = Path(__file__).resolve().parent.parent / "examples" / "documents"

KNOWN = (
    "Dr. Smith reads the report, e.g. the annual one. Is it finished? Yes! "
    "It ships in v2.1 on Friday.\n\nNext steps\n\nWe'll publish it."
)


def analyzed(filename: str) -> dict[str, Any]:
    return analyze(extract(document_job(DOCUMENTS / filename)))


def test_counts_of_a_known_text() -> None:
    out = analyze({"text": KNOWN})
    assert sentences(KNOWN) == [
        "Dr. Smith reads the report, e.g. the annual one.",
        "Is it finished?",
        "Yes!",
        "It ships in v2.1 on Friday.",
        "Next steps",
        "We'll publish it.",
    ]
    assert (out["words"], out["sentences"], out["paragraphs"]) == (24, 6, 3)


@pytest.mark.parametrize(
    ("filename", "language"),
    [
        ("sourdough.txt", "en"),
        ("redis-streams.md", "en"),
        ("photosynthesis.html", "en"),
        ("printing-press.pdf", "en"),
        ("honigbienen.txt", "de"),
    ],
)
def test_language_of_shipped_documents(filename: str, language: str) -> None:
    out = analyzed(filename)
    assert out["language"] == language
    assert out["language_confidence"] > 0.9


def test_language_of_a_french_sentence() -> None:
    text = "Le boulanger prépare le pain chaque matin avant le lever du soleil."
    assert analyze({"text": text})["language"] == "fr"


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("sourdough.txt", {"flour", "dough", "starter"}),
        ("redis-streams.md", {"stream", "redis", "consumer"}),
        ("printing-press.pdf", {"gutenberg", "movable type"}),
        ("photosynthesis.html", {"carbon dioxide", "oxygen"}),
    ],
)
def test_keywords_name_the_topic(filename: str, expected: set[str]) -> None:
    keywords = analyzed(filename)["keywords"]
    assert len(keywords) == 10
    assert expected <= {keyword.lower() for keyword in keywords}


def test_keyphrases_do_not_run_across_headings() -> None:
    keywords = analyzed("sourdough.txt")["keywords"]
    assert not any("Home Sourdough" in keyword for keyword in keywords)


def test_fields_pass_on() -> None:
    doc = extract(document_job(DOCUMENTS / "redis-streams.md"))
    out = analyze(doc)
    assert {key: out[key] for key in doc} == doc
    assert {"language", "language_confidence", "words", "sentences", "keywords"} <= out.keys()


def test_empty_text_is_undetermined() -> None:
    out = analyze({"text": ""})
    assert (out["language"], out["words"], out["sentences"], out["keywords"]) == ("und", 0, 0, [])


def test_missing_text_fails() -> None:
    with pytest.raises(Fail, match=r"report\.txt: analyze needs a 'text' field"):
        analyze({"filename": "report.txt"})
