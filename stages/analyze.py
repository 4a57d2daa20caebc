"""analyze: the language, the size and the key phrases of the extracted text.

Language identification uses py3langid (a naive Bayes model shipped inside the wheel, so
nothing is downloaded at run time); key phrases use YAKE, which scores candidate phrases by
statistics of the document itself and needs no corpus or model.
"""

from __future__ import annotations

import functools
from typing import Any

import yake
from py3langid.langid import MODEL_FILE, LanguageIdentifier

from stages.text import paragraph_count, require_text, sentence_spans, sentences, words

KEYWORDS = 10
KEYPHRASE_MAX_WORDS = 3
# Both costs grow with the text, while the opening of a long document already shows its
# language and topics; these bounds keep a 50 MB book from stalling the stage.
LANGUAGE_SAMPLE_CHARS = 20_000
KEYWORD_SAMPLE_CHARS = 100_000


def analyze(doc: dict[str, Any]) -> dict[str, Any]:
    """Add `language`, `language_confidence`, `words`, `sentences`, `paragraphs`, `keywords`."""
    text = require_text(doc, "analyze")
    language, confidence = detect_language(text)
    return {
        **doc,
        "language": language,
        "language_confidence": confidence,
        "words": len(words(text)),
        "sentences": len(sentence_spans(text)),
        "paragraphs": paragraph_count(text),
        "keywords": keywords(text, language),
    }


def detect_language(text: str) -> tuple[str, float]:
    """ISO 639-1 code and a probability; `und` (undetermined) when there are no words."""
    if not words(text):
        return "und", 0.0
    language, probability = _identifier().classify(text[:LANGUAGE_SAMPLE_CHARS])
    return str(language), round(float(probability), 3)


def keywords(text: str, language: str) -> list[str]:
    """The top key phrases, best first (YAKE: a lower score is a better phrase).

    YAKE finds sentence ends by punctuation alone, so headings and list items, which end at
    a blank line instead, get a period: otherwise phrases would run from a heading into the
    paragraph below it ("Home Sourdough bread"). For a language without a stopword list
    (and for `und`), YAKE uses its language-neutral one.
    """
    marked = "\n".join(
        sentence if sentence[-1] in ".!?:;" else sentence + "."
        for sentence in sentences(text[:KEYWORD_SAMPLE_CHARS])
    )
    # A new extractor per call costs a fraction of a millisecond, and a shared one is not
    # safe across a worker's threads: YAKE keeps (and clears) a cache on the instance.
    extractor = yake.KeywordExtractor(lan=language, n=KEYPHRASE_MAX_WORDS, top=KEYWORDS)
    return [phrase for phrase, _score in extractor.extract_keywords(marked)]


@functools.cache
def _identifier() -> LanguageIdentifier:
    """Loading the model takes most of a second: once per process."""
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
