# -*- test-case-name: tests.test_protocol -*-
"""
The Twisted side of the server: one L{ChatProtocol} per connection, one
L{ChatFactory} shared by all of them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from chat import replies
from chat.commands import NAME_RULE, decode, is_valid_name, split_command
from chat.framing import LINE_TOO_LONG, LineSplitter, _LineTooLong
from chat.limits import Limits, PeerCount, TokenBucket
from chat.room import Admission, Delivery, Member, Room, RoomUnavailable
from chat.session import AwaySession, is_token, new_token
from chat.stats import Stats
from chat.telnet import TelnetInput

if TYPE_CHECKING:
    from chat.cluster import ClusterRoom


def describe(address: IAddress) -> tuple[str, str]:
    """
    @return: C{(host, peer)}: the address to count connections by, and
        C{host:port} (C{[host]:port} for IPv6) for the logs.
    """
    host = getattr(address, "host", None)
    if host is None:
        return str(address), str(address)
    return host, f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"


_T = TypeVar("_T")


def _inputSize(line: bytes | _LineTooLong, max_line: int) -> int:
    """The input bytes a line stands for (an overlong one: at least the limit)."""
    return max_line if line is LINE_TOO_LONG else len(line) + 1


class ChatProtocol(LineReceiver):
    """
    One telnet connection: unregistered until a successful JOIN.

    Input goes through L{TelnetInput} and L{LineSplitter} instead of
    C{LineReceiver}'s own splitting (see L{chat.framing} for why); each line
    is dispatched to a C{do_VERB} method. With flood control on, lines beyond
    the client's L{TokenBucket} wait in a backlog and are processed later.

    The protocol registers itself as the streaming producer of its own
    transport, so the transport tells it when its outbound buffer is full
    (C{pauseProducing}) and when it has drained (C{resumeProducing}). In
    between, bytes queued for it are counted: past C{max_outbound} the client
    is a slow consumer and is disconnected, so a client that never reads
    costs the server a bounded amount of memory.

    @ivar name: the registered name, or C{None} before JOIN and after leaving.
    """

    log = Logger()
    delimiter = replies.CRLF
    away = False

    def __init__(self, factory: ChatFactory, host: str, peer: str) -> None:
        self.factory = factory
        self.room = factory.room
        self.host = host
        self.peer = peer
        self.name: str | None = None
        self.token: str | None = None
        self.format: replies.Format = replies.HUMAN
        self._connectedAt = 0.0
        self._telnet = TelnetInput()
        self._lines = LineSplitter(factory.limits.max_line)
        self._blocked = False
        self._queuedWhileBlocked = 0
        self._gone = False
        self._admitted = False
        self._lastInput = 0.0
        self._joinTimer: IDelayedCall | None = None
        self._drainCall: IDelayedCall | None = None
        self._waiting: Deferred[None] | None = None
        self._processing = False
        self._bucket: TokenBucket | None = None
        self._backlog: deque[bytes | _LineTooLong] = deque()
        self._backlogBytes = 0

    # Connection lifecycle

    def connectionMade(self) -> None:
        factory, limits = self.factory, self.factory.limits
        refusal = factory.peers.admit(self.host, limits)
        if refusal is not None:
            factory.stats.limits["max_connections"] += 1
            self.log.info("refused connection from {peer}: {why}", peer=self.peer, why=refusal)
            self.transport.write(replies.HUMAN.bye(replies.TOO_MANY_CONNECTIONS, refusal))
            self._gone = True
            self.transport.loseConnection()
            return
        self._admitted = True
        self.transport.registerProducer(self, True)
        factory.connections.add(self)
        clock = factory.clock
        self._lastInput = self._connectedAt = clock.seconds()
        if limits.rate:
            self._bucket = TokenBucket(limits.rate, limits.burst, self._lastInput)
        if limits.join_timeout:
            self._joinTimer = clock.callLater(limits.join_timeout, self._joinTimedOut)
        self.log.info("connection from {peer}", peer=self.peer)
        self.deliver(replies.GREETING)

    def connectionLost(self, reason: Failure = None) -> None:
        self._gone = True
        if not self._admitted:
            return
        self._admitted = False
        self.factory.peers.release(self.host)
        self.factory.connections.discard(self)
        for call in (self._joinTimer, self._drainCall):
            if call is not None and call.active():
                call.cancel()
        if self.name is not None:
            self._goAway()
        self.factory.connectionClosed()

    def _goAway(self) -> None:
        """
        The connection dropped without QUIT: keep the name and the messages
        for a resume during the grace period, or free the name at once.
        """
        name, room, limits = str(self.name), self.room, self.factory.limits
        if not limits.grace:
            if self._leave() is not None:
                self.log.info(
                    "{name} dropped the connection from {peer} ({count}/{capacity} users)",
                    name=name,
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
            "{name} dropped the connection from {peer}; name held for {grace}s",
            name=name,
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
        self._gone = True
        self._leave()
        # A transport with a registered producer waits for it before closing.
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def bye(self, reason: str, details: str, *fields: object) -> None:
        """Tell the client why its connection is closed, then close it."""
        self.close(self.format.bye(reason, details, *fields))

    def _leave(self) -> str | None:
        """Leave the room now, so the name is free at once; return the name."""
        name = self.name
        if name is not None and self.room.leave(self):
            self.name = None
            return name
        return None

    def _joinTimedOut(self) -> None:
        self._joinTimer = None
        timeout = self.factory.limits.join_timeout
        self.factory.stats.limits["join_timeout"] += 1
        self.log.info("closing {peer}: no JOIN within {timeout}s", peer=self.peer, timeout=timeout)
        self.bye(replies.JOIN_TIMEOUT, f"no JOIN within {timeout:g} seconds", timeout)

    def _idleTimedOut(self) -> None:
        timeout = self.factory.limits.idle_timeout
        self.factory.stats.limits["idle_timeout"] += 1
        self.log.info(
            "closing {name}: idle for {timeout}s", name=self.name or self.peer, timeout=timeout
        )
        self.bye(replies.IDLE_TIMEOUT, f"nothing sent for {timeout:g} seconds", timeout)

    def checkIdle(self, now: float) -> None:
        """Close the connection if the user sent nothing for the idle timeout."""
        if self.name is not None and now - self._lastInput >= self.factory.limits.idle_timeout:
            self._idleTimedOut()

    # Output and flow control

    def deliver(self, data: bytes) -> Delivery:
        """Queue C{data} for this client, dropping it if it stopped reading."""
        if self._gone:
            return Delivery.DROPPED
        if self._blocked:
            self._queuedWhileBlocked += len(data)
            if self._queuedWhileBlocked > self.factory.limits.max_outbound:
                self._dropSlowConsumer()
                return Delivery.DROPPED
        self.transport.write(data)
        return Delivery.DELIVERED

    def pauseProducing(self) -> None:
        # The transport calls this again on every write while its buffer is
        # full: only the first call starts the count.
        # Input is still read: flood control bounds it, and a TLS transport
        # pauses its producer until the handshake is done, which needs input.
        if not self._blocked:
            self._blocked = True
            self._queuedWhileBlocked = 0

    def resumeProducing(self) -> None:
        self._blocked = False

    def _dropSlowConsumer(self) -> None:
        self._gone = True
        name = self._leave()
        self.factory.stats.limits["max_outbound"] += 1
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
        if not lines:
            return
        self._lastInput = self.factory.clock.seconds()
        if self._bucket is None and self._waiting is None and not self._backlog:
            self._processing = True
            try:
                for index, line in enumerate(lines):  # the fast path: nothing to wait for
                    if self._gone:
                        return
                    self._process(line)
                    if self._waiting is not None:
                        lines = lines[index + 1 :]
                        break
                else:
                    return
            finally:
                self._processing = False
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
                replies.FLOODING,
                f"more than {limits.max_backlog} bytes of commands waiting; "
                f"send at most {limits.rate:g} lines per second",
                limits.max_backlog,
                limits.rate,
            )
            return
        if self._drainCall is not None or self._waiting is not None:
            return
        clock, bucket, backlog = self.factory.clock, self._bucket, self._backlog
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
        finally:
            self._processing = False

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
            replies.LINE_TOO_LONG,
            f"lines are limited to {self.factory.limits.max_line} bytes; it was discarded",
        )

    def lineReceived(self, line: bytes) -> Deferred[None] | None:
        """
        Run one command.

        @return: a L{Deferred} if the command waits for the room; no later
            line is processed before it fires.
        """
        text = decode(line)
        if not text:
            return None
        verb, rest = split_command(text)
        handler: Callable[[str], Deferred[None] | None] | None = getattr(self, "do_" + verb, None)
        self.factory.stats.commands[verb if handler else "unknown"] += 1
        if handler is None:
            self.unknownCommand(verb)
        elif self.name is None and verb not in ("JOIN", "HELP", "QUIT", "MODE"):
            self.unregistered(verb)
        else:
            try:
                return handler(rest)
            except RoomUnavailable:
                self._unavailable()
        return None

    def _unavailable(self) -> None:
        self._error(replies.CLUSTER_UNAVAILABLE, "the cluster cannot be reached; try again soon")

    def unknownCommand(self, verb: str) -> None:
        if self.name is None:
            self.unregistered(verb)
            return
        self.log.info("{name} sent an unknown command {verb!r}", name=self.name, verb=verb)
        self._error(replies.UNKNOWN_MESSAGE, f"{verb} is not a command; HELP lists them", verb)

    def unregistered(self, verb: str) -> None:
        self.log.info("unregistered {peer} sent {verb!r}", peer=self.peer, verb=verb)
        self._error(replies.UNREGISTERED_USER, replies.HOW_TO_JOIN)

    def _error(self, reason: str, details: str, *fields: object) -> None:
        self.factory.stats.errors[reason] += 1
        self.deliver(self.format.error(reason, details, *fields))

    # Commands

    def do_JOIN(self, rest: str) -> Deferred[None] | None:
        if self.name is not None:
            self.log.info("{name} sent JOIN {rest!r} again; discarded", name=self.name, rest=rest)
            self._error(
                replies.ALREADY_REGISTERED,
                f"you are {self.name}; this JOIN was discarded",
                self.name,
            )
            return None
        args = rest.split()
        if not 1 <= len(args) <= 2:
            self._error(replies.USAGE, "JOIN <username> [<resume token>]")
            return None
        name, token = args[0], args[1] if len(args) == 2 else None
        if not is_valid_name(name) or (token is not None and not is_token(token)):
            # "JOIN Bob Smith" is a name with a space, not a resume.
            self._refuseJoin(rest, "invalid name", replies.INVALID_USERNAME, NAME_RULE)
            return None
        held = self.room.findLocal(name)
        if isinstance(held, AwaySession):
            if token is not None and held.matches(token):
                self._resume(held)
            elif token is not None:
                self._refuseJoin(
                    name,
                    "wrong resume token",
                    replies.INVALID_TOKEN,
                    f"that is not the resume token of {held.name}",
                )
            else:
                self._refuseTaken(name, held)
            return None
        if token is not None and held is None:
            self._refuseJoin(
                name,
                "nothing to resume",
                replies.INVALID_TOKEN,
                f"no dropped session of {name} is waiting; JOIN {name} to start anew",
            )
            return None
        return self._whenDecided(self.room.join(name, self), self._joinDecided, name)

    def _resume(self, away: AwaySession) -> None:
        """Take the name back from an away session and replay what it held."""
        if away.timer is not None and away.timer.active():
            away.timer.cancel()
        self.room.replace(away, self)
        self.token = away.token
        self._joined()
        replayed, dropped = len(away.held), away.dropped
        room = self.room
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

    def _whenDecided(
        self, result: _T | Deferred[_T], then: Callable[..., None], *args: object
    ) -> Deferred[None] | None:
        """
        Call C{then(result, *args)} now, or once the room has decided if it
        answered with a L{Deferred} (a cluster room); that L{Deferred} is
        returned so that later input waits for it.
        """
        if not isinstance(result, Deferred):
            then(result, *args)
            return None
        return result.addCallback(self._unlessGone, then, args).addErrback(self._roomFailed)

    def _unlessGone(self, result: _T, then: Callable[..., None], args: tuple[object, ...]) -> None:
        if self._gone:  # the connection closed while the room decided
            self._leave()
        else:
            then(result, *args)

    def _roomFailed(self, failure: Failure) -> None:
        if not failure.check(RoomUnavailable):
            self.log.failure("the room failed", failure)
        if not self._gone:
            self._unavailable()

    def _joinDecided(self, admission: Admission, name: str) -> None:
        room = self.room
        if admission is Admission.FULL:
            self._refuseJoin(
                name,
                "server full",
                replies.TOO_MANY_USERS,
                f"{len(room)} of {room.capacity} users are registered; try again later",
                len(room),
                room.capacity,
            )
        elif admission is Admission.TAKEN:
            self._refuseTaken(name, self.room.findLocal(name))
        else:
            self.token = new_token()
            self._joined()
            self.log.info(
                "{name} joined from {peer} ({count}/{capacity} users)",
                name=name,
                peer=self.peer,
                count=len(room),
                capacity=room.capacity,
            )
            self.deliver(
                self.format.ok(
                    "JOIN",
                    f"{name} {len(room)}/{room.capacity} (resume token: {self.token})",
                    name,
                    len(room),
                    room.capacity,
                    self.token,
                )
            )

    def _joined(self) -> None:
        if self._joinTimer is not None and self._joinTimer.active():
            self._joinTimer.cancel()
            self._joinTimer = None

    def _refuseTaken(self, name: str, holder: object) -> None:
        if isinstance(holder, AwaySession):
            left = max(0, round(holder.expires - self.factory.clock.seconds()))
            self._refuseJoin(
                name,
                "name held for a resume",
                replies.USERNAME_TAKEN,
                f"{holder.name} is held for a user who lost the connection, "
                f"for {left} more seconds",
                holder.name,
                "away",
                left,
            )
        else:
            self._refuseJoin(
                name, "name taken", replies.USERNAME_TAKEN, f"{name} is already registered", name
            )

    def _refuseJoin(self, name: str, why: str, reason: str, details: str, *fields: object) -> None:
        self.log.info(
            "refused JOIN {name!r} from {peer}: {why} ({count}/{capacity} users)",
            name=name,
            peer=self.peer,
            why=why,
            count=len(self.room),
            capacity=self.room.capacity,
        )
        self._error(reason, details, *fields)

    def do_LIST(self, rest: str) -> Deferred[None] | None:
        return self._whenDecided(self.room.names(), self._listed)

    def _listed(self, names: list[tuple[str, bool]]) -> None:
        self.log.info("{name} listed {count} users", name=self.name, count=len(names))
        user = self.format.user
        self.deliver(
            b"".join(user(name, away) for name, away in names)
            + self.format.ok("LIST", str(len(names)), len(names))
        )

    def do_MESG(self, rest: str) -> Deferred[None] | None:
        parts = rest.split(None, 1)
        if len(parts) < 2:
            self._error(replies.USAGE, "MESG <username> <text>")
            return None
        to, text = parts
        return self._whenDecided(self.room.find(to), self._relay, to, text)

    def _relay(self, recipient: Member | None, to: str, text: str) -> None:
        if recipient is None:
            self.log.info("{name} sent MESG to unknown recipient {to!r}", name=self.name, to=to)
            self._error(replies.UNKNOWN_RECIPIENT, f"nobody named {to} is registered", to)
            return
        name = str(recipient.name)  # a recipient dropped by this delivery loses its name
        outcome = recipient.deliver(replies.relayed("MESG", str(self.name), text))
        self.log.info(
            "MESG {name} -> {to}: {outcome}", name=self.name, to=name, outcome=outcome.value
        )
        if outcome is Delivery.DROPPED:
            self._error(
                replies.MESSAGE_DROPPED,
                f"{name} stopped reading and was disconnected; it was not delivered",
                name,
            )
            return
        self.factory.stats.relayed["mesg"] += 1
        if outcome is Delivery.HELD:
            details = f"{name} held: {name} lost the connection and gets it on resuming"
        else:
            details = f"{name} {outcome.value}"
        self.deliver(self.format.ok("MESG", details, name, outcome.value))

    def do_BCST(self, rest: str) -> None:
        if not rest:
            self._error(replies.USAGE, "BCST <text>")
            return
        reached, held = self.room.broadcast(replies.relayed("BCST", str(self.name), rest), self)
        self.factory.stats.relayed["bcst"] += reached
        self.log.info("BCST from {name} reached {count} users", name=self.name, count=reached)
        details = f"{reached}" + (f" ({held} of them away, held for them)" if held else "")
        self.deliver(self.format.ok("BCST", details, reached, held))

    def do_HELP(self, rest: str) -> None:
        self.deliver(b"".join(map(replies.info, replies.HELP_TEXT)) + self.format.ok("HELP", "-"))

    def do_MODE(self, rest: str) -> None:
        mode = rest.upper()
        if mode not in ("MACHINE", "HUMAN"):
            self._error(replies.USAGE, "MODE MACHINE | MODE HUMAN")
            return
        self.format = replies.MACHINE if mode == "MACHINE" else replies.HUMAN
        self.deliver(
            self.format.ok(
                "MODE",
                f"{mode}: version {replies.MACHINE_VERSION} of the machine format",
                mode,
                replies.MACHINE_VERSION,
            )
        )

    def do_STATUS(self, rest: str) -> None:
        factory, room, limits = self.factory, self.room, self.factory.limits
        now = factory.clock.seconds()
        status = self.format.status
        lines = [
            status("User", f"{self.name}, from {self.peer}", self.name, self.peer),
            status("Users", f"{len(room)} of {room.capacity}", len(room), room.capacity),
            status(
                "Connected",
                f"{now - self._connectedAt:.0f} seconds",
                round(now - self._connectedAt),
            ),
            status("Uptime", f"{now - factory.started:.0f} seconds", round(now - factory.started)),
        ]
        if self._bucket is not None:
            budget = self._bucket.available(now)
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
        queued = self._queuedWhileBlocked if self._blocked else 0
        lines.append(
            status(
                "Outbound",
                f"{'blocked' if self._blocked else 'flowing'}, {queued} bytes queued past the "
                f"buffer, dropped past {limits.max_outbound}",
                "blocked" if self._blocked else "flowing",
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
        self.deliver(b"".join(lines) + self.format.ok("STATUS", "-"))

    def do_QUIT(self, rest: str) -> None:
        name = self._leave()
        if name is not None:
            self.log.info(
                "{name} quit ({count}/{capacity} users)",
                name=name,
                count=len(self.room),
                capacity=self.room.capacity,
            )
        else:
            self.log.info("unregistered {peer} quit", peer=self.peer)
        self.close(self.format.ok("QUIT", "Bye"))


class ChatFactory(ServerFactory):
    """
    Shared by every connection: the room (registry and capacity), the limits
    and the counters.

    @ivar connections: every open connection, registered or not.
    @ivar peers: the count of connections, in all and per address.
    @ivar shutdown_grace: seconds that clients get to read the shutdown
        notice before their connections are aborted.
    """

    log = Logger()
    shutdown_grace = 3.0

    def __init__(
        self,
        max_users: int = 10,
        limits: Limits | None = None,
        clock: IReactorTime | None = None,
        room: Room | ClusterRoom | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.room = room if room is not None else Room(max_users)
        self.limits = limits or Limits()
        self.clock = clock
        self.started = clock.seconds()
        self.stats = Stats()
        self.peers = PeerCount()
        self.connections: set[ChatProtocol] = set()
        self._allClosed: Deferred[None] | None = None

    def buildProtocol(self, addr: IAddress) -> ChatProtocol:
        return ChatProtocol(self, *describe(addr))

    def checkIdle(self) -> None:
        """Close the connections of users idle for longer than the limit."""
        now = self.clock.seconds()
        for connection in list(self.connections):
            connection.checkIdle(now)

    def closeAll(self) -> Deferred[None]:
        """
        Tell every client that the server is shutting down, then close.

        @return: fires once every connection is closed.
        """
        if not self.connections:
            return succeed(None)
        self.log.info("shutting down: closing {count} connections", count=len(self.connections))
        allClosed = self._allClosed = Deferred()
        # A client that does not read would hold a graceful close open forever.
        abort = self.clock.callLater(self.shutdown_grace, self._abortAll)
        allClosed.addCallback(lambda _: abort.cancel() if abort.active() else None)
        for connection in list(self.connections):
            connection.bye(replies.SHUTTING_DOWN, "the server is shutting down; goodbye")
        return allClosed

    def _abortAll(self) -> None:
        for connection in list(self.connections):
            connection.transport.abortConnection()

    def connectionClosed(self) -> None:
        if self._allClosed is not None and not self.connections:
            self._allClosed, allClosed = None, self._allClosed
            allClosed.callback(None)
