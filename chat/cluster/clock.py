# -*- test-case-name: tests.test_cluster_clock -*-
"""
A node's reading of Redis's clock, for the deadlines of its commands.

A command that Redis runs late (Redis was stopped, or slow) must not take
effect once its client has been told it failed. Only Redis can tell when
it runs a script, so the deadline travels in Redis's clock, and the node
needs to know how far that clock is from its own: the two may be on
different machines. It reads it as NTP does: Redis's C{TIME}, taken while
a command runs, against the midpoint of the command's round trip, which is
right within half the round trip. Only readings from short round trips are
used, so that the error stays small whatever the network or Redis did.
"""

from __future__ import annotations

from collections.abc import Sequence


class RedisClock:
    """
    The offset of Redis's clock from the node's, from the latest reading
    whose round trip took at most C{rtt} seconds.

    @ivar offset: Redis's time minus the node's, or C{None} before any
        usable reading.
    """

    __slots__ = ("offset", "rtt")

    def __init__(self, rtt: float) -> None:
        self.rtt = rtt
        self.offset: float | None = None

    def read(self, sent: float, received: float, time: Sequence[bytes | str | int]) -> None:
        """
        One reading: a command sent at C{sent} and answered at C{received}
        (the node's clock) ran at C{time}, Redis's C{TIME} (seconds and
        microseconds). A reading from a longer round trip than C{rtt} is
        not used.
        """
        if received - sent <= self.rtt:
            seconds, micro = time
            self.offset = int(seconds) + int(micro) / 1e6 - (sent + received) / 2

    def deadline(self, now: float, within: float) -> float:
        """
        The moment C{within} seconds after C{now} (the node's clock), in
        Redis's clock; 0, which means no deadline, while the offset is not
        known.
        """
        if self.offset is None:
            return 0.0
        return now + within + self.offset
