"""Stream entries <-> deliveries: the wire format (docs/design.md), the bare-entry rule, and the
helpers every reader of streams shares (entry ids, ranges, replies as text).

An entry carries `job`, `data` (JSON) and an optional `trace`. An entry with no `data` field
was written by plain Redis Streams code: its fields are the payload and its id is the job id.
Between stages an entry also carries `timings` (each stage it passed: "stage,at_ms,ms;...",
written to the job hash when the job ends) and, once its job has more than one message in
flight, `fanout` ("1"). Retries carry two more fields: `for` (the one stage that should run
it) and `attempt`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

import orjson

from framework.errors import PayloadError, PayloadTooLarge

Fields = dict[bytes, bytes]
Entries = list[tuple[bytes, Fields]]
Entry = tuple[str, Fields]

ENTRY_ID = re.compile(r"^\d+-\d+$")
MAX_SEQUENCE = 2**64 - 1  # the largest sequence number of an entry id (`MS-SEQ`)


def text(value: bytes | str) -> str:
    """A reply's bytes as text (our clients never decode replies themselves)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def entries(reply: Any) -> list[Entry]:
    """An XRANGE/XREVRANGE reply as (id, fields) pairs; a deleted entry's fields are empty."""
    return [(text(entry), cast(Fields, fields or {})) for entry, fields in reply or ()]


def next_id(entry_id: str) -> str:
    """The smallest stream id after `entry_id` (exclusive ranges need 6.2; we serve 6.0 too)."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


def previous_id(entry_id: str) -> str:
    """The largest stream id before `entry_id`, for paging newest-first without `(`."""
    ms, _, seq = entry_id.partition("-")
    if int(seq or 0) > 0:
        return f"{ms}-{int(seq) - 1}"
    return f"{int(ms) - 1}-{MAX_SEQUENCE}" if int(ms) > 0 else "0-0"


# redis-py declares replies for every protocol and decoding mode; our clients speak RESP2 and
# never set `decode_responses`, so these two shapes, bytes throughout, are all we ever get.
def range_reply(reply: object) -> Entries:
    """An XRANGE/XREVRANGE reply as (id, fields) pairs."""
    return cast(Entries, reply or [])


def read_reply(reply: object) -> list[tuple[bytes, Entries]]:
    """An XREAD/XREADGROUP reply as (stream, entries) pairs.

    Fields are nil only when XREADGROUP re-reads pending history past a deleted entry; the
    engine reads with `>` (and XREAD), so they are always present.
    """
    return cast(list[tuple[bytes, Entries]], reply or [])


def raw_read_entries(reply: object) -> list[tuple[bytes, list[bytes]]]:
    """Entries of an XREADGROUP reply as hiredis parsed it (`channels.Channel`):
    a list of [stream, entries] under RESP2, which our connections speak (a map of stream to
    entries under RESP3, for a client configured otherwise); each
    entry is [id, [field, value, ...]] (a list, unpacked like the pair it is typed as).
    Skipping redis-py's per-entry dicts is a hot-path win.
    """
    if not reply:
        return []
    streams = (
        reply.values() if isinstance(reply, dict) else (pair[1] for pair in cast(list[Any], reply))
    )
    return [entry for entries in streams for entry in entries if entry[1] is not None]


def flat_fields(flat: list[bytes]) -> Fields:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def decode_flat_entry(message_id: bytes, flat: list[bytes]) -> Delivery:
    """`decode_entry` for an entry as XREADGROUP sends it, [field, value, ...]: the common
    fresh message (job and data, in the order the engine writes them) without a dict."""
    length = len(flat)
    if length == 6 and flat[0] == b"job" and flat[2] == b"data" and flat[4] == b"timings":
        try:  # between stages
            return Delivery(
                message_id.decode(), flat[1].decode(), flat[3], "", 1, 1, timings=flat[5].decode()
            )
        except UnicodeDecodeError:
            pass  # decode_entry says what is wrong
    if length == 4 and flat[0] == b"job" and flat[2] == b"data":
        try:  # as submitted
            return Delivery(message_id.decode(), flat[1].decode(), flat[3], "", 1, 1)
        except UnicodeDecodeError:
            pass
    if length == 2 and flat[0] == b"data":  # `XADD input * data ...`: its own job
        entry_id = message_id.decode()
        return Delivery(entry_id, entry_id, flat[1], "", 1, 1)
    return decode_entry(message_id, flat_fields(flat))


@dataclass(slots=True)
class Delivery:
    """One message handed to this worker: what was read, and which run of it this is."""

    message_id: str
    job: str
    data: bytes
    trace: str
    attempt: int
    deliveries: int = 1  # of this entry to this group; a handed-back message gives one back
    target: str | None = None  # set on retries: the only stage that should run it
    # Reclaimed from a silent worker: Redis counts this delivery only once its run starts
    # (reclaim.lua sets the count back; the worker sets it forward as it starts the call).
    claimed: bool = False
    problem: str | None = None  # an entry that cannot be read: it goes to the dead letters
    timings: str = ""  # the stages it passed: "stage,at_ms,ms;..."
    fanout: bool = False  # its job has (or had) more than one message in flight


def decode_entry(
    message_id: bytes | str, fields: Fields, deliveries: int = 1, *, claimed: bool = False
) -> Delivery:
    """Read a stream entry; `deliveries` is how often the group has handed it out.

    Any client can write to a stream: an entry whose fields are not text, or whose `attempt`
    is not a number, becomes a delivery that is dead-lettered with the reason, never an
    exception that would stop the worker's reader on it (and on everything behind it).
    """
    entry_id = message_id.decode() if type(message_id) is bytes else str(message_id)
    try:
        delivery = _decode(entry_id, fields, deliveries)
    except (UnicodeDecodeError, ValueError) as error:
        delivery = _unreadable(entry_id, fields, deliveries, error)
    if claimed:
        delivery.claimed = True
    return delivery


def _decode(entry_id: str, fields: Fields, deliveries: int) -> Delivery:
    data = fields.get(b"data")
    if data is None:
        bare = {text(key): text(value) for key, value in fields.items()}
        return Delivery(entry_id, entry_id, orjson.dumps(bare), "", deliveries, deliveries)
    job = fields.get(b"job")
    if len(fields) == 2 and job is not None:  # job and data only: a fresh message
        return Delivery(entry_id, job.decode(), data, "", deliveries, deliveries)
    earlier = fields.get(b"attempt")
    target = fields.get(b"for")
    trace = fields.get(b"trace")
    timings = fields.get(b"timings")
    return Delivery(
        entry_id,
        job.decode() if job else entry_id,
        data,
        trace.decode() if trace else "",
        (int(earlier) if earlier else 0) + deliveries,
        deliveries,
        target.decode() if target else None,
        timings=timings.decode() if timings else "",
        fanout=fields.get(b"fanout") == b"1",
    )


def _unreadable(entry_id: str, fields: Fields, deliveries: int, error: Exception) -> Delivery:
    """A delivery for an entry that breaks the wire format, shown with its bytes escaped."""
    bad = [key for key, value in fields.items() if not _is_text(key) or not _is_text(value)]
    bad = [key for key in bad if key != b"data"] or bad  # bad JSON bytes say so when parsed
    if isinstance(error, UnicodeDecodeError) and bad:
        problem = f"entry field {_shown(bad[0])!r} is not UTF-8 text"
    else:
        problem = f"entry field 'attempt' is not a number: {_shown(fields[b'attempt'])!r}"
    job = fields.get(b"job")
    data = fields.get(b"data")
    if data is None:
        data = orjson.dumps({_shown(key): _shown(value) for key, value in fields.items()})
    return Delivery(
        entry_id,
        job.decode() if job is not None and _is_text(job) else entry_id,
        data,
        "",
        deliveries,
        deliveries,
        problem=problem,
    )


def _is_text(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


def _shown(raw: bytes) -> str:
    return raw.decode(errors="backslashreplace")


def encode_payload(payload: object, max_payload: int) -> bytes:
    """JSON-encode a payload, refusing what is not JSON or too large (nothing is pickled)."""
    try:
        data = orjson.dumps(payload)
    except TypeError as error:
        raise PayloadError(f"payload is not JSON-serialisable: {error}") from None
    check_size(data, max_payload)
    return data


def check_size(data: bytes, max_payload: int) -> None:
    if len(data) > max_payload:
        raise PayloadTooLarge(
            f"payload is {len(data)} bytes, over max_payload {max_payload}; "
            "send large documents as a reference (path, URL) instead"
        )


def decode_json_text(text: str | bytes) -> bytes:
    """Validate JSON given as text (e.g. `--data`), returning it as compact bytes."""
    try:
        return orjson.dumps(orjson.loads(text))
    except orjson.JSONDecodeError as error:
        where = f"column {error.colno}"
        if error.lineno > 1:
            where = f"line {error.lineno} {where}"
        raise PayloadError(f"payload is not valid JSON: {error.msg} at {where}") from None
