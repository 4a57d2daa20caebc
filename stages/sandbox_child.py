"""The reader process: reads HTML, Markdown and PDF documents for extract, one at a time.

Started by sandbox.py as `python -P -m stages.sandbox_child MEMORY_BYTES`. It limits its own
address space before importing any reader, so a document that needs more gets a MemoryError
here instead of swapping the host; it imports only the readers (never torch). It serves
requests until its stdin closes, which is also how it ends when the worker dies. Every outcome
is a reply: the text, a refusal, or "needs more memory".
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import warnings
from collections.abc import Callable
from typing import Any

from framework import Fail
from stages.extracted import Extracted
from stages.frames import read_frame, write_frame

Reader = Callable[[str, bytes | str, str], Extracted]

EXTRA_CPU_SECONDS = 5


def main() -> None:
    memory = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a library that prints must not write into the replies
    logging.disable(logging.CRITICAL)  # pypdf's notes on damaged files: the reply says enough
    warnings.simplefilter("ignore")
    from stages.formats import read_document  # after the limit: the imports count against it

    write_frame(replies, {"ready": True})
    while (request := read_frame(sys.stdin.buffer)) is not None:
        header, body = request
        _limit_cpu(float(header["timeout"]))
        data: bytes | str = body.decode("utf-8", "surrogatepass") if header["text"] else body
        write_frame(replies, _serve(read_document, str(header["kind"]), data, str(header["name"])))


def _serve(read: Reader, kind: str, data: bytes | str, name: str) -> dict[str, Any]:
    """The reply to one request; no exception gets out."""
    try:
        found = read(kind, data, name)
    except Fail as fail:
        return {"fail": fail.reason}
    except MemoryError:
        return {"memory": True}
    except RecursionError:
        return {"fail": f"{name}: nested too deeply to read; refused"}
    # A reader's own bug on this document: retrying reads the same bytes the same way.
    except Exception as error:
        return {"fail": f"{name}: unreadable {kind} document ({type(error).__name__})"}
    return {"text": found.text, "title": found.title, "metadata": found.metadata}


def _limit_cpu(timeout: float) -> None:
    """A backstop for an orphan: the kernel ends this process (SIGXCPU) if a document keeps it
    busy far past the deadline, in case the worker that would have killed it is gone."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + 2 * timeout) + EXTRA_CPU_SECONDS
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


if __name__ == "__main__":
    main()
