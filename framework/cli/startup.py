"""The `pipeline` entry point: stop signals are noted from the first instruction on.

Importing the CLI takes most of a second. A SIGTERM in that window (a container stopped
right after it started, an orchestrator scaling down) would otherwise kill the process with
the default action (status 143) instead of the graceful exit 0 the worker promises. Until a
command installs its own handlers, a stop signal is only noted; the worker then stops at
once, and any other command is ended by the signal as usual.
"""

from __future__ import annotations

import os
import signal
import sys

from framework.cli.signals import STOP_SIGNALS, note, noted


def main() -> None:
    previous = {signum: signal.signal(signum, note) for signum in STOP_SIGNALS}
    from framework.cli.app import main as run_command  # imported here: the slow part

    if "worker" not in sys.argv[1:]:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if noted:
            os.kill(os.getpid(), noted[0])  # what the signal would have done, now
    run_command()
