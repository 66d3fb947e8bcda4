# -*- test-case-name: tests.test_protocol -*-
"""
One L{ChatProtocol} per connection: its life, its flow control, and its
input up to whole lines; the commands are in L{chat.server.handlers}.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chat.core import grammar
from chat.core.away import AwaySession
from chat.core.framing import LINE_TOO_LONG, LineSplitter, _LineTooLong
from chat.core.limits import TokenBucket
from chat.core.room import FLUSH_AT, Delivery
from chat.core.telnet import TelnetInput
from chat.server.handlers import Commands
from chat.server.outbox import write
from chat.server.runs import Runs

if TYPE_CHECKING:
    from chat.server.factory import ChatFactory


_DELIVERED = Delivery.DELIVERED  # a global is cheaper than an enum lookup per recipient


HINT_AFTER = 2.0
"""Seconds of quiet after text without a line end before the hint is sent."""

LINE_END_HINT = grammar.info(
    "Your line has no line end yet: a command runs when its line ends (Enter: LF or CR LF)"
)


def _inputSize(line: bytes | _LineTooLong, max_line: int) -> int:
    """The input bytes a line stands for (an overlong one: at least the limit)."""
    return max_line if line is LINE_TOO_LONG else len(line) + 1


@implementer(IHalfCloseableProtocol)
class ChatProtocol(Runs, Commands, LineReceiver):
    """
    One telnet connection: unregistered until a successful JOIN.

    Input goes through L{TelnetInput} and L{LineSplitter} instead of
    C{LineReceiver}'s own splitting (see L{chat.core.framing} for why); each line
    is dispatched to a C{do_VERB} method. With flood control on, lines beyond
    the client's L{TokenBucket} wait in a backlog and are processed later.

    The protocol registers itself as the streaming producer of its own
    transport, so the transport tells it when its outbound buffer is full
    (C{pauseProducing}) and when it has drained (C{resumeProducing}). In
    between, bytes queued for it are counted: past C{max_outbound} the client
    is a slow consumer and is disconnected, so a client that never reads
    costs the server a bounded amount of memory.

    A client may close its sending side and wait for its answers (C{nc -N},
    a script's C{shutdown(SHUT_WR)}): as an L{IHalfCloseableProtocol} it is
    told so by C{readConnectionLost}, answers every line it has received
    (an unterminated last one included) at the usual flood-control pace, and
    then closes.

    @ivar name: the registered name, or C{None} before JOIN and after leaving.
    @ivar blocked: whether the transport's outbound buffer is full (between
        C{pauseProducing} and C{resumeProducing}).
    @ivar unsent: the bytes gathered for the client in this reactor turn,
        not yet handed to the transport.
    """

    log = Logger()
    delimiter = grammar.CRLF
    away = False

    def __init__(self, factory: ChatFactory, host: str, peer: str) -> None:
        self.factory = factory
        self.room = factory.room
        self.host = host
        self.peer = peer
        self.name: str | None = None
        self.token: str | None = None
        self.format: grammar.Format = grammar.HUMAN
        self._connectedAt = 0.0
        self._telnet = TelnetInput()
        self._lines = LineSplitter(factory.limits.max_line)
        self.blocked = False
        self._queuedWhileBlocked = 0
        self._gone = False
        self._admitted = False
        self._lastInput = 0.0
        self._joinTimer: IDelayedCall | None = None
        self._hintTimer: IDelayedCall | None = None
        self._abortCall: IDelayedCall | None = None
        self._hinted = False
        self._inputEnded = False
        self._drainCall: IDelayedCall | None = None
        self._waiting: Deferred[None] | None = None
        self._processing = False
        self._bucket: TokenBucket | None = None
        # Made when first needed: an empty deque costs 600 bytes a connection.
        self._backlog: deque[bytes | _LineTooLong] | None = None
        self._backlogBytes = 0
        self._outbox = factory.outbox
        self._out: list[bytes] = []
        self.unsent = 0

    # Connection lifecycle

    def connectionMade(self) -> None:
        factory, limits = self.factory, self.factory.limits
        refusal = factory.peers.admit(self.host, limits)
        if refusal is not None:
            factory.stats.limits["max_connections"] += 1
            self.log.info("refused connection from {peer}: {why}", peer=self.peer, why=refusal)
            self.transport.write(grammar.HUMAN.bye(grammar.TOO_MANY_CONNECTIONS, refusal))
            self._gone = True
            self._loseConnection()
            return
        self._admitted = True
        # Chat lines are small and a reader may never write back: with
        # Nagle's algorithm each line would wait for the delayed ACK of the
        # one before (40 ms). Writes are coalesced per reactor turn anyway.
        setTcpNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setTcpNoDelay is not None:
            setTcpNoDelay(True)
        self.transport.registerProducer(self, True)
        factory.connections.add(self)
        clock = factory.clock
        self._lastInput = self._connectedAt = clock.seconds()
        if limits.rate:
            self._bucket = TokenBucket(limits.rate, limits.burst, self._lastInput)
        if limits.join_timeout:
            self._joinTimer = clock.callLater(limits.join_timeout, self._joinTimedOut)
        self.log.info("connection from {peer}", peer=self.peer)
        self.deliver(grammar.GREETING)

    def connectionLost(self, reason: Failure = None) -> None:
        self._gone = True
        self._out.clear()
        if self._abortCall is not None and self._abortCall.active():
            self._abortCall.cancel()
        if not self._admitted:
            return
        self._admitted = False
        self.factory.peers.release(self.host)
        self.factory.connections.discard(self)
        self._cancelTimers()
        if self.name is not None:
            self._goAway()
        self.factory.connectionClosed()

    def _goAway(self, how: str = "dropped the connection") -> None:
        """
        The user is gone without QUIT (C{how}): keep the name and the
        messages for a resume during the grace period, or free the name at
        once.
        """
        name, room, limits = str(self.name), self.room, self.factory.limits
        if not limits.grace:
            if self._leave() is not None:
                self.log.info(
                    "{name} {how} from {peer} ({count}/{capacity} users)",
                    name=name,
                    how=how,
                    peer=self.peer,
                    count=len(room),
                    capacity=room.capacity,
                )
            return
        clock = self.factory.clock
        away = AwaySession(name, str(self.token), limits.max_held, clock.seconds() + limits.grace)
        room.replace(self, away)
        self.name = None
        away.timer = clock.callLater(limits.grace, self._graceEnded, away)
        self.log.info(
            "{name} {how} from {peer}; name held for {grace}s",
            name=name,
            how=how,
            peer=self.peer,
            grace=limits.grace,
        )

    def _graceEnded(self, away: AwaySession) -> None:
        away.timer = None
        if self.room.leave(away):
            self.log.info(
                "{name} did not come back: name free, {count} held messages dropped "
                "({users}/{capacity} users)",
                name=away.name,
                count=len(away.held) + away.dropped,
                users=len(self.room),
                capacity=self.room.capacity,
            )

    def close(self, data: bytes = b"") -> None:
        """Send C{data}, then close once everything queued has been sent."""
        if self._gone:
            return
        self.deliver(data)
        self.flush()
        self._gone = True
        self._cancelTimers()
        self._leave()
        # A transport with a registered producer waits for it before closing.
        self.transport.unregisterProducer()
        self._loseConnection()

    def _cancelTimers(self) -> None:
        """Nothing more is done for a connection that is closing."""
        for call in (self._joinTimer, self._drainCall, self._hintTimer):
            if call is not None and call.active():
                call.cancel()
        self._joinTimer = self._drainCall = self._hintTimer = None

    def _loseConnection(self) -> None:
        """
        Close once what is queued has been sent, but not later than
        C{close_timeout}: C{loseConnection} waits for the client to read it,
        and a client that does not read would hold the connection for ever.
        """
        self.transport.loseConnection()
        timeout = self.factory.limits.close_timeout
        self._abortCall = self.factory.clock.callLater(timeout, self._abortClose, timeout)

    def _abortClose(self, timeout: float) -> None:
        self._abortCall = None
        self.log.info(
            "aborting the connection of {who}: its last lines were not read within {timeout}s",
            who=self.peer,
            timeout=timeout,
        )
        self.transport.abortConnection()

    def bye(self, reason: str, details: str, *fields: object) -> None:
        """Tell the client why its connection is closed, then close it."""
        self.close(self.format.bye(reason, details, *fields))

    def _leave(self) -> str | None:
        """Leave the room now, so the name is free at once; return the name."""
        name = self.name
        left = name is not None and self.room.leave(self)
        # Nameless even if the room no longer holds the name (a cluster node
        # that was cut off finds it taken on another node, and says BYE): a
        # connection that is closing keeps no name to hold or to send as.
        self.name = None
        return name if left else None

    def _joinTimedOut(self) -> None:
        self._joinTimer = None
        timeout = self.factory.limits.join_timeout
        self.factory.stats.limits["join_timeout"] += 1
        pending = self._lines.pending
        if not pending:
            self.log.info(
                "closing {peer}: no JOIN within {timeout}s", peer=self.peer, timeout=timeout
            )
            self.bye(grammar.JOIN_TIMEOUT, f"no JOIN within {timeout:g} seconds", timeout)
            return
        # A client that sent "JOIN name" without a line end did send a JOIN:
        # say what was missing.
        self.log.info(
            "closing {peer}: no JOIN within {timeout}s; an unfinished line of {pending} bytes "
            "had no line end",
            peer=self.peer,
            timeout=timeout,
            pending=pending,
        )
        self.bye(
            grammar.JOIN_TIMEOUT,
            f"no JOIN within {timeout:g} seconds; your unfinished line of {pending} bytes "
            "never got its line end (Enter: LF or CR LF)",
            timeout,
            pending,
        )

    def _hintLineEnd(self) -> None:
        """Text came without a line end, then nothing: say how commands end, once."""
        self._hintTimer = None
        if self._lines.pending and not self._lines.seen_line_end:
            self._hinted = True
            self.log.info(
                "{who} sent {pending} bytes without a line end; hinted",
                who=self.name or self.peer,
                pending=self._lines.pending,
            )
            self.deliver(LINE_END_HINT)

    def _idleTimedOut(self) -> None:
        timeout = self.factory.limits.idle_timeout
        self.factory.stats.limits["idle_timeout"] += 1
        self.log.info(
            "closing {name}: idle for {timeout}s", name=self.name or self.peer, timeout=timeout
        )
        self.bye(grammar.IDLE_TIMEOUT, f"nothing sent for {timeout:g} seconds", timeout)

    def checkIdle(self, now: float) -> None:
        """
        Close the connection if the user sent nothing for the idle timeout;
        lines still waiting for flood control are not idleness.
        """
        if (
            self.name is not None
            and not self._backlog
            and now - self._lastInput >= self.factory.limits.idle_timeout
        ):
            self._idleTimedOut()

    # Output and flow control

    def deliver(self, data: bytes) -> Delivery:
        """
        Queue C{data} for this client, dropping it if it stopped reading.
        It is sent at the end of the reactor turn (L{chat.server.outbox}).
        """
        if self._gone:
            return Delivery.DROPPED
        if self.blocked:
            self._queuedWhileBlocked += len(data)
            if self._queuedWhileBlocked > self.factory.limits.max_outbound:
                self._dropSlowConsumer()
                return Delivery.DROPPED
        out = self._out
        if not out:
            self._outbox.add(self)
        out.append(data)
        self.unsent += len(data)
        if self.unsent >= FLUSH_AT:
            self.flush()
        return _DELIVERED

    def flush(self) -> None:
        """Hand what this turn gathered for the client to its transport."""
        out = self._out
        if out:
            data = b"".join(out)
            out.clear()
            self.unsent = 0
            write(self.transport, data)

    def pauseProducing(self) -> None:
        # The transport calls this again on every write while its buffer is
        # full: only the first call starts the count.
        # Input is still read: flood control bounds it, and a TLS transport
        # pauses its producer until the handshake is done, which needs input.
        if not self.blocked:
            self.blocked = True
            self._queuedWhileBlocked = 0

    def resumeProducing(self) -> None:
        self.blocked = False

    def _dropSlowConsumer(self) -> None:
        self._gone = True
        name = self._leave()
        self.factory.stats.limits["max_outbound"] += 1
        self._out.clear()
        self.log.warn(
            "dropped slow consumer {name} at {peer}: more than {limit} bytes unread",
            name=name or "(unregistered)",
            peer=self.peer,
            limit=self.factory.limits.max_outbound,
        )
        self.transport.abortConnection()

    # Input

    def dataReceived(self, data: bytes) -> None:
        data, answers = self._telnet.feed(data)
        if answers:
            self.deliver(answers)
        lines = self._lines.feed(data)
        if lines:
            if self._hintTimer is not None:
                self._hintTimer.cancel()
                self._hintTimer = None
            self._input(lines)
        elif not self._hinted and self._lines.pending and not self._lines.seen_line_end:
            # Some clients send "JOIN name" without a line end and wait.
            if self._hintTimer is None:
                self._hintTimer = self.factory.clock.callLater(HINT_AFTER, self._hintLineEnd)
            else:
                self._hintTimer.reset(HINT_AFTER)

    def readConnectionLost(self) -> None:
        """
        The client closed its sending side (C{nc -N}, C{shutdown(SHUT_WR)}):
        its last line counts even without a line end, and every line it sent
        is answered, at the flood-control pace, before the connection closes.
        """
        if self._gone:
            return
        self._inputEnded = True
        if self._hintTimer is not None:
            self._hintTimer.cancel()
            self._hintTimer = None
        lines = self._lines.end()
        self.log.info(
            "{who} closed its input; closing after answering what it sent",
            who=self.name or self.peer,
        )
        if lines:
            self._input(lines)
        self._closeIfAnswered()

    def writeConnectionLost(self) -> None:
        """Never called: the server does not half-close its own side."""

    def _closeIfAnswered(self) -> None:
        """After the end of input, close once nothing received waits for an answer."""
        if self._inputEnded and not self._gone and not self._backlog and self._waiting is None:
            # Gone as a drop is, at once (closing telnet also ends its input):
            # the name is freed, or held for a resume with --grace, while the
            # last answers are on their way.
            if self.name is not None:
                self._goAway("ended its input")
            self.close()

    def _input(self, lines: list[bytes | _LineTooLong]) -> None:
        """Run complete lines now, as far as flood control allows; backlog the rest."""
        self._lastInput = now = self.factory.clock.seconds()
        if b"" in lines:
            # Empty lines get no answer, and cost neither a token nor a place
            # in the backlog (LF CR line ends make one per line).
            lines = [line for line in lines if line]
        if self._waiting is None and not self._backlog:
            # The fast path: nothing waits, so lines run at once while the
            # client's token bucket lasts; the rest goes to the backlog.
            bucket = self._bucket
            self._processing = True
            try:
                index, count = self.runs(lines, 0, bucket, now), len(lines)
                while index < count:
                    if self._gone:
                        return
                    if bucket is not None and bucket.take(now):
                        break
                    self._process(lines[index])
                    index += 1
                    if self._waiting is not None:
                        break
                    index = self.runs(lines, index, bucket, now)
                else:
                    return
            finally:
                self._processing = False
            lines = lines[index:]
        if self._backlog is None:
            self._backlog = deque()
        self._backlog.extend(lines)
        max_line = self.factory.limits.max_line
        self._backlogBytes += sum(_inputSize(line, max_line) for line in lines)
        self._drain()

    def _drain(self) -> None:
        """
        Process backlogged lines in order, as fast as the client's token
        bucket allows, and never past a command that is still waiting for
        the room (a JOIN in a cluster).
        """
        limits = self.factory.limits
        if self._backlogBytes > limits.max_backlog:
            self.factory.stats.limits["max_backlog"] += 1
            self.log.warn(
                "disconnecting {who}: flooding, more than {limit} bytes of input waiting",
                who=self.name or self.peer,
                limit=limits.max_backlog,
            )
            self.bye(
                grammar.FLOODING,
                f"more than {limits.max_backlog} bytes of commands waiting; "
                f"send at most {limits.rate:g} lines per second",
                limits.max_backlog,
                limits.rate,
            )
            return
        if self._drainCall is not None or self._waiting is not None:
            return
        clock, bucket, backlog = self.factory.clock, self._bucket, self._backlog
        if not backlog:
            self._closeIfAnswered()
            return
        self._processing = True
        try:
            while backlog and not self._gone:
                if bucket is not None and (wait := bucket.take(clock.seconds())):
                    self.factory.stats.limits["rate"] += 1
                    self._drainCall = clock.callLater(wait, self._drainLater)
                    return
                line = backlog.popleft()
                self._backlogBytes -= _inputSize(line, limits.max_line)
                self._process(line)
                if self._waiting is not None:
                    return
            self._backlog = None  # empty: free it
        finally:
            self._processing = False
        self._closeIfAnswered()

    def _drainLater(self) -> None:
        self._drainCall = None
        self._drain()

    def _process(self, line: bytes | _LineTooLong) -> None:
        if line is LINE_TOO_LONG:
            self.lineLengthExceeded(b"")
            return
        pending = self.lineReceived(line)
        if pending is not None:
            # Even a Deferred that has been called may still wait on another.
            self._waiting = pending
            pending.addBoth(self._continueInput)

    def _continueInput(self, result: object) -> None:
        """The command that input waited for is done: go on with the next."""
        self._waiting = None
        if not self._processing:  # else the loop that is running goes on
            self._drain()

    def lineLengthExceeded(self, line: bytes) -> None:
        """Refuse the line but keep the connection: the rest is skipped."""
        self.log.warn(
            "{who} sent a line longer than {limit} bytes",
            who=self.name or self.peer,
            limit=self.factory.limits.max_line,
        )
        self.factory.stats.limits["max_line"] += 1
        self._error(
            grammar.LINE_TOO_LONG,
            f"lines are limited to {self.factory.limits.max_line} bytes; it was discarded",
        )
