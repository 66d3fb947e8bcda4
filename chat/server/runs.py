# -*- test-case-name: tests.test_runs -*-
"""
The runs of a read: the MESGs and BCSTs that a read carries one after the
other, answered together, with the same replies, relayed lines, status lines
and counts as L{chat.server.handlers.Commands.lineReceived} gives them one by one.

A busy client sends many lines at once (the load generator keeps 16 in
flight, a bridge or a paste more): line by line, each MESG costs about ten
Python calls, and each BCST one delivery per reader. In a run a MESG costs
two calls, and a run of BCSTs one delivery per reader in all. Mixed into
L{chat.server.protocol.ChatProtocol}; C{tests/test_runs.py} holds the two paths
equal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from chat.core import grammar
from chat.core.framing import LINE_TOO_LONG, _LineTooLong
from chat.core.limits import TokenBucket
from chat.core.room import FLUSH_AT
from chat.core.text import CONTROL_BYTES, decode, split_command

if TYPE_CHECKING:
    from chat.server.protocol import ChatProtocol

    _Base = ChatProtocol
else:
    _Base = object

RECEIPT_SIZE: Final = len("OK MESG  delivered\r\n")
"""The bytes of a MESG receipt but the (ASCII) name."""
BCST_REPLY_SIZE: Final = 80
"""At least the bytes of a BCST reply: C{OK BCST n (n of them away, ...)}."""
BCST_RUN_SIZE: Final = FLUSH_AT // 4
"""The relayed bytes that end a run of BCSTs: a longer run would reach
L{FLUSH_AT} for more readers, who then get it a line at a time."""


class Runs(_Base):
    """
    The runs of a read. C{dataReceived} calls L{runs} first, and again
    after each line that it leaves to the general path.
    """

    def runs(
        self, lines: list[bytes | _LineTooLong], start: int, bucket: TokenBucket | None, now: float
    ) -> int:
        """
        Answer the runs of MESGs (L{relayRun}) and BCSTs (L{broadcastRun})
        that start at C{lines[start]}, as L{lineReceived} would line by line.

        A run's replies reach the sender at its end, so a run is made only
        for a sender who is reading, and ends at the line whose reply takes
        the sender's output to L{FLUSH_AT}: line by line, that output would
        be handed on there and might find the client not reading, which
        changes what the next lines do (a slow consumer dropped does no
        more). C{tests/test_runs.py} holds the two paths equal.

        @return: the index of the first line left to L{lineReceived}, or
            C{len(lines)}.
        """
        end = len(lines)
        while start < end:
            index = self.relayRun(lines, start, bucket, now)
            if index < end:
                index = self.broadcastRun(lines, index, bucket, now)
            if index == start:
                break
            start = index
        return start

    def relayRun(
        self, lines: list[bytes | _LineTooLong], start: int, bucket: TokenBucket | None, now: float
    ) -> int:
        """
        Relay the private messages that start at C{lines[start]} as
        L{lineReceived} would, with the same replies, status lines and
        counts, at less than half its cost.

        The most frequent command of all, a MESG in ASCII to a user who is
        on this node, not away and reading, is relayed from the raw bytes,
        and the receipts, counts and status lines of a run of them are made
        at once. A line that is anything else, or a message to oneself (whose
        relayed line and receipt interleave), ends the run.

        @param bucket: the sender's flood control, which each relayed line
            draws on, or C{None}.
        @return: the index of the first line not relayed, or C{len(lines)}.
        """
        name = self.name
        if name is None or self.blocked:
            return start
        find, head = self.room.findLocal, b"MESG %b: " % name.encode()
        delivered: list[str] = []
        unsent = self.unsent
        for index in range(start, len(lines)):
            line = lines[index]
            if line is LINE_TOO_LONG or not line.isascii():
                break
            # Cleaned as decode() and split as str.split() would do it; the
            # relayed line is the one grammar.relayed() makes.
            words = line.translate(None, CONTROL_BYTES).split(None, 2)
            if len(words) != 3 or words[0].upper() != b"MESG":
                break
            recipient = find(words[1].decode())
            if recipient is None or recipient is self or recipient.away or recipient.blocked:
                break
            if bucket is not None and bucket.take(now):
                break
            # A member who is present and reading takes it: DELIVERED.
            recipient.deliver(head + words[2].rstrip() + b"\r\n")
            delivered.append(to := str(recipient.name))
            unsent += len(to) + RECEIPT_SIZE
            if unsent >= FLUSH_AT:
                index += 1
                break
        else:
            index = len(lines)
        if delivered:
            factory = self.factory
            factory.stats.commands["MESG"] += len(delivered)
            factory.stats.relayed["mesg"] += len(delivered)
            if factory.relay_log is not None:
                factory.relay_log.delivered(name, delivered)
            self.deliver(self.format.receipts(delivered))
        return index

    def broadcastRun(
        self, lines: list[bytes | _LineTooLong], start: int, bucket: TokenBucket | None, now: float
    ) -> int:
        """
        Broadcast the BCSTs that start at C{lines[start]} as L{lineReceived}
        would, with the same replies, status lines and counts, but the
        whole run in one piece to each member who is reading
        (L{chat.core.room.Room.broadcast}).

        @param bucket: the sender's flood control, which each line draws
            on, or C{None}.
        @return: the index of the first line not broadcast, or C{len(lines)}.
        """
        name = self.name
        if name is None or self.blocked:
            return start
        relayed: list[bytes] = []
        unsent, size = self.unsent, 0
        for index in range(start, len(lines)):
            line = lines[index]
            # Most lines that are not a BCST are told apart without decoding.
            if line is LINE_TOO_LONG or line[:4].upper() != b"BCST":
                break
            verb, rest = split_command(decode(line))
            if verb != "BCST" or not rest:
                break
            if bucket is not None and bucket.take(now):
                break
            relayed.append(data := grammar.relayed("BCST", name, rest))
            unsent += BCST_REPLY_SIZE
            size += len(data)
            if unsent >= FLUSH_AT or size >= BCST_RUN_SIZE:
                index += 1
                break
        else:
            index = len(lines)
        if relayed:
            self.factory.stats.commands["BCST"] += len(relayed)
            self._broadcast(relayed)
        return index
