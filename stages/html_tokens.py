"""Split HTML into start tags, end tags and text in one pass, in time linear in the page.

The standard library's html.parser is quadratic on some broken markup on Python 3.11 (CPython
fixed it later): 32,000 repeats of `<a b='` took 80 s, 32,000 `<!--` took 6 s, because an
unfinished construct is searched to the end of the page and then retried from the next
character. Here every search either ends its construct or, when the construct runs to the end
of the page (a comment, tag or quote left open), ends the page, as browsers do; so each
character is looked at a bounded number of times. Patterns use possessive quantifiers, which
never give back what they matched, so no pattern backtracks.
"""

from __future__ import annotations

import html
import re
from collections.abc import Generator, Iterator
from typing import NamedTuple

# Their content is text up to the matching end tag, not markup (the HTML standard's raw text
# and escapable raw text elements).
RAW_TEXT = frozenset({"script", "style", "xmp", "iframe", "noembed", "noframes"})
ESCAPABLE_RAW_TEXT = frozenset({"title", "textarea"})

_TAG = re.compile(
    r"""(?P<name>[A-Za-z][^\s/>]*+)(?P<attrs>(?:[^>"'=]++|=\s*+"[^"]*+"|=\s*+'[^']*+'|=|["'])*+)>"""
)
_ATTRIBUTE = re.compile(
    r"""(?P<name>[^\s/>"'=][^\s/>=]*+)(?:\s*+=\s*+(?:"(?P<dq>[^"]*+)"|'(?P<sq>[^']*+)'|(?P<bare>[^\s>]*+)))?+"""
)
# html.unescape raises on a decimal reference past Python's 4,300-digit integer limit.
_LONG_DECIMAL_REFERENCE = re.compile(r"&#([0-9]{8,}+)")
_PAST_UNICODE = "&#1114112"  # one past U+10FFFF: html.unescape makes it U+FFFD
_CLOSERS: dict[str, re.Pattern[str]] = {}


class StartTag(NamedTuple):
    name: str  # lowercase
    attrs: dict[str, str]  # lowercase names; the first of repeated attributes wins
    self_closing: bool


class EndTag(NamedTuple):
    name: str


class Text(NamedTuple):
    data: str  # character references replaced
    raw: bool = False  # the source of a script or style, not prose


Token = StartTag | EndTag | Text


def tokens(markup: str) -> Iterator[Token]:
    """The page's tokens in order; comments, doctypes and processing instructions are dropped."""
    position, size = 0, len(markup)
    while position < size:
        opening = markup.find("<", position)
        if opening < 0:
            opening = size
        if opening > position:
            yield Text(unescape(markup[position:opening]))
        if opening < size:
            position = yield from _markup(markup, opening)
        else:
            position = size


def unescape(text: str) -> str:
    """Character references replaced, as html.unescape does, but safe for any length."""
    if "&" not in text:
        return text
    return html.unescape(_LONG_DECIMAL_REFERENCE.sub(_shorten_reference, text))


def _shorten_reference(match: re.Match[str]) -> str:
    """`&#000065` as `&#65`; a number past U+10FFFF, however long, as one just past it."""
    digits = match[1].lstrip("0") or "0"
    return _PAST_UNICODE if len(digits) > 7 else f"&#{digits}"


def _markup(markup: str, at: int) -> Generator[Token, None, int]:
    """The tokens of the markup starting with `<` at `at`; returns where the next one starts."""
    follower = markup[at + 1 : at + 2]
    if markup.startswith("<!--", at):
        return _after(markup, "-->", at + 2)  # "<!-->" is a whole (empty) comment, as in browsers
    if follower in ("!", "?") or (follower == "/" and not _is_letter(markup[at + 2 : at + 3])):
        return _after(markup, ">", at + 2)  # doctype, CDATA, `</ x>`: bogus comments up to `>`
    if follower == "/":
        match = _TAG.match(markup, at + 2)
        if match is None:
            return len(markup)  # a tag left open swallows the rest of the page
        yield EndTag(match["name"].lower())
        return match.end()
    if _is_letter(follower):
        return (yield from _start_tag(markup, at))
    yield Text("<")
    return at + 1


def _start_tag(markup: str, at: int) -> Generator[Token, None, int]:
    """A start tag and, for script, style, title and their kind, its content up to the end tag."""
    match = _TAG.match(markup, at + 1)
    if match is None:
        return len(markup)
    name = match["name"].lower()
    attributes = match["attrs"]
    self_closing = attributes.endswith("/")
    yield StartTag(name, _attributes(attributes), self_closing)
    end = match.end()
    # Like html.parser, `<script/>` is taken as empty: a page written so still reads.
    if self_closing or (name not in RAW_TEXT and name not in ESCAPABLE_RAW_TEXT):
        return end
    closer = _CLOSERS.get(name) or _CLOSERS.setdefault(
        name, re.compile(rf"</{re.escape(name)}(?=[\s/>])", re.IGNORECASE)
    )
    found = closer.search(markup, end)
    stop = found.start() if found else len(markup)
    if stop > end:
        content = markup[end:stop]
        yield Text(content, raw=True) if name in RAW_TEXT else Text(unescape(content))
    return stop


def _attributes(text: str) -> dict[str, str]:
    """The attributes of a tag, values with character references replaced."""
    found: dict[str, str] = {}
    for match in _ATTRIBUTE.finditer(text):
        value = match["dq"] if match["dq"] is not None else match["sq"]
        if value is None:
            value = match["bare"] or ""
        found.setdefault(match["name"].lower(), unescape(value))
    return found


def _after(markup: str, terminator: str, start: int) -> int:
    """Just past the next `terminator`, or the end of the page when there is none."""
    found = markup.find(terminator, start)
    return len(markup) if found < 0 else found + len(terminator)


def _is_letter(char: str) -> bool:
    return char.isascii() and char.isalpha()
