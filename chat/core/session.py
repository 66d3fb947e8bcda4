# -*- test-case-name: tests.test_protocol -*-
"""
One connection's chat, without I/O: the rules of every command, of the
input (flood control, the end of input, lines without a line end) and of the
output (slow readers), for one user.

Bytes come in (L{Session.dataReceived}) and the time is read from a clock;
out go the bytes for this client (L{Link.write}), deliveries to other
members of the room, and status lines (L{EventLog}). The Twisted side
(L{chat.server.protocol}) is the L{Link}: a transport, its flow control and
its close.

A read's lines are handled as one batch: consecutive MESGs are relayed in
one loop with their receipts, counts and status lines made once, and
consecutive BCSTs go in one piece to each member who is reading. A single
line is a batch of one; every command has this one implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

from chat.core import grammar, presence
from chat.core.away import AwaySession, Timer, is_token, new_token
from chat.core.editmode import OFFER, EditMode
from chat.core.editor import Editor
from chat.core.framing import LINE_TOO_LONG, Line, LineSplitter
from chat.core.history import Entry, History, wanted
from chat.core.limits import Buffered, Limits, TokenBucket
from chat.core.moderation import MUTED_VERBS, Answer, Moderation, Refusal
from chat.core.personal import MAX_IGNORED, Prefs, away_message
from chat.core.presence import Kind
from chat.core.room import (
    FLUSH_AT,
    Admission,
    Delivery,
    Later,
    Listed,
    Member,
    Room,
    RoomUnavailable,
)
from chat.core.screen import Look
from chat.core.stats import Stats
from chat.core.telnet import TelnetInput
from chat.core.text import CONTROL_BYTES, NAME_RULE, decode, fold, is_valid_name, split_command

_DELIVERED: Final = Delivery.DELIVERED  # a global is cheaper than an enum lookup a message

HINT_AFTER: Final = 2.0
"""Seconds of quiet after text without a line end before the hint is sent."""

LINE_END_HINT: Final = grammar.info(
    "Your line has no line end yet: a command runs when its line ends (Enter: LF or CR LF)"
)
RECEIPT_SIZE: Final = len("OK MESG  delivered\r\n")
"""The bytes of a MESG receipt but the (ASCII) name."""
BCST_REPLY_SIZE: Final = 80
"""At least the bytes of a BCST reply: C{OK BCST n (n of them away, ...)}."""
BCST_RUN_SIZE: Final = FLUSH_AT // 4
"""The relayed bytes that end a batch of BCSTs: a longer one would reach
L{FLUSH_AT} for more readers, who then get it a line at a time."""
BEFORE_JOIN: Final = frozenset(("JOIN", "HELP", "QUIT", "MODE"))
"""The commands served before JOIN."""


MODE_USAGE: Final = "MODE MACHINE | MODE HUMAN | MODE EDIT [TIME] [BELL] [COLOR] | MODE LINE"

REFUSED_JOIN: Final = "refused JOIN {name!r} from {peer}: {why} ({count}/{capacity} users)"


class Clock(Protocol):
    """Time, and calls later (Twisted's reactor and C{task.Clock} are clocks)."""

    def seconds(self) -> float: ...

    def callLater(self, delay: float, callable: Callable[..., object], *args: object) -> Timer: ...


class EventLog(Protocol):
    """Where status lines go (a C{twisted.logger.Logger} is one)."""

    def info(self, format: str, **kwargs: object) -> None: ...

    def warn(self, format: str, **kwargs: object) -> None: ...


class RelayStatus(Protocol):
    """The status lines of relayed messages (L{chat.server.logs.RelayLog})."""

    def mesg(self, sender: str, to: str, outcome: str) -> None: ...

    def delivered(self, sender: str, recipients: list[str]) -> None: ...

    def bcst(self, sender: str, count: int, verb: str = "BCST") -> None: ...


class RepeatedStatus(Protocol):
    """Status lines a client can cause at will (L{chat.core.repeats.Repeats})."""

    def info(self, kind: str, host: str, format: str, /, **fields: object) -> None: ...


class Gatherer(Protocol):
    """Collects the sessions with output in this turn, and flushes them at its end."""

    def add(self, sender: Session) -> None: ...


class Shared(Protocol):
    """What every session of a server shares (L{chat.server.factory.ChatFactory})."""

    @property
    def room(self) -> Room: ...

    @property
    def limits(self) -> Limits: ...

    @property
    def stats(self) -> Stats: ...

    @property
    def relay_log(self) -> RelayStatus | None: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def outbox(self) -> Gatherer: ...

    @property
    def started(self) -> float: ...

    @property
    def repeats(self) -> RepeatedStatus: ...

    @property
    def buffered(self) -> Buffered[Session]: ...

    @property
    def moderation(self) -> Moderation: ...

    @property
    def history(self) -> History: ...

    @property
    def greeting(self) -> bytes:
        """The first lines of a connection: the greeting, then the message of the day."""


class Link(Protocol):
    """What a session needs of its connection: the adapter provides it."""

    @property
    def terminal(self) -> bool:
        """Whether a terminal may be at the other end (telnet): a WebSocket's is a browser."""

    def write(self, data: bytes) -> None:
        """Hand C{data} on to the client now."""

    def close(self) -> None:
        """Close once what was written has been sent (within a bounded time)."""

    def abort(self) -> None:
        """Drop the connection now, with whatever is still queued."""

    def pauseReading(self) -> None:
        """Read nothing more from the client until L{resumeReading}."""

    def resumeReading(self) -> None:
        """Read from the client again."""


LINE_COST: Final = 48
"""
The memory a waiting line takes beyond its bytes: a C{bytes} object's header
(33 bytes in CPython 3.11) and its place in the backlog's list (8), rounded
up as the allocator does. Counted, so that C{--max-backlog} bounds memory and
not only bytes: 64 KiB of one-byte lines took 1.2 MB without it.
"""


def _inputSize(line: Line, max_line: int) -> int:
    """
    The memory a waiting line stands for (an overlong one, kept as a marker:
    at least the limit).
    """
    return max_line if line is LINE_TOO_LONG else len(line) + LINE_COST


def _mesgParts(line: bytes) -> tuple[str, bytes] | None:
    """
    The recipient and text of a MESG line that is not ASCII, cleaned as
    L{decode} cleans; C{("", b"")} for a MESG without them; C{None} for
    another command. (L{Session._mesgs} parses ASCII lines, the common
    case, itself: cleaned and split as bytes, they give the same.)
    """
    text = decode(line)
    if not text:
        return None
    verb, rest = split_command(text)
    if verb != "MESG":
        return None
    parts = rest.split(None, 1)
    if len(parts) < 2:
        return "", b""
    return parts[0], parts[1].encode()


class Session:
    """
    One client of the chat, unregistered until a successful JOIN; a
    L{Member} of the room once registered.

    @ivar name: the registered name, or C{None} before JOIN and after leaving.
    @ivar blocked: whether the client stopped reading (the adapter says so:
        its transport's buffer is full).
    @ivar unsent: the bytes gathered for the client in this turn, not yet
        handed on.
    """

    away = False
    # Slots: less memory per connection, and faster attributes on the hot path.
    __slots__ = (
        "_backlog",
        "_backlogBytes",
        "_bucket",
        "_connectedAt",
        "_drainCall",
        "_gone",
        "_granted",
        "_hintTimer",
        "_hinted",
        "_inputAt",
        "_inputCredit",
        "_inputEnded",
        "_inputSlowed",
        "_joinTimer",
        "_lines",
        "_noticesChosen",
        "_out",
        "_outbox",
        "_processing",
        "_queuedWhileBlocked",
        "_readCall",
        "_telnet",
        "_waiting",
        "blocked",
        "format",
        "host",
        "lastInput",
        "limits",
        "link",
        "log",
        "muted",
        "name",
        "notices",
        "operFailures",
        "operator",
        "peer",
        "prefs",
        "room",
        "shared",
        "token",
        "unsent",
    )

    def __init__(self, shared: Shared, link: Link, log: EventLog, host: str, peer: str) -> None:
        self.shared = shared
        self.room = shared.room
        self.limits = limits = shared.limits
        self.link = link
        self.log = log
        self.host = host
        self.peer = peer
        self.name: str | None = None
        self.token: str | None = None
        self.operator: str | None = None  # the operator name, after OPER
        self.muted = False  # whether MUTED_VERBS are refused (moderation says why)
        self.operFailures = 0
        self.format: grammar.Format = grammar.HUMAN
        self.notices = presence.HUMAN
        self._noticesChosen: bool | None = None
        self.prefs: Prefs | None = None
        self.blocked = False
        self.unsent = 0
        self._out: list[bytes] = []
        self._outbox = shared.outbox
        self._queuedWhileBlocked = 0
        self._granted = 0
        self._gone = False
        self._telnet = TelnetInput()
        self._lines: LineSplitter | Editor = LineSplitter(limits.max_line)
        clock = shared.clock
        self.lastInput = self._connectedAt = now = clock.seconds()
        self._bucket = TokenBucket(limits.rate, limits.burst, now) if limits.rate else None
        self._inputCredit, self._inputAt = limits.input_burst, now
        self._inputSlowed = False
        self._readCall: Timer | None = None
        # Made when first needed, as most clients never wait for flood control.
        self._backlog: list[Line] | None = None
        self._backlogBytes = 0
        self._waiting = False
        self._processing = False
        self._inputEnded = False
        self._hinted = False
        self._hintTimer: Timer | None = None
        self._drainCall: Timer | None = None
        self._joinTimer: Timer | None = None
        if limits.join_timeout:
            self._joinTimer = clock.callLater(limits.join_timeout, self._joinTimedOut)
        self.log.info("connection from {peer}", peer=peer)
        self.deliver(shared.greeting)

    # Output and flow control

    def deliver(self, data: bytes) -> Delivery:
        """
        Queue C{data} for this client, dropping it if it stopped reading.
        It is handed on at the end of the turn (the L{Gatherer}).
        """
        if self._gone:
            return Delivery.DROPPED
        if self.blocked and self._overflows(len(data)):
            return Delivery.DROPPED
        out = self._out
        if not out:
            self._outbox.add(self)
        out.append(data)
        unsent = self.unsent = self.unsent + len(data)
        if unsent >= FLUSH_AT:
            self.flush()
        return _DELIVERED

    def ready(self, size: int) -> bool:
        return not (self.blocked or self._gone) and self.unsent + size < FLUSH_AT

    @property
    def machine(self) -> bool:
        return self.format.machine

    def flush(self) -> None:
        """Hand what this turn gathered for the client on to its connection."""
        out = self._out
        if out:
            data = b"".join(out)
            out.clear()
            self.unsent = 0
            self.link.write(data)

    def pause(self) -> None:
        """The client stopped reading: from now on, what is queued is counted."""
        if not self.blocked:
            self.blocked = True
            self._queuedWhileBlocked = 0

    def resume(self) -> None:
        self.blocked = False
        if self._queuedWhileBlocked:
            self._queuedWhileBlocked = 0
            self._account()

    def charge(self, size: int) -> None:
        """
        Count C{size} bytes that went to the client's connection without
        passing through L{deliver} (a WebSocket's pongs, its close frame,
        its framing): they fill the same buffer, so they count against the
        same C{max_outbound} while the client does not read.
        """
        if self.blocked and not self._gone:
            self._overflows(size)

    def _overflows(self, size: int) -> bool:
        """
        Count C{size} more bytes queued past the full buffer; past
        C{max_outbound}, drop the client.

        @return: whether the client was dropped.
        """
        self._queuedWhileBlocked += size
        if self._queuedWhileBlocked > self.limits.max_outbound:
            self._dropSlowConsumer()
            return True
        self._account()
        return self._gone

    def _account(self) -> None:
        """
        Tell the server what this connection has waiting now (output for a
        client that does not read, input waiting for flood control). Each
        is bounded per connection; past C{--max-buffered} for all of them
        together, the connection with the most waiting is dropped (this one
        or another), so that many clients each under their limits cannot
        take the server's memory.
        """
        buffered = self.shared.buffered
        waiting = self._backlogBytes + (self._queuedWhileBlocked if self.blocked else 0)
        buffered.set(self, 0 if self._gone else waiting)
        limit = self.limits.max_buffered
        while limit and buffered.total > limit:
            buffered.largest()._dropOverBudget()

    def _dropOverBudget(self) -> None:
        waiting = self.shared.buffered.by.get(self, 0)
        self._gone = True
        self._cancelTimers()
        name = self._leave()
        self.shared.buffered.set(self, 0)
        self.shared.stats.limits["max_buffered"] += 1
        self._out.clear()
        self._backlog = None
        self.log.warn(
            "dropped {name} at {peer}: {waiting} bytes waiting, the most while all clients "
            "had more than {limit}",
            name=name or "(unregistered)",
            peer=self.peer,
            waiting=waiting,
            limit=self.limits.max_buffered,
        )
        self.link.abort()
        if name is not None:
            self._announce(Kind.REMOVED, name, "Memory Limit")

    def _dropSlowConsumer(self) -> None:
        self._gone = True
        self._cancelTimers()
        self.shared.buffered.set(self, 0)
        name = self._leave()
        self.shared.stats.limits["max_outbound"] += 1
        self._out.clear()
        self.log.warn(
            "dropped slow consumer {name} at {peer}: more than {limit} bytes unread",
            name=name or "(unregistered)",
            peer=self.peer,
            limit=self.limits.max_outbound,
        )
        self.link.abort()
        if name is not None:
            self._announce(Kind.REMOVED, name, "Slow Consumer")

    # Leaving

    def close(self, data: bytes = b"") -> None:
        """Send C{data}, leave the room, and close the connection."""
        if self._gone:
            return
        self.deliver(data)
        self.flush()
        self._gone = True
        self._cancelTimers()
        self._leave()
        self.link.close()

    def bye(self, reason: str, details: str, *fields: object) -> None:
        """
        Tell the client why its connection is closed, then close it. A user
        an operator removes (KICK, BAN, from any node) is announced to the
        others as one removed by a limit is (L{remove}).
        """
        name = self.name
        self.close(self.format.bye(reason, details, *fields))
        if name is not None and reason in (grammar.KICKED, grammar.BANNED):
            self._announce(Kind.REMOVED, name, reason)

    def flooded(self, limit: str, why: str, details: str, *fields: object) -> None:
        """
        Disconnect a client that sent more than a limit allows (lines waiting
        for flood control, a WebSocket's empty frames): counted under
        C{limit}, logged with C{why}, told C{BYE Flooding: details}, and
        announced to the others.
        """
        self.shared.stats.limits[limit] += 1
        self.log.warn("disconnecting {who}: flooding, {why}", who=self.name or self.peer, why=why)
        self.remove(grammar.FLOODING, details, *fields)

    def remove(self, reason: str, details: str, *fields: object) -> None:
        """
        The server removes this user for a limit (idle, flooding). The
        client gets C{BYE reason}, and every other user a presence notice
        with the reason.
        """
        name = self.name
        self.close(self.format.bye(reason, details, *fields))
        if name is not None:
            self._announce(Kind.REMOVED, name, reason)

    def _announce(self, kind: Kind, name: str, *fields: str) -> None:
        """Tell the others what became of C{name} (made once, for all of them)."""
        reached = self.room.announce(presence.notice(kind, name, *fields), self)
        self.shared.stats.relayed["presence"] += reached

    def connectionLost(self) -> None:
        """The connection is gone, however it went: the user too."""
        self._gone = True
        self.shared.buffered.set(self, 0)
        self._out.clear()
        self._cancelTimers()
        if self.name is not None:
            self._goAway()

    def _cancelTimers(self) -> None:
        """Nothing more is done for a connection that is closing."""
        if isinstance(self.link, EditMode):
            self.link.cancel()
        for call in (self._joinTimer, self._drainCall, self._hintTimer, self._readCall):
            if call is not None and call.active():
                call.cancel()
        self._joinTimer = self._drainCall = self._hintTimer = self._readCall = None

    def _leave(self) -> str | None:
        """Leave the room now, so the name is free at once; return the name."""
        name = self.name
        left = name is not None and self.room.leave(self)
        # Nameless even if the room no longer holds the name (a cluster node
        # that was cut off finds it taken on another node, and says BYE): a
        # connection that is closing keeps no name to hold or to send as.
        self.name = None
        return name if left else None

    def _goAway(self, how: str = "dropped the connection", kind: Kind = Kind.LOST) -> None:
        """
        The user is gone without QUIT (C{how}, told to the others as
        C{kind}): keep the name and the messages for a resume during the
        grace period, or free the name at once.
        """
        name, room, limits = str(self.name), self.room, self.limits
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
                self._announce(kind, name)
            return
        clock = self.shared.clock
        away = AwaySession(name, str(self.token), limits.max_held, clock.seconds() + limits.grace)
        away.prefs, away.lastInput = self.prefs, self.lastInput
        away.machine = self.format.machine
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
        self._announce(Kind.HELD, name, f"{limits.grace:g}")

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
            self.room.announce(presence.notice(Kind.EXPIRED, str(away.name)), None)

    # Timers

    def _joinTimedOut(self) -> None:
        self._joinTimer = None
        timeout = self.limits.join_timeout
        self.shared.stats.limits["join_timeout"] += 1
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

    def checkIdle(self, now: float) -> None:
        """
        Close the connection if the user sent nothing for the idle timeout;
        lines still waiting for flood control are not idleness.
        """
        timeout = self.limits.idle_timeout
        if self.name is not None and not self._backlog and now - self.lastInput >= timeout:
            self.shared.stats.limits["idle_timeout"] += 1
            self.log.info("closing {name}: idle for {timeout}s", name=self.name, timeout=timeout)
            self.remove(grammar.IDLE_TIMEOUT, f"nothing sent for {timeout:g} seconds", timeout)

    # Input

    def dataReceived(self, data: bytes) -> None:
        """One read from the client, in any segmentation."""
        rate = self.limits.input_rate
        if rate:
            self._meterInput(len(data), rate)
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
                self._hintTimer = self.shared.clock.callLater(HINT_AFTER, self._hintLineEnd)
            else:
                self._hintTimer.reset(HINT_AFTER)

    def _meterInput(self, size: int, rate: float) -> None:
        """
        Count C{size} bytes read against L{Limits.input_rate}; past it, read
        nothing more until the client has earned them. The kernel then holds
        what it sends, and a client that floods with input flood control
        never sees (telnet commands, stray bytes) costs the server no more
        than one sending lines at the limit.
        """
        clock = self.shared.clock
        now = clock.seconds()
        credit = (
            min(self.limits.input_burst, self._inputCredit + (now - self._inputAt) * rate) - size
        )
        self._inputCredit, self._inputAt = credit, now
        if credit >= 0 or self._readCall is not None or self._gone:
            return
        self.shared.stats.limits["input_rate"] += 1
        if not self._inputSlowed:
            self._inputSlowed = True
            self.log.warn(
                "slowing down {who}: more than {rate:g} bytes of input a second",
                who=self.name or self.peer,
                rate=rate,
            )
        self.link.pauseReading()
        self._readCall = clock.callLater(-credit / rate, self._resumeReading)

    def _resumeReading(self) -> None:
        self._readCall = None
        self.link.resumeReading()

    def inputEnded(self) -> None:
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
        lines: list[Line] = [*self._lines.end()]
        self.log.info(
            "{who} closed its input; closing after answering what it sent",
            who=self.name or self.peer,
        )
        if lines:
            self._input(lines)
        self._closeIfAnswered()

    def _closeIfAnswered(self) -> None:
        """After the end of input, close once nothing received waits for an answer."""
        if self._inputEnded and not self._gone and not self._backlog and not self._waiting:
            # Gone as a drop is, at once (closing telnet also ends its input):
            # the name is freed, or held for a resume with --grace, while the
            # last answers are on their way.
            if self.name is not None:
                self._goAway("ended its input", Kind.QUIT)
            self.close()

    def _input(self, lines: list[Line]) -> None:
        """Run complete lines now, as far as flood control allows; backlog the rest."""
        self.lastInput = self.shared.clock.seconds()
        if b"" in lines:
            # Empty lines get no answer, and cost neither a token nor a place
            # in the backlog (LF CR line ends make one per line).
            lines = [line for line in lines if line]
        if not self._waiting and not self._backlog:
            index = self._run(lines, 0)
            if index == len(lines) or self._gone:
                return
            lines = lines[index:]
        if self._backlog is None:
            self._backlog = []
        self._backlog += lines
        max_line = self.limits.max_line
        self._backlogBytes += sum(_inputSize(line, max_line) for line in lines)
        self._account()
        if not self._gone:
            self._drain()

    def _drain(self) -> None:
        """
        Run backlogged lines in order, as fast as the client's token bucket
        allows, and never past a command that waits for the room.
        """
        limits = self.limits
        if self._backlogBytes > limits.max_backlog:
            self.flooded(
                "max_backlog",
                f"more than {limits.max_backlog} bytes of input waiting",
                f"more than {limits.max_backlog} bytes of commands waiting; "
                f"send at most {limits.rate:g} lines per second",
                limits.max_backlog,
                limits.rate,
            )
            return
        backlog = self._backlog
        if self._drainCall is not None or self._waiting or self._gone or not backlog:
            if not backlog:
                self._closeIfAnswered()
            return
        index = self._run(backlog, 0, backlog=True)
        del backlog[:index]
        if self._gone or self._waiting:
            return
        if backlog:
            assert self._bucket is not None  # only flood control stops a run early
            self.shared.stats.limits["rate"] += 1
            wait = self._bucket.wait(self.shared.clock.seconds())
            self._drainCall = self.shared.clock.callLater(wait, self._drainLater)
            return
        self._backlog = None  # empty: free it
        self._closeIfAnswered()

    def _drainLater(self) -> None:
        self._drainCall = None
        self._drain()

    def _run(self, lines: list[Line], index: int, backlog: bool = False) -> int:
        """
        Run C{lines} from C{index} in order, as many as flood control allows
        now, until one waits for the room or the connection closes.

        Flood control grants its tokens for all of them at once; what a
        command sees is what it would see line by line: the tokens granted
        to the lines after it count as not yet spent (L{_granted}), and with
        C{backlog}, the backlog holds the lines after it.

        @return: the index of the first line not run.
        """
        end = len(lines)
        bucket = self._bucket
        if bucket is not None:
            end = index + bucket.grant(self.shared.clock.seconds(), end - index)
        self._processing = True
        try:
            while index < end and not self._gone and not self._waiting:
                line = lines[index]
                if line is LINE_TOO_LONG:
                    if backlog:
                        self._taken(lines, index, index + 1)
                    self._lineTooLong()
                    index += 1
                    continue
                following = index
                if self.name is not None:
                    head = line[:4].upper()
                    if head == b"MESG":
                        following = self._mesgs(lines, index, end)
                    elif head == b"BCST":
                        following = self._bcsts(lines, index, end)
                    elif head.startswith((b"ME ", b"ME\t")):  # a row of actions
                        following = self._bcsts(lines, index, end, "ME")
                if following > index:
                    if backlog:
                        self._taken(lines, index, following)
                    index = following
                else:  # another command, or a near miss ("MESGX") that is one
                    if backlog:
                        self._taken(lines, index, index + 1)
                    self._granted = end - index - 1
                    self._command(line)
                    index += 1
        finally:
            self._processing = False
            self._granted = 0
        if bucket is not None and end > index:
            bucket.refund(end - index)
        return index

    def _taken(self, lines: list[Line], start: int, end: int) -> None:
        """Lines of the backlog that run now leave its count of bytes."""
        max_line = self.limits.max_line
        self._backlogBytes -= sum(_inputSize(line, max_line) for line in lines[start:end])
        self._account()

    def _wait(self, answer: Later[object]) -> None:
        """No more input is run before the room's answer comes (a cluster)."""
        self._waiting = True
        answer.then(self._continue, self._continue)

    def _continue(self, result: object) -> None:
        """The answer that input waited for came: go on with the next line."""
        self._waiting = False
        if not self._processing:  # else the loop that is running goes on
            self._drain()

    def _lineTooLong(self) -> None:
        """Refuse an overlong line but keep the connection: its rest is skipped."""
        self.log.warn(
            "{who} sent a line longer than {limit} bytes",
            who=self.name or self.peer,
            limit=self.limits.max_line,
        )
        self.shared.stats.limits["max_line"] += 1
        self._error(
            grammar.LINE_TOO_LONG,
            f"lines are limited to {self.limits.max_line} bytes; it was discarded",
        )

    # Commands

    def _command(self, line: bytes) -> None:
        """Run one line that is not a MESG or BCST in the registered fast form."""
        text = decode(line)
        if not text:
            return
        verb, rest = split_command(text)
        if verb in ("MESG", "BCST", "ME"):
            if self.name is None:
                self.shared.stats.commands[verb] += 1
                self._unregistered(verb)
            elif self.muted and self._silenced(verb):
                self.shared.stats.commands[verb] += 1
            elif verb == "MESG":  # spelled with leading blanks or controls
                self._mesgs([line], 0, 1)
            else:  # a BCST so spelled, or an action: a row of one
                self._bcsts([line], 0, 1, verb)
            return
        handler: Callable[[str], None] | None = getattr(self, "do_" + verb, None)
        self.shared.stats.commands[verb if handler else "unknown"] += 1
        if handler is None:
            if self.name is None:
                self._unregistered(verb)
                return
            self.log.info("{name} sent an unknown command {verb!r}", name=self.name, verb=verb)
            self._error(grammar.UNKNOWN_MESSAGE, f"{verb} is not a command; HELP lists them", verb)
        elif self.name is None and verb not in BEFORE_JOIN:
            self._unregistered(verb)
        elif not (self.muted and verb in MUTED_VERBS and self._silenced(verb)):
            try:
                handler(rest)
            except RoomUnavailable:
                self._unavailable()

    def _unregistered(self, verb: str) -> None:
        self.log.info("unregistered {peer} sent {verb!r}", peer=self.peer, verb=verb)
        self._error(grammar.UNREGISTERED_USER, grammar.HOW_TO_JOIN)

    def _unavailable(self) -> None:
        self._error(grammar.CLUSTER_UNAVAILABLE, "the cluster cannot be reached; try again soon")

    def _error(self, reason: str, details: str, *fields: object) -> None:
        self.shared.stats.errors[reason] += 1
        self.deliver(self.format.error(reason, details, *fields))

    def _whenDecided(self, answer: object, then: Callable[..., None], *args: object) -> None:
        """
        Call C{then(answer, *args)} now, or once the room has decided if it
        answered with a L{Later} (a cluster room); input waits for it.
        """
        if not isinstance(answer, Later):
            self._decided(answer, then, args)
            return
        settled: Later[object] = Later()
        self._wait(settled)

        def decided(result: object) -> None:
            try:
                if self._gone:  # the connection closed while the room decided
                    self._leave()
                else:
                    self._decided(result, then, args)
            finally:  # whatever happens, input goes on
                settled.resolve(None)

        def failed(error: Exception) -> None:
            if not self._gone:
                self._unavailable()
            settled.resolve(None)

        answer.then(decided, failed)

    def _decided(self, result: object, then: Callable[..., None], args: tuple[object, ...]) -> None:
        """The room's answer, then: a room that fails meanwhile is unavailable."""
        try:
            then(result, *args)
        except RoomUnavailable:
            self._unavailable()

    # JOIN

    def do_JOIN(self, rest: str) -> None:
        if self.name is not None:
            self.log.info("{name} sent JOIN {rest!r} again; discarded", name=self.name, rest=rest)
            self._error(
                grammar.ALREADY_REGISTERED,
                f"you are {self.name}; this JOIN was discarded",
                self.name,
            )
            return
        args = rest.split()
        if not 1 <= len(args) <= 2:
            self._error(grammar.USAGE, "JOIN <username> [<resume token>]")
            return
        name, token = args[0], args[1] if len(args) == 2 else None
        if not is_valid_name(name) or (token is not None and not is_token(token)):
            # "JOIN Bob Smith" is a name with a space, not a resume.
            self._refuseJoin(rest, "invalid name", grammar.INVALID_USERNAME, NAME_RULE)
            return
        banned = self.shared.moderation.joinRefusal(name)
        if banned is not None:
            self._refuseJoin(name, "banned", banned.reason, banned.details, *banned.fields)
            return
        held = self.room.findLocal(name)
        if isinstance(held, AwaySession):
            if token is not None and held.matches(token):
                self._resume(held)
            elif token is not None:
                self._refuseJoin(
                    name,
                    "wrong resume token",
                    grammar.INVALID_TOKEN,
                    f"that is not the resume token of {held.name}",
                    repeated="JOINs with a wrong resume token",
                )
            else:
                self._refuseTaken(name, held)
            return
        if token is not None and held is None:
            self._refuseJoin(
                name,
                "nothing to resume",
                grammar.INVALID_TOKEN,
                f"no dropped session of {name} is waiting; JOIN {name} to start anew"
                if self.limits.grace
                else f"this server keeps no session after a dropped connection; JOIN {name}",
                repeated="JOINs with a token and nothing to resume",
            )
            return
        self._whenDecided(self.room.join(name, self), self._joinDecided, name)

    def _joinDecided(self, admission: Admission, name: str) -> None:
        room = self.room
        if admission is Admission.FULL:
            self._refuseJoin(
                name,
                "server full",
                grammar.TOO_MANY_USERS,
                f"{len(room)} of {room.capacity} users are registered; try again later",
                len(room),
                room.capacity,
            )
        elif admission is Admission.TAKEN:
            self._refuseTaken(name, room.findLocal(name))
        else:
            # Without a grace period there is nothing to resume: no token.
            self.token = new_token() if self.limits.grace else None
            self._joined()
            self.log.info(
                "{name} joined from {peer} ({count}/{capacity} users)",
                name=name,
                peer=self.peer,
                count=len(room),
                capacity=room.capacity,
            )
            resume = f" (resume token: {self.token})" if self.token else ""
            self.deliver(
                self.format.ok(
                    "JOIN",
                    f"{name} {len(room)}/{room.capacity}{resume}",
                    name,
                    len(room),
                    room.capacity,
                    self.token or "-",
                )
            )
            self._announce(Kind.JOIN, name)

    def _resume(self, away: AwaySession) -> None:
        """Take the name back from an away session and replay what it held."""
        if away.timer is not None and away.timer.active():
            away.timer.cancel()
        self.room.replace(away, self)
        self.prefs = away.prefs
        # A token seen once (on a shared screen, in a log) must not take the
        # name again later: every resume issues a new one.
        self.token = new_token()
        self._joined()
        replayed, dropped, room = len(away.held), away.dropped, self.room
        self.log.info(
            "{name} resumed from {peer}: {replayed} held messages replayed, {dropped} dropped",
            name=self.name,
            peer=self.peer,
            replayed=replayed,
            dropped=dropped,
        )
        self.deliver(
            b"".join(away.held)
            + self.format.ok(
                "JOIN",
                f"{self.name} {len(room)}/{room.capacity} (resume token: {self.token}) resumed: "
                f"{replayed} held messages replayed, {dropped} older ones dropped",
                self.name,
                len(room),
                room.capacity,
                self.token,
                "resumed",
                replayed,
                dropped,
            )
        )
        self._announce(Kind.RESUMED, str(self.name))

    def _joined(self) -> None:
        self.muted = self.shared.moderation.isMuted(str(self.name))
        if self._joinTimer is not None and self._joinTimer.active():
            self._joinTimer.cancel()
        self._joinTimer = None

    def _refuseTaken(self, name: str, holder: Member | None) -> None:
        if isinstance(holder, AwaySession):
            left = max(0, round(holder.expires - self.shared.clock.seconds()))
            self._refuseJoin(
                name,
                "name held for a resume",
                grammar.USERNAME_TAKEN,
                f"{holder.name} is held for a user who lost the connection, "
                f"for {left} more seconds",
                holder.name,
                "away",
                left,
            )
        else:
            self._refuseJoin(
                name, "name taken", grammar.USERNAME_TAKEN, f"{name} is already registered", name
            )

    def _refuseJoin(
        self,
        name: str,
        why: str,
        reason: str,
        details: str,
        *fields: object,
        repeated: str | None = None,
    ) -> None:
        """
        Refuse a JOIN with a status line; with C{repeated}, a refusal the
        specification does not name (a resume token), whose repeats from one
        address are summarised under that name (L{chat.core.repeats}).
        """
        status = {
            "name": name,
            "peer": self.peer,
            "why": why,
            "count": len(self.room),
            "capacity": self.room.capacity,
        }
        if repeated is None:
            self.log.info(REFUSED_JOIN, **status)
        else:
            self.shared.repeats.info(repeated, self.host, REFUSED_JOIN, **status)
        self._error(reason, details, *fields)

    # MESG

    def _mesgs(self, lines: list[Line], start: int, end: int) -> int:
        """
        MESG: relay the private messages that start at C{lines[start]}, up to
        C{end} or the first line that is not one.

        A message to a member who takes it as it is (present, reading, not
        this user) is delivered, and the receipts, counts and status lines of
        a row of them are made at once. Any other outcome (unknown, held,
        sent to another node, dropped, to oneself, or a room that answers
        later) first answers the row before it, so that every reply and
        status line is in the order of the lines.

        @return: the index of the first line not handled.
        """
        if self.muted:  # refused line by line (_command)
            return start
        name = str(self.name)
        head = b"MESG %b: " % name.encode()
        find = self.room.find
        delivered: list[str] = []
        pending, index = 0, start  # pending: the bytes of the receipts not yet made
        while index < end and not self._gone:
            line = lines[index]
            if line is LINE_TOO_LONG:
                break
            if line.isascii():
                words = line.translate(None, CONTROL_BYTES).split(None, 2)
                if not words or words[0].upper() != b"MESG":
                    break
                if len(words) == 3:
                    to, text = words[1].decode(), words[2].rstrip()
                else:
                    to, text = "", b""
            else:
                parts = _mesgParts(line)
                if parts is None:
                    break
                to, text = parts
            index += 1
            if not to:
                self._receipts(delivered)
                pending = 0
                self.shared.stats.commands["MESG"] += 1
                self._error(grammar.USAGE, "MESG <username> <text>")
                continue
            data = head + text + b"\r\n"
            try:
                recipient = find(to)
            except RoomUnavailable:
                self._receipts(delivered)
                pending = 0
                self.shared.stats.commands["MESG"] += 1
                self._unavailable()
                continue
            if (
                recipient.__class__ is Session  # present, on this node, answering now
                and recipient is not self
                and not self.blocked  # a receipt of its own might drop this client
                and recipient.prefs is None  # not away, ignoring nobody
                and recipient.ready(len(data))
            ):
                recipient.deliver(data)  # queued, as ready() said: DELIVERED
                delivered.append(to := str(recipient.name))
                pending += len(to) + RECEIPT_SIZE
                if self.unsent + pending >= FLUSH_AT:
                    # Handed on there, as line by line: flow control may follow.
                    self._receipts(delivered)
                    pending = 0
                continue
            self._receipts(delivered)
            pending = 0
            self.shared.stats.commands["MESG"] += 1
            self._whenDecided(recipient, self._relay, to, data)
            if self._waiting:
                break
        self._receipts(delivered)
        return index

    def _receipts(self, delivered: list[str]) -> None:
        """Answer, count and log a row of messages delivered, then forget it."""
        if not delivered:
            return
        count, stats, relay_log = len(delivered), self.shared.stats, self.shared.relay_log
        stats.commands["MESG"] += count
        stats.relayed["mesg"] += count
        if relay_log is not None:
            relay_log.delivered(str(self.name), delivered)
        self.deliver(self.format.receipts(delivered))
        delivered.clear()

    def _relay(self, recipient: Member | None, to: str, data: bytes) -> None:
        """One MESG whose outcome is not a plain delivery: answered on its own."""
        if recipient is None:
            self.log.info("{name} sent MESG to unknown recipient {to!r}", name=self.name, to=to)
            self._error(grammar.UNKNOWN_RECIPIENT, f"nobody named {to} is registered", to)
            return
        name = str(recipient.name)  # a recipient dropped by this delivery loses its name
        prefs = recipient.prefs
        if prefs is None or prefs.accepts(str(self.name)):
            outcome = recipient.deliver(data)
            logged = value = outcome.value
        else:  # ignored: the sender is told what it would have been told
            outcome = Delivery.HELD if recipient.away else Delivery.DELIVERED
            value, logged = outcome.value, "ignored"
        relay_log = self.shared.relay_log
        if relay_log is not None:
            relay_log.mesg(str(self.name), name, logged)
        if outcome is Delivery.DROPPED:
            self._error(
                grammar.MESSAGE_DROPPED,
                f"{name} stopped reading and was disconnected; it was not delivered",
                name,
            )
            return
        self.shared.stats.relayed["mesg"] += 1
        if outcome is Delivery.HELD:
            details = f"{name} held: {name} lost the connection and gets it on resuming"
            self.deliver(self.format.ok("MESG", details, name, value))
        elif prefs is not None and prefs.away is not None:
            away = prefs.away
            details = f"{name} {value} (away: {away})"
            self.deliver(self.format.ok("MESG", details, name, value, "AWAY", away))
        else:
            self.deliver(self.format.receipt(name, value))

    # BCST

    def _bcsts(self, lines: list[Line], start: int, end: int, kind: str = "BCST") -> int:
        """
        BCST, and ME (C{kind}): broadcast the lines that start at
        C{lines[start]}, up to C{end} or the first line that is not a
        C{kind} with text, each with its reply and status line. The row goes
        in one piece to each member who is reading (L{Room.broadcast}); it
        ends where its replies would take this client's output to
        L{FLUSH_AT}, or its text to L{BCST_RUN_SIZE}. An action is written
        in each recipient's format; both are kept in the history.

        @return: the index of the first line not handled.
        """
        if self.muted:  # refused line by line (_command)
            return start
        name = str(self.name)
        relayed: list[bytes] = []
        texts: list[str] = []
        machine: list[bytes] | None = None if kind == "BCST" else []
        unsent, size, index = self.unsent, 0, start
        if self.blocked:
            # A reply of its own might drop this client: line by line, the
            # lines after that one would not be relayed.
            end = min(end, start + 1)
        while index < end:
            line = lines[index]
            if line is LINE_TOO_LONG:
                break
            cleaned = decode(line)
            verb, text = split_command(cleaned) if cleaned else ("", "")
            if verb != kind or (not text and relayed):
                break
            index += 1
            if not text:
                self.shared.stats.commands[kind] += 1
                self._error(grammar.USAGE, f"{kind} <text>")
                return index
            if machine is None:
                data = grammar.relayed("BCST", name, text)
            else:
                data, form = grammar.action(name, text)
                machine.append(form)
            relayed.append(data)
            texts.append(text)
            unsent += BCST_REPLY_SIZE
            size += len(data)
            if unsent >= FLUSH_AT or size >= BCST_RUN_SIZE:
                break
        if relayed:
            self.shared.stats.commands[kind] += len(relayed)
            self._broadcast(kind, relayed, texts, machine)
        return index

    def _broadcast(
        self, kind: str, relayed: list[bytes], texts: list[str], machine: list[bytes] | None
    ) -> None:
        """
        Broadcast each of C{relayed}, then its count, status line and reply;
        keep those broadcast in the history, once each.
        """
        name, shared, answered = str(self.name), self.shared, 0
        stats, relay_log = shared.stats, shared.relay_log
        try:
            for reached, held in self.room.broadcast(relayed, self, machine):
                stats.relayed["bcst"] += reached
                if relay_log is not None:
                    relay_log.bcst(name, reached, kind)
                details = f"{reached}" + (f" ({held} of them away, held for them)" if held else "")
                self.deliver(self.format.ok(kind, details, reached, held))
                answered += 1
        except RoomUnavailable:
            for _ in relayed[answered:]:
                self._unavailable()
        if answered:
            kept = texts if answered == len(texts) else texts[:answered]
            shared.history.keep(shared.clock.seconds(), kind, name, kept)

    # The other commands

    def do_LIST(self, rest: str) -> None:
        self._whenDecided(self.room.names(), self._listed)

    def _listed(self, names: list[Listed]) -> None:
        self.log.info("{name} listed {count} users", name=self.name, count=len(names))
        user, now = self.format.user, self.shared.clock.seconds()
        self.deliver(
            b"".join(
                user(name, held, None if last is None else int(now - last), away)
                for name, held, last, away in names
            )
            + self.format.ok("LIST", str(len(names)), len(names))
        )

    def do_HISTORY(self, rest: str) -> None:
        history = self.shared.history
        try:
            count = wanted(rest, history.size)
        except ValueError as error:
            self._error(grammar.USAGE, str(error))
            return
        if not count:
            self._replayed([])
            return
        self._whenDecided(history.recent(count), self._replayed)

    def _replayed(self, entries: list[Entry]) -> None:
        self.log.info(
            "{name} asked for the history: {count} broadcasts replayed",
            name=self.name,
            count=len(entries),
        )
        hist, count = self.format.hist, len(entries)
        none = b"" if self.shared.history.size else grammar.info("This server keeps no broadcasts.")
        self.deliver(
            b"".join([hist(*entry) for entry in entries])
            + none
            + self.format.ok("HISTORY", str(count), count)
        )

    def do_HELP(self, rest: str) -> None:
        self.deliver(
            grammar.help_text(bool(self.limits.grace))
            + self.shared.moderation.help(self)
            + self.format.ok("HELP", "-")
        )

    def do_MODE(self, rest: str) -> None:
        mode = rest.upper()
        words = mode.split()
        if words[:1] == ["EDIT"]:
            self._modeEdit(words[1:])
            return
        if mode == "LINE":
            left = self._endEdit()
            self.deliver(
                self.format.ok(
                    "MODE",
                    "LINE: your client echoes and edits lines again"
                    if left
                    else "LINE: already in line mode",
                    "LINE",
                )
            )
            return
        if mode not in ("MACHINE", "HUMAN"):
            self._error(grammar.USAGE, MODE_USAGE)
            return
        if mode == "MACHINE":
            self._endEdit()
        self.format = grammar.MACHINE if mode == "MACHINE" else grammar.HUMAN
        self.notices = presence.level(self.format.machine, self._noticesChosen)
        self.deliver(
            self.format.ok(
                "MODE",
                f"{mode}: version {grammar.MACHINE_VERSION} of the machine format",
                mode,
                grammar.MACHINE_VERSION,
            )
        )

    # Edit mode (chat.core.editmode)

    def _modeEdit(self, words: list[str]) -> None:
        """MODE EDIT [TIME] [BELL] [COLOR]: offer the telnet options; input waits for the answer."""
        try:
            look = Look.parse(words)
        except ValueError as error:
            self._error(grammar.USAGE, f"{error} is not a word of {MODE_USAGE}")
            return
        if self.format.machine or not self.link.terminal:
            self._error(
                grammar.USAGE,
                "MODE EDIT is for people at a telnet terminal (human format, not a WebSocket)",
            )
            return
        edit = self.link
        if isinstance(edit, EditMode):  # on already: a new look
            edit.look = look
            self._editOn(edit, "changed")
            return
        edit = EditMode(
            self, self.link, self.shared.clock, look, self.room.known, self.limits.max_line
        )
        self.link, self._telnet = edit, edit.telnet
        self.deliver(OFFER)
        self._whenDecided(edit.answer, self._editDecided, edit)

    def _editDecided(self, agreed: bool, edit: EditMode) -> None:
        """The client's answer to MODE EDIT: the editor in place, or line mode kept."""
        if agreed:
            self._lines = edit.editor
            self._editOn(edit, "on")
            return
        self.link, self._telnet = edit.inner, TelnetInput()
        self.log.info(
            "{who} did not agree to edit mode ({why})", who=self.name or self.peer, why=edit.why
        )
        self._error(grammar.NOT_A_TERMINAL, edit.refusal(), edit.why)

    def _editOn(self, edit: EditMode, how: str) -> None:
        """Edit mode is C{on}, or its look C{changed}: the OK and the status line."""
        look = edit.look.words()
        self.log.info(
            "{who} turned edit mode on ({look})"
            if how == "on"
            else "{who} changed edit mode ({look})",
            who=self.name or self.peer,
            look=" ".join(look) or "plain",
        )
        self.deliver(self.format.ok("MODE", edit.confirmation(), "EDIT", *look))

    def _endEdit(self) -> bool:
        """Leave edit mode, if on: the client echoes again. Whether it was on."""
        edit = self.link
        if not isinstance(edit, EditMode):
            return False
        self.flush()  # what was gathered in edit mode is shown in edit mode
        self.link, self._telnet = edit.inner, TelnetInput()
        self._lines = LineSplitter(self.limits.max_line)
        self.deliver(edit.end())
        self.log.info("{who} left edit mode", who=self.name or self.peer)
        return True

    def editEnded(self) -> None:
        """The client took the echo back (C{DONT ECHO}): line mode, and the user is told."""
        if self._endEdit():
            self.deliver(grammar.info("Edit mode ended: your telnet client echoes again"))

    def do_STATUS(self, rest: str) -> None:
        shared, room, limits = self.shared, self.room, self.limits
        now = shared.clock.seconds()
        status = self.format.status
        lines = [
            status("User", f"{self.name}, from {self.peer}", self.name, self.peer),
            status("Users", f"{len(room)} of {room.capacity}", len(room), room.capacity),
            status(
                "Connected",
                f"{now - self._connectedAt:.0f} seconds",
                round(now - self._connectedAt),
            ),
            status("Uptime", f"{now - shared.started:.0f} seconds", round(now - shared.started)),
        ]
        if self._bucket is not None:
            # Tokens granted to lines of this read after STATUS are not spent yet.
            budget = self._bucket.available(now) + self._granted
            lines.append(
                status(
                    "Rate",
                    f"{budget:.1f} of {limits.burst} lines left, {limits.rate:g} more per second",
                    f"{budget:.1f}",
                    limits.burst,
                    f"{limits.rate:g}",
                )
            )
        else:
            lines.append(status("Rate", "no limit", "off"))
        queued = self._queuedWhileBlocked if self.blocked else 0
        lines.append(
            status(
                "Outbound",
                f"{'blocked' if self.blocked else 'flowing'}, {queued} bytes queued past the "
                f"buffer, dropped past {limits.max_outbound}",
                "blocked" if self.blocked else "flowing",
                queued,
                limits.max_outbound,
            )
        )
        lines.append(
            status(
                "Input",
                f"{self._backlogBytes} bytes waiting, disconnected past {limits.max_backlog}",
                self._backlogBytes,
                limits.max_backlog,
            )
        )
        kept = shared.history.size
        lines.append(
            status(
                "History",
                f"the last {kept} broadcasts are kept; HISTORY replays them"
                if kept
                else "no broadcasts are kept",
                kept,
            )
        )
        self.deliver(b"".join(lines) + self.format.ok("STATUS", "-"))

    # Moderation (chat.core.moderation)

    def do_OPER(self, rest: str) -> None:
        self._whenDecided(self.shared.moderation.oper(self, rest), self._answer)

    def do_KICK(self, rest: str) -> None:
        self._whenDecided(self.shared.moderation.kick(self, rest), self._answer)

    def do_MUTE(self, rest: str) -> None:
        self._answer(self.shared.moderation.mute(self, rest))

    def do_UNMUTE(self, rest: str) -> None:
        self._answer(self.shared.moderation.unmute(self, rest))

    def do_BAN(self, rest: str) -> None:
        self._whenDecided(self.shared.moderation.ban(self, rest), self._answer)

    def do_UNBAN(self, rest: str) -> None:
        self._whenDecided(self.shared.moderation.unban(self, rest), self._answer)

    def _silenced(self, verb: str) -> bool:
        """Refuse a muted user's C{verb}, unless the mute has ended."""
        refusal = self.shared.moderation.silenced(self, verb)
        if refusal is None:
            return False
        self._answer(refusal)
        return True

    def _answer(self, answer: Answer) -> None:
        if isinstance(answer, Refusal):
            self._error(answer.reason, answer.details, *answer.fields)
        else:
            self.deliver(answer)

    # Presence notices, away and ignore (chat.core.presence, chat.core.personal)

    def do_NOTICES(self, rest: str) -> None:
        choice = rest.upper()
        if choice not in ("ON", "OFF"):
            self._error(grammar.USAGE, "NOTICES ON | NOTICES OFF")
            return
        self._noticesChosen = choice == "ON"
        self.notices = presence.level(self.format.machine, self._noticesChosen)
        self.log.info("{name} turned notices {choice}", name=self.name, choice=choice.lower())
        details = "users joining and leaving are shown" if choice == "ON" else "no more notices"
        self.deliver(self.format.ok("NOTICES", f"{choice.lower()}: {details}", choice))

    def do_AWAY(self, rest: str) -> None:
        if not rest:
            self._back("AWAY")
            return
        message, cut = away_message(rest)
        self._prefs().away = message
        self.log.info("{name} is away: {message!r}", name=self.name, message=message)
        note = f" (cut to {len(message)} characters)" if cut else ""
        self.deliver(self.format.ok("AWAY", f"you are away: {message}{note}", "on", message))

    def do_BACK(self, rest: str) -> None:
        self._back("BACK")

    def _back(self, verb: str) -> None:
        prefs = self.prefs
        if prefs is None or prefs.away is None:
            self.deliver(self.format.ok(verb, "you were not away", "off"))
            return
        prefs.away = None
        self._tidyPrefs()
        self.log.info("{name} is back", name=self.name)
        self.deliver(self.format.ok(verb, "you are back", "off"))

    def do_IGNORE(self, rest: str) -> None:
        if not rest:
            ignored = list(self.prefs.ignored.values()) if self.prefs is not None else []
            details = f"{len(ignored)} ignored: {', '.join(ignored)}" if ignored else "0 ignored"
            self.deliver(self.format.ok("IGNORE", details, len(ignored), *ignored))
            return
        name = self._ignorable(rest)
        if name is not None:
            self._whenDecided(self.room.find(name), self._ignoreFound, name)

    def _ignorable(self, rest: str) -> str | None:
        """The name of IGNORE, or C{None} once refused (usage, yourself, too many)."""
        if not is_valid_name(rest):
            self._error(grammar.USAGE, f"IGNORE <username>, where a username is {NAME_RULE}")
            return None
        if fold(rest) == fold(str(self.name)):
            self._error(grammar.USAGE, "you cannot ignore yourself")
            return None
        prefs = self.prefs
        full = prefs is not None and len(prefs.ignored) >= MAX_IGNORED
        if full and prefs is not None and fold(rest) not in prefs.ignored:
            self._error(
                grammar.USAGE,
                f"you ignore {MAX_IGNORED} users, the most; UNIGNORE one first",
                MAX_IGNORED,
            )
            return None
        return rest

    def _ignoreFound(self, member: Member | None, name: str) -> None:
        if member is None or member.name is None:
            self._error(grammar.UNKNOWN_RECIPIENT, f"nobody named {name} is registered", name)
            return
        name = member.name
        self._prefs().ignored[fold(name)] = name
        self.log.info("{name} ignores {other}", name=self.name, other=name)
        self.deliver(self.format.ok("IGNORE", f"{name}: nothing {name} writes reaches you", name))

    def do_UNIGNORE(self, rest: str) -> None:
        if not is_valid_name(rest):
            self._error(grammar.USAGE, f"UNIGNORE <username>, where a username is {NAME_RULE}")
            return
        prefs = self.prefs
        name = prefs.ignored.pop(fold(rest), None) if prefs is not None else None
        if name is None:
            self.deliver(self.format.ok("UNIGNORE", f"{rest}: you were not ignoring {rest}", rest))
            return
        self._tidyPrefs()
        self.log.info("{name} no longer ignores {other}", name=self.name, other=name)
        self.deliver(self.format.ok("UNIGNORE", f"{name}: you see what {name} writes", name))

    def _prefs(self) -> Prefs:
        """This user's preferences, made on first use (most users have none)."""
        if self.prefs is None:
            self.prefs = Prefs()
        return self.prefs

    def _tidyPrefs(self) -> None:
        """Back to none once empty: the message paths check only for C{None}."""
        if self.prefs is not None and self.prefs.empty():
            self.prefs = None

    def do_QUIT(self, rest: str) -> None:
        name = self._leave()
        if name is not None:
            self.log.info(
                "{name} quit ({count}/{capacity} users)",
                name=name,
                count=len(self.room),
                capacity=self.room.capacity,
            )
            self._announce(Kind.QUIT, name)
        else:
            self.log.info("unregistered {peer} quit", peer=self.peer)
        self.close(self.format.ok("QUIT", "Bye"))
