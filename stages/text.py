"""Sentences, paragraphs and words, with character offsets, shared by the example stages.

One module, so that analyze's sentence count, summarize's candidate sentences and embed's
chunk boundaries agree on what a sentence is. Offsets always index the `text` field that
extract produced, so anything built on them can be traced back to the document.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from framework import Fail

WORD = re.compile(r"\w+(?:[.'\u2019-]\w+)*")

# A sentence ends at terminal punctuation (with any closing quotes or brackets) followed by
# whitespace, or at a blank line: extract puts one between headings, paragraphs and list items.
# Linear on any text: the lookbehind starts a match only at the first mark of a run, and the
# possessive `++`/`*+` never give marks back (giving back cannot help: the three character
# classes are disjoint). Without them, 40,000 dots before a letter took 22 s (quadratic).
_SENTENCE_END = re.compile(
    r"(?<![.!?\u2026])[.!?\u2026]++[\"'\u201d\u2019)\]]*+(?=\s|\Z)|\n[ \t]*+\n"
)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*+\n")

# Words that end with a period without ending a sentence; a lowercase word after the
# period catches most of the others ("approx. five").
# fmt: off
ABBREVIATIONS = frozenset((
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "cf", "fig",
    "vol", "al", "approx", "ca", "inc", "ltd", "co",
))

# English function words, left out of TextRank's word overlap. Text in other languages keeps
# its function words, which only blurs the ranking a little: they are shared by all sentences.
STOPWORDS = frozenset((
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any",
    "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both",
    "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few",
    "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers",
    "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its",
    "itself", "just", "let", "me", "more", "most", "my", "myself", "no", "nor", "not", "of",
    "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over",
    "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their",
    "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those",
    "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when",
    "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your",
    "yours", "yourself", "yourselves", "one", "two", "may", "might", "must", "shall", "us",
    "many", "much", "every",
))
# fmt: on


class Span(NamedTuple):
    """A stretch `text[start:end]` of the document, stripped of surrounding whitespace."""

    start: int
    end: int


def words(text: str) -> list[str]:
    """The words of `text`, lowercased, keeping inner marks whole: e.g, v2.1, don't, well-known."""
    return [word.lower() for word in WORD.findall(text)]


def content_words(text: str) -> list[str]:
    """The words that carry meaning: no stopwords, no bare numbers, no single letters."""
    return [w for w in words(text) if w not in STOPWORDS and len(w) > 1 and not w.isdigit()]


def sentence_spans(text: str) -> list[Span]:
    """Split `text` into sentences; each span is stripped and holds at least one word."""
    spans: list[Span] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if match.group().startswith("\n"):
            end = match.start()
        elif _is_false_end(text, match.start(), match.end()):
            continue
        else:
            end = match.end()
        _add_span(spans, text, start, end)
        start = match.end()
    _add_span(spans, text, start, len(text))
    return spans


def sentences(text: str) -> list[str]:
    """The sentences of `text`, as strings."""
    return [text[span.start : span.end] for span in sentence_spans(text)]


def paragraph_count(text: str) -> int:
    """Blocks separated by blank lines that hold at least one word."""
    return sum(1 for block in _PARAGRAPH_BREAK.split(text) if WORD.search(block))


def starts_paragraph(text: str, previous_end: int, start: int) -> bool:
    """Whether a blank line separates a span starting at `start` from the one before it."""
    return _PARAGRAPH_BREAK.search(text, previous_end, start) is not None


def _is_false_end(text: str, punct_start: int, punct_end: int) -> bool:
    """A period after an abbreviation or an initial, or one followed by a lowercase word."""
    if text[punct_start] != ".":
        return False
    word_start = punct_start
    while word_start > 0 and (text[word_start - 1].isalpha() or text[word_start - 1] == "."):
        word_start -= 1
    before = text[word_start:punct_start].lower()
    if before in ABBREVIATIONS or (len(before) == 1 and before.isalpha()):
        return True
    following = text[punct_end : punct_end + 3].lstrip()
    return bool(following) and following[0].islower()


def _add_span(spans: list[Span], text: str, start: int, end: int) -> None:
    """Append `text[start:end]` without its surrounding whitespace, if it holds a word."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if WORD.search(text, start, end):
        spans.append(Span(start, end))


def require_text(doc: dict[str, Any], stage: str) -> str:
    """The document's `text`; without it the stages before this one were skipped or broken."""
    text = doc.get("text")
    if not isinstance(text, str):
        name = doc.get("filename") or "document"
        raise Fail(f"{name}: {stage} needs a 'text' field (run extract first)")
    return text
