# -*- test-case-name: tests.test_protocol -*-
"""
The Twisted side of the server: one L{ChatProtocol} per connection, one
L{ChatFactory} shared by all of them.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from chat import replies
from chat.commands import NAME_RULE, decode, is_valid_name, split_command
from chat.framing import LINE_TOO_LONG, LineSplitter
from chat.room import Admission, Room
from chat.telnet import TelnetInput


def describe(address: IAddress) -> str:
    """C{host:port} for logs; C{[host]:port} for IPv6."""
    host = getattr(address, "host", None)
    if host is None:
        return str(address)
    return f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"


class ChatProtocol(LineReceiver):
    """
    One telnet connection: unregistered until a successful JOIN.

    Input goes through L{TelnetInput} and L{LineSplitter} instead of
    C{LineReceiver}'s own splitting (see L{chat.framing} for why); each line
    is dispatched to a C{do_VERB} method.

    The protocol registers itself as the streaming producer of its own
    transport, so the transport tells it when its outbound buffer is full
    (C{pauseProducing}) and when it has drained (C{resumeProducing}). While
    paused, input from this client is not read (C{LineReceiver}'s behaviour),
    and bytes queued for it are counted: past C{factory.max_outbound} the
    client is a slow consumer and is disconnected, so a client that never
    reads costs the server a bounded amount of memory.

    @ivar name: the registered name, or C{None} before JOIN and after leaving.
    """

    log = Logger()
    delimiter = replies.CRLF

    def __init__(self, factory: ChatFactory, peer: str) -> None:
        self.factory = factory
        self.room = factory.room
        self.peer = peer
        self.name: str | None = None
        self._telnet = TelnetInput()
        self._lines = LineSplitter(factory.max_line)
        self._blocked = False
        self._queued_while_blocked = 0
        self._gone = False

    # Connection lifecycle

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)
        self.factory.connections.add(self)
        self.log.info("connection from {peer}", peer=self.peer)
        self.deliver(replies.GREETING)

    def connectionLost(self, reason: Failure = None) -> None:
        self._gone = True
        self.factory.connections.discard(self)
        name = self.name
        if name is not None and self.room.leave(self):
            self.name = None
            self.log.info(
                "{name} dropped the connection from {peer} ({count}/{capacity} users)",
                name=name,
                peer=self.peer,
                count=len(self.room),
                capacity=self.room.capacity,
            )
        self.factory.connectionClosed()

    def close(self, data: bytes = b"") -> None:
        """Send C{data}, then close once everything queued has been sent."""
        if self._gone:
            return
        self.deliver(data)
        self._gone = True
        # A transport with a registered producer waits for it before closing.
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    # Output and flow control

    def deliver(self, data: bytes) -> None:
        """Queue C{data} for this client, dropping it if it stopped reading."""
        if self._gone:
            return
        if self._blocked:
            self._queued_while_blocked += len(data)
            if self._queued_while_blocked > self.factory.max_outbound:
                self._dropSlowConsumer()
                return
        self.transport.write(data)

    def pauseProducing(self) -> None:
        self._blocked = True
        self._queued_while_blocked = 0
        super().pauseProducing()

    def resumeProducing(self) -> None:
        self._blocked = False
        super().resumeProducing()

    def _dropSlowConsumer(self) -> None:
        self._gone = True
        name = self.name
        if name is not None and self.room.leave(self):
            self.name = None
        self.log.warn(
            "dropped slow consumer {name} at {peer}: more than {limit} bytes unread",
            name=name or "(unregistered)",
            peer=self.peer,
            limit=self.factory.max_outbound,
        )
        self.transport.abortConnection()

    # Input

    def dataReceived(self, data: bytes) -> None:
        data, answers = self._telnet.feed(data)
        if answers:
            self.deliver(answers)
        for raw in self._lines.feed(data):
            if self._gone:
                return
            if raw is LINE_TOO_LONG:
                self.lineLengthExceeded(b"")
            else:
                self.lineReceived(raw)

    def lineLengthExceeded(self, line: bytes) -> None:
        """Refuse the line but keep the connection: the rest is skipped."""
        self.log.warn(
            "{who} sent a line longer than {limit} bytes",
            who=self.name or self.peer,
            limit=self.factory.max_line,
        )
        self.deliver(
            replies.error(
                replies.LINE_TOO_LONG,
                f"lines are limited to {self.factory.max_line} bytes; it was discarded",
            )
        )

    def lineReceived(self, line: bytes) -> None:
        text = decode(line)
        if not text:
            return
        verb, rest = split_command(text)
        handler: Callable[[str], None] | None = getattr(self, "do_" + verb, None)
        if handler is None:
            self.unknownCommand(verb)
        elif self.name is None and verb not in ("JOIN", "HELP", "QUIT"):
            self.unregistered(verb)
        else:
            handler(rest)

    def unknownCommand(self, verb: str) -> None:
        if self.name is None:
            self.unregistered(verb)
            return
        self.log.info("{name} sent an unknown command {verb!r}", name=self.name, verb=verb)
        self.deliver(
            replies.error(replies.UNKNOWN_MESSAGE, f"{verb} is not a command; HELP lists them")
        )

    def unregistered(self, verb: str) -> None:
        self.log.info("unregistered {peer} sent {verb!r}", peer=self.peer, verb=verb)
        self.deliver(replies.error(replies.UNREGISTERED_USER, replies.HOW_TO_JOIN))

    # Commands

    def do_JOIN(self, rest: str) -> None:
        room = self.room
        if self.name is not None:
            self.log.info("{name} sent JOIN {rest!r} again; discarded", name=self.name, rest=rest)
            self.deliver(
                replies.error(
                    replies.ALREADY_REGISTERED,
                    f"you are {self.name}; this JOIN was discarded",
                )
            )
            return
        if not rest:
            self.deliver(replies.error(replies.USAGE, "JOIN <username>"))
            return
        if not is_valid_name(rest):
            self._refuseJoin(rest, "invalid name", replies.INVALID_USERNAME, NAME_RULE)
            return
        admission = room.join(rest, self)
        if admission is Admission.FULL:
            self._refuseJoin(
                rest,
                "server full",
                replies.TOO_MANY_USERS,
                f"{len(room)} of {room.capacity} users are registered; try again later",
            )
        elif admission is Admission.TAKEN:
            self._refuseJoin(
                rest, "name taken", replies.USERNAME_TAKEN, f"{rest} is already registered"
            )
        else:
            self.log.info(
                "{name} joined from {peer} ({count}/{capacity} users)",
                name=rest,
                peer=self.peer,
                count=len(room),
                capacity=room.capacity,
            )
            self.deliver(replies.ok("JOIN", f"{rest} {len(room)}/{room.capacity}"))

    def _refuseJoin(self, name: str, why: str, reason: str, details: str) -> None:
        self.log.info(
            "refused JOIN {name!r} from {peer}: {why} ({count}/{capacity} users)",
            name=name,
            peer=self.peer,
            why=why,
            count=len(self.room),
            capacity=self.room.capacity,
        )
        self.deliver(replies.error(reason, details))

    def do_LIST(self, rest: str) -> None:
        names = self.room.names()
        self.log.info("{name} listed {count} users", name=self.name, count=len(names))
        self.deliver(b"".join(map(replies.user, names)) + replies.ok("LIST", str(len(names))))

    def do_MESG(self, rest: str) -> None:
        parts = rest.split(None, 1)
        if len(parts) < 2:
            self.deliver(replies.error(replies.USAGE, "MESG <username> <text>"))
            return
        to, text = parts
        recipient = self.room.find(to)
        if recipient is None:
            self.log.info("{name} sent MESG to unknown recipient {to!r}", name=self.name, to=to)
            self.deliver(
                replies.error(replies.UNKNOWN_RECIPIENT, f"nobody named {to} is registered")
            )
            return
        recipient.deliver(replies.relayed("MESG", self.name, text))
        self.log.info("MESG {name} -> {to}", name=self.name, to=recipient.name)
        self.deliver(replies.ok("MESG", str(recipient.name)))

    def do_BCST(self, rest: str) -> None:
        if not rest:
            self.deliver(replies.error(replies.USAGE, "BCST <text>"))
            return
        count = self.room.broadcast(replies.relayed("BCST", self.name, rest), self)
        self.log.info("BCST from {name} reached {count} users", name=self.name, count=count)
        self.deliver(replies.ok("BCST", str(count)))

    def do_HELP(self, rest: str) -> None:
        self.deliver(b"".join(map(replies.info, replies.HELP_TEXT)) + replies.ok("HELP", "-"))

    def do_QUIT(self, rest: str) -> None:
        name = self.name
        if name is not None and self.room.leave(self):
            self.name = None
            self.log.info(
                "{name} quit ({count}/{capacity} users)",
                name=name,
                count=len(self.room),
                capacity=self.room.capacity,
            )
        else:
            self.log.info("unregistered {peer} quit", peer=self.peer)
        self.close(replies.ok("QUIT", "Bye"))


class ChatFactory(ServerFactory):
    """
    Shared by every connection: the room (registry and capacity) and limits.

    @ivar max_line: the longest accepted input line, in bytes.
    @ivar max_outbound: bytes that may be queued for a client after its
        transport reported a full buffer, before it is disconnected.
    @ivar connections: every open connection, registered or not.
    @ivar shutdown_grace: seconds that clients get to read the shutdown
        notice before their connections are aborted.
    """

    log = Logger()
    shutdown_grace = 3.0

    def __init__(
        self,
        max_users: int = 10,
        max_line: int = 4096,
        max_outbound: int = 1 << 20,
        clock: IReactorTime | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.room = Room(max_users)
        self.max_line = max_line
        self.max_outbound = max_outbound
        self.clock = clock
        self.connections: set[ChatProtocol] = set()
        self._allClosed: Deferred[None] | None = None

    def buildProtocol(self, addr: IAddress) -> ChatProtocol:
        return ChatProtocol(self, describe(addr))

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
            connection.close(replies.SHUTDOWN)
        return allClosed

    def _abortAll(self) -> None:
        for connection in list(self.connections):
            connection.transport.abortConnection()

    def connectionClosed(self) -> None:
        if self._allClosed is not None and not self.connections:
            self._allClosed, allClosed = None, self._allClosed
            allClosed.callback(None)
