"""RESP framing for the fault proxy: where one command, and one reply, ends in a byte stream.

Separate from the proxy because framing is a concern of its own: the proxy decides what to do
with a command, this module only finds its bounds (and its name). It never decodes values:
commands and replies are forwarded as the exact bytes received, so the proxy cannot change what
client and server say to each other, only whether it arrives. Partial reads are the stream
reader's business (`readuntil`, `readexactly` wait for the rest); aggregates are walked with a
count of elements still due, not recursion, so nesting depth is no limit.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

CRLF = b"\r\n"

# Replies whose header line is the whole reply: simple string, error, integer, and RESP3's
# null, boolean, double and big number.
_LINE_TYPES = frozenset(b"+-:_#,(")
# A length, then that many bytes and CRLF (-1: nil): bulk string, RESP3 blob error, verbatim.
_BLOB_TYPES = frozenset(b"$!=")
# A count of elements that follow: array, RESP3 set and push.
_ARRAY_TYPES = frozenset(b"*~>")
# A count of key/value pairs that follow: RESP3 map and attribute (an attribute precedes the
# reply it annotates, so it adds that reply to the elements due as well).
_MAP, _ATTRIBUTE = ord("%"), ord("|")

# Commands whose second word says what they do: counted as "XGROUP CREATE", not "XGROUP".
CONTAINER_COMMANDS = frozenset(
    {"ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "FUNCTION", "MEMORY", "OBJECT", "SCRIPT",
     "XGROUP", "XINFO"}
)  # fmt: skip


class ProtocolError(Exception):
    """The bytes are not RESP we can frame (or a streamed RESP3 string, which we do not)."""


@dataclass(frozen=True)
class Command:
    """One command as the client sent it: `raw` to forward, `name` to count and match faults.

    An empty `raw` is a command Redis ignores without a reply (an empty inline line, `*0`).
    """

    raw: bytes
    name: str


def command_name(args: list[bytes]) -> str:
    """'SET', 'EVALSHA', 'XGROUP CREATE', 'CLIENT SETINFO': upper case, subcommand if any."""
    if not args:
        return ""
    name = args[0].decode("latin-1").upper()
    if name in CONTAINER_COMMANDS and len(args) > 1:
        name += " " + args[1].decode("latin-1").upper()
    return name


async def read_command(reader: asyncio.StreamReader) -> Command | None:
    """The next command from a client, or None at a clean end of stream (between commands).

    Accepts RESP arrays of bulk strings and inline commands, as Redis does.

    Raises:
        asyncio.IncompleteReadError: the stream ended inside a command.
        ProtocolError: anything else that is not a command.
    """
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            return None
        raise
    if not line.startswith(b"*"):
        args = line.split()  # inline: Redis splits on blanks too (quotes aside)
        return Command(line if args else b"", command_name(args[:2]))
    count = _length(line)
    if count <= 0:
        return Command(b"", "")
    parts = [line]
    head: list[bytes] = []  # the first two arguments: enough to name the command
    for _ in range(count):
        header = await reader.readuntil(CRLF)
        if not header.startswith(b"$"):
            raise ProtocolError(f"expected a bulk string in a command, got {header[:20]!r}")
        size = _length(header)
        if size < 0:
            raise ProtocolError(f"negative bulk length in a command: {header[:20]!r}")
        body = await _read_body(reader, size)
        parts += (header, body)
        if len(head) < 2:
            head.append(body[:-2])
    return Command(b"".join(parts), command_name(head))


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    """The bytes of the next complete reply from Redis, nested aggregates included.

    Raises:
        asyncio.IncompleteReadError: the stream ended before the reply did.
        ProtocolError: a type byte we do not know, or a malformed length.
    """
    parts: list[bytes] = []
    due = 1  # replies (elements) still to read
    while due:
        line = await reader.readuntil(CRLF)
        parts.append(line)
        due -= 1
        kind = line[0]
        if kind in _LINE_TYPES:
            continue
        size = _length(line)
        if kind in _BLOB_TYPES:
            if size >= 0:
                parts.append(await _read_body(reader, size))
        elif kind in _ARRAY_TYPES:
            due += max(size, 0)
        elif kind == _MAP:
            due += 2 * max(size, 0)
        elif kind == _ATTRIBUTE:
            due += 2 * max(size, 0) + 1
        else:
            raise ProtocolError(f"unknown reply type {line[:20]!r}")
    return b"".join(parts)


def _length(line: bytes) -> int:
    """The number after the type byte of a header line that ends in CRLF."""
    if not line.endswith(CRLF):
        raise ProtocolError(f"header without CRLF: {line[:20]!r}")
    try:
        return int(line[1:-2])
    except ValueError:
        raise ProtocolError(f"bad length in {line[:20]!r}") from None


async def _read_body(reader: asyncio.StreamReader, size: int) -> bytes:
    """`size` bytes and the CRLF after them, returned together."""
    body = await reader.readexactly(size + 2)
    if not body.endswith(CRLF):
        raise ProtocolError("bulk string not followed by CRLF")
    return body
