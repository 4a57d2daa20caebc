"""RESP framing (tests/resp.py): where one command, and one reply, ends in a byte stream.

Pure logic, no Redis: each reply type (RESP2 and RESP3) fed a byte at a time, commands as arrays
and inline, and what is not RESP refused.
"""

from __future__ import annotations

import asyncio

import pytest
from resp import Command, ProtocolError, read_command, read_reply

# ---------------------------------------------------------------------------------------------
# RESP framing (resp.py), fed a byte at a time
# ---------------------------------------------------------------------------------------------

REPLIES = [
    b"+OK\r\n",
    b"-ERR wrong\r\n",
    b":-42\r\n",
    b"$-1\r\n",
    b"$0\r\n\r\n",
    b"$4\r\na\r\nb\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"*3\r\n:1\r\n*2\r\n$1\r\nx\r\n*-1\r\n-ERR in an array\r\n",
    b"*1\r\n" * 5000 + b":1\r\n",  # deeper than Python's recursion limit
    # RESP3: null, boolean, double, big number, blob error, verbatim, map, set, push, attribute
    b"_\r\n",
    b"#t\r\n",
    b",3.14\r\n",
    b"(12345678901234567890\r\n",
    b"!5\r\nERR x\r\n",
    b"=7\r\ntxt:abc\r\n",
    b"%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n_\r\n",
    b"~2\r\n:1\r\n:2\r\n",
    b">2\r\n+message\r\n$1\r\nx\r\n",
    b"|1\r\n+ttl\r\n:5\r\n$1\r\nv\r\n",
]


async def feed_slowly(reader: asyncio.StreamReader, data: bytes) -> None:
    for index in range(len(data)):
        reader.feed_data(data[index : index + 1])
        await asyncio.sleep(0)  # let the parser run on each partial read


@pytest.mark.parametrize("reply", REPLIES, ids=lambda reply: repr(reply[:12]))
async def test_read_reply_frames_each_type_whole_and_no_further(reply: bytes) -> None:
    reader = asyncio.StreamReader()
    framed = asyncio.create_task(read_reply(reader))
    await feed_slowly(reader, reply + b"+next\r\n")
    assert await framed == reply
    assert await read_reply(reader) == b"+next\r\n"


async def test_read_reply_refuses_what_is_not_resp() -> None:
    for garbage in (b"?what\r\n", b"$x\r\n", b"$3\r\nabcde\r\n"):
        reader = asyncio.StreamReader()
        reader.feed_data(garbage)
        with pytest.raises(ProtocolError):
            await read_reply(reader)


async def test_read_command_frames_arrays_and_inline_commands_and_names_them() -> None:
    array = b"*4\r\n$6\r\nXGROUP\r\n$6\r\ncreate\r\n$1\r\ns\r\n$1\r\ng\r\n"
    reader = asyncio.StreamReader()
    feeding = asyncio.create_task(feed_slowly(reader, array + b"client setinfo lib-name x\r\n"))
    assert await read_command(reader) == Command(array, "XGROUP CREATE")
    assert await read_command(reader) == Command(b"client setinfo lib-name x\r\n", "CLIENT SETINFO")
    await feeding
    reader.feed_data(b"\r\n*0\r\nget k\n")
    reader.feed_eof()
    assert await read_command(reader) == Command(b"", "")
    assert await read_command(reader) == Command(b"", "")
    assert await read_command(reader) == Command(b"get k\n", "GET")
    assert await read_command(reader) is None  # the end, between commands


async def test_read_command_refuses_a_broken_command() -> None:
    for broken in (b"*1\r\n:1\r\n", b"*1\r\n$-1\r\n", b"*x\r\n"):
        reader = asyncio.StreamReader()
        reader.feed_data(broken)
        with pytest.raises(ProtocolError):
            await read_command(reader)
    reader = asyncio.StreamReader()
    reader.feed_data(b"*2\r\n$3\r\nGET\r\n")
    reader.feed_eof()
    with pytest.raises(asyncio.IncompleteReadError):
        await read_command(reader)
