# -*- test-case-name: tests.test_limits -*-
"""
Per-client limits that need arithmetic rather than I/O: the flood-control
token bucket and the count of connections per peer (sans I/O; the caller
passes the time).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar


@dataclass(frozen=True)
class Limits:
    """
    The limits of one server, as set on the command line; 0 switches one off.

    @ivar max_line: the longest accepted input line, in bytes.
    @ivar max_outbound: bytes that may be queued for a client after its
        transport reported a full buffer, before it is dropped.
    @ivar max_connections: open connections at once, registered or not.
    @ivar max_per_peer: open connections at once from one IP address.
    @ivar join_timeout: seconds an unregistered connection may stay open.
    @ivar idle_timeout: seconds a registered user may send nothing.
    @ivar rate: lines per second a client may send once its burst is spent.
    @ivar burst: lines a client may send at once.
    @ivar max_backlog: bytes of delayed, unprocessed input a client may have.
    @ivar grace: seconds a dropped user's name and messages are kept for a
        resume; 0 (the default, as the specification asks) frees the name
        and the seat the moment the connection drops.
    @ivar max_held: messages kept for a user during the grace period.
    @ivar close_timeout: seconds a client gets to read its last lines (a
        BYE, the answers to its input) once the server closes the
        connection, before it is aborted.
    @ivar max_buffered: bytes all clients together may have waiting in the
        server (output queued for clients that do not read, input waiting
        for flood control); past it the largest of them is dropped.
    @ivar handshake_timeout: seconds a TLS client gets to finish its
        handshake, before its connection is aborted: until then nothing,
        not even a BYE, can reach it. An HTTP client gets as long to send
        each whole request (L{chat.server.site}).
    """

    max_line: int = 4096
    max_outbound: int = 1 << 20
    max_connections: int = 1000
    max_per_peer: int = 256
    join_timeout: float = 60.0
    idle_timeout: float = 0.0
    rate: float = 10.0
    burst: int = 20
    max_backlog: int = 64 * 1024
    grace: float = 0.0
    max_held: int = 100
    close_timeout: float = 10.0
    handshake_timeout: float = 10.0
    max_buffered: int = 256 << 20

    @property
    def input_rate(self) -> float:
        """
        Bytes per second a client may send, whatever they are: as many as
        its most lines at the flood-control rate (0: no bound when flood
        control is off). Input that is not a line (telnet commands, stray
        bytes) escapes flood control but not this.
        """
        return self.rate * self.max_line

    @property
    def input_burst(self) -> float:
        """Bytes a client may send at once: as many as its burst of lines."""
        return float(self.burst * self.max_line)


_ROUNDING = 1e-9
"""What adding up float seconds may take off a whole token."""


class TokenBucket:
    """
    Flood control in the way of ergo's "fakelag": a client may send C{burst}
    lines at once, then C{rate} lines per second. Lines beyond that are not
    dropped but delayed, so a client that waits for its replies is only
    slowed down.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def available(self, now: float) -> float:
        """The lines that may be sent at once at C{now}."""
        return min(self.burst, self._tokens + (now - self._last) * self.rate)

    def grant(self, now: float, wanted: int) -> int:
        """
        Spend a token for each of C{wanted} lines, as far as there are tokens.

        @return: how many of them may be processed now.
        """
        tokens = self.available(now)
        self._last = now
        # Within rounding of a whole token is a token: else the wait would be
        # too small to move a clock's float time, and be asked for forever.
        granted = min(wanted, int(tokens + _ROUNDING))
        self._tokens = max(tokens - granted, 0.0)
        return granted

    def refund(self, count: int) -> None:
        """Give back the tokens of C{count} granted lines that were not processed."""
        self._tokens = min(self.burst, self._tokens + count)

    def wait(self, now: float) -> float:
        """The seconds until a token is there (0 if there is one now)."""
        return max(0.0, (1 - self.available(now)) / self.rate)


class PeerCount:
    """How many connections are open, in all and per peer address."""

    __slots__ = ("_by_peer", "total")

    def __init__(self) -> None:
        self.total = 0
        self._by_peer: Counter[str] = Counter()

    def admit(
        self, host: str, limits: Limits, makeRoom: Callable[[], bool] | None = None
    ) -> str | None:
        """
        Count a new connection from C{host} unless it would pass a limit.

        @param makeRoom: called when only the total is at its limit: closes
            a connection that matters less (one that has not joined),
            releasing its place, and says whether it did, so that a flood of
            idle connections cannot lock everyone out.
        @return: C{None} if admitted (and counted), else why not.
        """
        if limits.max_per_peer and self._by_peer[host] >= limits.max_per_peer:
            return f"{host} has {limits.max_per_peer} connections open, the limit per address"
        if (
            limits.max_connections
            and self.total >= limits.max_connections
            and (makeRoom is None or not makeRoom())
        ):
            return f"the server has {self.total} connections, its limit"
        self.total += 1
        self._by_peer[host] += 1
        return None

    def release(self, host: str) -> None:
        """Forget one admitted connection from C{host}."""
        self.total -= 1
        self._by_peer[host] -= 1
        if not self._by_peer[host]:
            del self._by_peer[host]


Holder = TypeVar("Holder")


class Buffered(Generic[Holder]):
    """
    What every connection has waiting in the server, in all and by
    connection (only those with something waiting): the per-connection
    limits bound each, this bounds their sum (C{--max-buffered}).
    """

    __slots__ = ("by", "total")

    def __init__(self) -> None:
        self.total = 0
        self.by: dict[Holder, int] = {}

    def set(self, holder: Holder, size: int) -> None:
        """C{holder} has C{size} bytes waiting now."""
        self.total += size - self.by.get(holder, 0)
        if size:
            self.by[holder] = size
        else:
            self.by.pop(holder, None)

    def largest(self) -> Holder:
        """Who has the most waiting."""
        return max(self.by, key=self.by.__getitem__)
