# -*- test-case-name: tests.test_limits -*-
"""
Status lines that one address can cause at will, summarised.

A refused connection and a wrong resume token each deserve a status line,
but a client that reconnects in a loop, or tries tokens, would otherwise
write the log as fast as it can send: hundreds of kilobytes a second, which
fill the disk and drown every other line. So the first such line from an
address in an interval is written as usual, and the others are counted and
written as one line at the end of the interval. The events the
specification names (a JOIN refused as Too Many Users, say) are not
summarised: each keeps its own line.
"""

from __future__ import annotations

from typing import Final

from chat.core.away import Timer
from chat.core.session import Clock, EventLog

INTERVAL: Final = 10.0
"""Seconds over which repeats from one address are counted."""

MAX_KEYS: Final = 10_000
"""Addresses counted at once; beyond them repeats are counted together."""


class Repeats:
    """
    Counts of repeated status lines, by kind and address, for the current
    interval; the interval starts with the first line written in it.
    """

    __slots__ = ("_clock", "_counts", "_log", "_timer")

    def __init__(self, clock: Clock, log: EventLog) -> None:
        self._clock = clock
        self._log = log
        self._counts: dict[tuple[str, str], int] = {}
        self._timer: Timer | None = None

    def info(self, kind: str, host: str, format: str, /, **fields: object) -> None:
        """
        Log C{format} with C{fields} if it is the first line of C{kind}
        (e.g. C{"refused connections"}) from C{host} in this interval;
        else count it.
        """
        key = (kind, host)
        count = self._counts.get(key)
        if count is None:
            if len(self._counts) >= MAX_KEYS:
                key = (kind, "other addresses")
                self._counts[key] = self._counts.get(key, 0) + 1
                return
            self._counts[key] = 0
            self._log.info(format, **fields)
            if self._timer is None:
                self._timer = self._clock.callLater(INTERVAL, self._summarise)
        else:
            self._counts[key] = count + 1

    def _summarise(self) -> None:
        counts, self._counts, self._timer = self._counts, {}, None
        for (kind, host), count in counts.items():
            if count:
                self._log.info(
                    "{count} more {kind} from {host} in the last {interval:g}s",
                    count=count,
                    kind=kind,
                    host=host,
                    interval=INTERVAL,
                )

    def stop(self) -> None:
        """Write what is counted now (the server is stopping)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._summarise()
