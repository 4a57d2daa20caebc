"""Which commands the fault proxy (proxy.py) breaks, and how: the settings, the draws, the counters.

Apart from the proxy because this is the part a test reasons about, and it has no sockets in it:
one lock holds the settings, the random draws and the counters together, so the test thread can
retune the faults or read the counters while the proxy's thread draws, and a seed repeats a run
(the draws are made in command order).

    DROP_REPLY    forward, read Redis's whole reply, throw it away    applied; the client sees EOF
    DROP_REQUEST  do not forward                                      not applied; EOF
    CUT_REPLY     forward, read the whole reply, send a strict prefix applied; a broken reply
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypedDict, Unpack


class Fault(StrEnum):
    DROP_REPLY = "drop_reply"
    DROP_REQUEST = "drop_request"
    CUT_REPLY = "cut_reply"


Kinds = Iterable[Fault] | Mapping[Fault, float]


class FaultOptions(TypedDict, total=False):
    """What `FaultProxy(url, ...)` and `configure(...)` take; `configure` keeps what is left out.

    rate:       the fraction of commands (of those `applies_to` picks) that fault, 0.0-1.0;
                default 0.0, a plain proxy
    kinds:      which faults: a set (equal odds) or weights; default all three, equal odds
    seed:       seeds the draws; default from the OS
    applies_to: picks commands by name (`resp.command_name`); default `every_command`
    """

    rate: float
    kinds: Kinds
    seed: int | None
    applies_to: Callable[[str], bool]


def every_command(name: str) -> bool:
    """The default: connection set-up (HELLO, CLIENT SETINFO, SCRIPT LOAD) must survive faults."""
    return True


def only(*names: str) -> Callable[[str], bool]:
    """`applies_to=only("EVALSHA", "XGROUP")`: these commands (a family: all its subcommands)."""
    wanted = frozenset(name.upper() for name in names)
    return lambda name: name in wanted or name.partition(" ")[0] in wanted


@dataclass(frozen=True)
class FaultStats:
    """A snapshot of the counters: commands sent to Redis and faults injected, by command name.

    `forwarded` counts DROP_REPLY and CUT_REPLY commands too: Redis received them.
    """

    forwarded: Counter[str]
    injected: Counter[tuple[Fault, str]]

    @property
    def faults(self) -> Counter[Fault]:
        by_kind: Counter[Fault] = Counter()
        for (kind, _), count in self.injected.items():
            by_kind[kind] += count
        return by_kind

    @property
    def faults_by_command(self) -> Counter[str]:
        by_command: Counter[str] = Counter()
        for (_, name), count in self.injected.items():
            by_command[name] += count
        return by_command


@dataclass(frozen=True)
class Verdict:
    """What happens to one command; `cut` (where a CUT_REPLY cuts) is drawn with the fault."""

    fault: Fault | None
    cut: float = 0.0

    def prefix(self, reply: bytes) -> bytes:
        """At least one byte, never all: RESP is prefix-free, so the client cannot parse it."""
        return reply[: 1 + int(self.cut * (len(reply) - 1))]


PASS = Verdict(None)


class FaultInjector:
    """Draws a verdict per command and counts them; every method is safe from any thread."""

    def __init__(self, **options: Unpack[FaultOptions]) -> None:
        self._lock = threading.Lock()
        self._rate = 0.0
        self._kinds, self._weights = _weigh(Fault)
        self._applies_to: Callable[[str], bool] = every_command
        self._random = random.Random()
        self._forwarded: Counter[str] = Counter()
        self._injected: Counter[tuple[Fault, str]] = Counter()
        self.configure(**options)

    def configure(self, **options: Unpack[FaultOptions]) -> None:
        """Change the settings given; they hold from the next command drawn for."""
        rate = options.get("rate")
        kinds = _weigh(options["kinds"]) if "kinds" in options else None
        with self._lock:
            rate = self._rate if rate is None else rate
            kinds_and_weights = (self._kinds, self._weights) if kinds is None else kinds
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"rate must be within 0.0-1.0, not {rate}")
            if rate > 0 and not kinds_and_weights[0]:
                raise ValueError("a fault rate above 0 needs at least one kind of fault")
            self._rate = rate
            self._kinds, self._weights = kinds_and_weights
            self._applies_to = options.get("applies_to", self._applies_to)
            if "seed" in options:
                self._random.seed(options["seed"])

    def stats(self) -> FaultStats:
        with self._lock:
            return FaultStats(Counter(self._forwarded), Counter(self._injected))

    def judge(self, name: str) -> Verdict:
        """The fate of the next command; counted as forwarded unless dropped before Redis."""
        with self._lock:
            verdict = PASS
            if self._rate > 0 and self._applies_to(name) and self._random.random() < self._rate:
                fault = self._random.choices(self._kinds, self._weights)[0]
                verdict = Verdict(fault, self._random.random())
                self._injected[fault, name] += 1
            if verdict.fault is not Fault.DROP_REQUEST:
                self._forwarded[name] += 1
            return verdict


def _weigh(kinds: Kinds) -> tuple[tuple[Fault, ...], tuple[float, ...]]:
    """The kinds with a weight above 0, and their weights (1 each if given as a set)."""
    weighted = kinds.items() if isinstance(kinds, Mapping) else ((kind, 1.0) for kind in kinds)
    pairs: dict[Fault, float] = {}
    for kind, weight in weighted:
        if weight < 0:
            raise ValueError(f"the weight of {kind} is negative: {weight}")
        if weight > 0:
            pairs[Fault(kind)] = float(weight)
    return tuple(pairs), tuple(pairs.values())
