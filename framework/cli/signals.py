"""Stop signals, in one place: which they are, those noted before a command took them over,
and the worker's handlers (the first stops gracefully, a second at once).

Commands are the only code that takes signals: a library must not take its host's. This module
imports nothing slow, so that the entry point (startup.py) can note signals from its first
instruction, before the rest of the CLI is imported.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
noted: list[int] = []  # stop signals that arrived before a command installed its handlers
PARENT_VARIABLE = "PIPELINE_RUN_PARENT"  # set by `pipeline run` for its stage processes
PARENT_GONE = signal.SIGHUP  # what the kernel sends such a process when its run dies
PR_SET_PDEATHSIG = 1  # linux/prctl.h
watching_parent = False  # this process is a stage process of a run, and PARENT_GONE is armed


def note(signum: int, frame: FrameType | None) -> None:
    noted.append(signum)


def install_stop_handlers(stopping: asyncio.Event) -> None:
    """First SIGTERM/SIGINT: graceful stop (`stopping` is set). Second: exit 130 now, without
    cleanup: what is in flight stays pending and is reclaimed after its lease. The death of a
    stage process's run (PARENT_GONE) is a graceful stop, never a second signal: the run may
    have sent SIGTERM before it died (a second Ctrl-C at the run), and its workers must still
    finish, so that the last one stops the embedded Redis."""
    import structlog

    log = structlog.get_logger()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        # Act first, then say so: a log line that cannot be written must not keep the worker up.
        if stopping.is_set():
            log.warning("shutdown_forced", signal=signal.Signals(signum).name)
            os._exit(130)  # at once: atexit would join the threads of a hung stage call
        stopping.set()
        log.info("shutdown_requested", signal=signal.Signals(signum).name)

    def on_parent_gone() -> None:
        if not stopping.is_set():
            stopping.set()
            log.info("shutdown_requested", signal=signal.Signals(PARENT_GONE).name, why="run gone")

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    if watching_parent:
        loop.add_signal_handler(PARENT_GONE, on_parent_gone)
    if noted:  # stopped while still starting: nothing is held yet, stop at once
        if noted[0] == PARENT_GONE:
            on_parent_gone()
        else:
            on_signal(noted[0])


def stop_with_parent() -> None:
    """A stage process of `pipeline run` stops gracefully when the run dies (SIGKILL, a second
    Ctrl-C): the kernel sends it PARENT_GONE then (Linux's parent-death signal). Without it,
    an orphan would hold the embedded Redis for ever."""
    global watching_parent
    parent = os.environ.pop(PARENT_VARIABLE, "")
    if not parent.isdigit() or not sys.platform.startswith("linux"):
        return
    import ctypes

    signal.signal(PARENT_GONE, note)  # until the command's handlers take over
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, PARENT_GONE, 0, 0, 0)
    watching_parent = True
    if os.getppid() != int(parent):  # it died before we asked
        noted.append(PARENT_GONE)
