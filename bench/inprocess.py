"""
C{python -m bench.inprocess}: the Python cost of a MESG and of a broadcast
delivery, without sockets or a reactor.

The end-to-end benchmark (C{python -m bench}) measures what a user gets, but
a change to the command path moves its figure by a few per cent among the
system calls and the machine's drift. This one feeds reads straight to the
protocols of one factory, as the reactor would, with transports that keep
nothing and a log observer that writes nowhere: what is left is the server's
own work per message, steady to a few per cent, for comparing two versions
of the command path in seconds. C{--line-by-line} sends each line in a read
of its own, as a person typing does: batches of one.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from chat.core.limits import Limits
from chat.server.factory import ChatFactory
from chat.server.logs import DirectRelayLog, TextLogObserver
from chat.server.outbox import Outbox
from chat.server.protocol import ChatProtocol

USERS = 100
LINES_PER_READ = 16  # as the load generator's window of 16 sends them
READS = 10


class _Nowhere:
    """A log file, or a transport's write, that keeps nothing."""

    def write(self, data: Any) -> None:
        pass

    def flush(self) -> None:
        pass


class _Transport(StringTransport):
    def write(self, data: bytes) -> None:
        pass


def _room() -> tuple[ChatFactory, list[ChatProtocol], Callable[[], None]]:
    """A factory with C{USERS} registered users; and the end of a reactor turn."""
    clock = Clock()
    observer = TextLogObserver(_Nowhere(), clock.callLater, lambda: True)
    factory = ChatFactory(
        max_users=USERS,
        limits=Limits(rate=0, max_connections=0, max_per_peer=0),
        clock=clock,
        relay_log=DirectRelayLog(ChatProtocol.log, observer),
    )
    factory.outbox = Outbox(clock)
    users = []
    for i in range(USERS):
        user = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 10000 + i))
        user.makeConnection(_Transport())
        user.dataReceived(b"JOIN u%d\r\n" % i)
        users.append(user)
    clock.advance(0)
    return factory, users, lambda: clock.advance(0)


def measure(workload: str, line_by_line: bool, turns: int) -> float:
    """Microseconds of the server's work per delivery: the best of 5 runs."""
    factory, users, end_of_turn = _room()
    if workload == "mesg":
        lines = [b"MESG u%d %d hello\r\n" % ((i * 7 + 1) % USERS, i) for i in range(LINES_PER_READ)]
        deliveries = LINES_PER_READ * READS
    else:
        lines = [b"BCST %d hello\r\n" % i for i in range(LINES_PER_READ)]
        deliveries = LINES_PER_READ * READS * (USERS - 1)
    reads = lines if line_by_line else [b"".join(lines)]
    senders = users[:READS]
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(turns):
            for sender in senders:
                for data in reads:
                    sender.dataReceived(data)
            end_of_turn()
        best = min(best, time.perf_counter() - started)
    relayed = factory.stats.relayed[workload]
    if relayed != 5 * turns * deliveries:  # else the figure would be of something else
        raise RuntimeError(f"{relayed} {workload} deliveries, not {5 * turns * deliveries}")
    return best / (turns * deliveries) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=200, help="reactor turns a run")
    parser.add_argument("--line-by-line", action="store_true", help="a read for each line")
    args = parser.parse_args(argv)
    path = "a line a read" if args.line_by_line else "batches"
    for workload in ("mesg", "bcst"):
        micro = measure(workload, args.line_by_line, args.turns)
        print(
            f"{workload}: {micro:.3f} us a delivery ({path}; {READS} reads of {LINES_PER_READ} lines a turn, {USERS} users)"
        )


if __name__ == "__main__":
    main()
