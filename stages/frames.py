"""Length-prefixed frames between extract and its reader processes: a JSON header, then bytes.

A frame is two big-endian 32-bit lengths (header, body), a JSON object and raw bytes. Nothing
is pickled: the reader process reads hostile documents, so what it sends back is data that
the worker parses and checks, never objects it would rebuild.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO

import orjson

LENGTHS = struct.Struct(">II")

Frame = tuple[dict[str, Any], bytes]


class FrameError(ValueError):
    """Bytes that are not a frame: the other side is broken, not the document."""


def encode_frame(header: dict[str, Any], body: bytes = b"") -> bytes:
    """One frame; strings that are not valid Unicode (lone surrogates) are replaced."""
    try:
        encoded = orjson.dumps(header)
    except orjson.JSONEncodeError:
        encoded = orjson.dumps(_scrubbed(header))
    return LENGTHS.pack(len(encoded), len(body)) + encoded + body


def frame_size(buffer: bytes | bytearray) -> int | None:
    """The size of the frame at the start of `buffer`, once its lengths have arrived."""
    if len(buffer) < LENGTHS.size:
        return None
    header, body = LENGTHS.unpack_from(buffer)
    return int(LENGTHS.size + header + body)


def decode_frame(data: bytes | bytearray) -> Frame:
    """The header and body of one whole frame."""
    header_size, body_size = LENGTHS.unpack_from(data)
    start = LENGTHS.size
    try:
        header = orjson.loads(data[start : start + header_size])
    except orjson.JSONDecodeError as error:
        raise FrameError(f"frame header is not JSON: {error}") from None
    if not isinstance(header, dict):
        raise FrameError("frame header is not a JSON object")
    return header, bytes(data[start + header_size : start + header_size + body_size])


def read_frame(stream: BinaryIO) -> Frame | None:
    """The next frame from a blocking stream; None at its end (the other side closed it)."""
    lengths = stream.read(LENGTHS.size)
    if len(lengths) < LENGTHS.size:
        return None
    header_size, body_size = LENGTHS.unpack(lengths)
    rest = stream.read(header_size + body_size)
    if len(rest) < header_size + body_size:
        return None
    return decode_frame(lengths + rest)


def write_frame(stream: BinaryIO, header: dict[str, Any], body: bytes = b"") -> None:
    stream.write(encode_frame(header, body))
    stream.flush()


def _scrubbed(value: Any) -> Any:
    """`value` with every string made valid UTF-8 (a PDF's text can hold lone surrogates)."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_scrubbed(key): _scrubbed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrubbed(item) for item in value]
    return value
