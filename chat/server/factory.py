# -*- test-case-name: tests.test_protocol -*-
"""
The L{ChatFactory} that every connection shares: the room (registry and
capacity), the limits, the counters, and the orderly shutdown.
"""

from __future__ import annotations

from typing import Final, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger

from chat.core import grammar
from chat.core.editmode import EditMode
from chat.core.history import History, LocalHistory
from chat.core.limits import Buffered, Limits, PeerCount
from chat.core.moderation import Moderation
from chat.core.repeats import Repeats
from chat.core.room import LocalRoom, Room
from chat.core.session import Session
from chat.core.stats import Stats
from chat.server.logs import RelayLog
from chat.server.outbox import Outbox
from chat.server.protocol import SESSION_LOG, ChatProtocol

RELAY_LOG: Final = RelayLog(ChatProtocol.log)


def describe(address: IAddress | None) -> tuple[str, str]:
    """
    @return: C{(host, peer)}: the address to count connections by, and
        C{host:port} (C{[host]:port} for IPv6) for the logs.
    """
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is None:
        return str(address), str(address)
    return host, f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ChatFactory(ServerFactory):
    """
    Shared by every connection: the room (registry and capacity), the limits
    and the counters.

    @ivar connections: every open connection, registered or not, oldest
        first (the oldest that has not joined makes room for a new one when
        the server is at C{--max-connections}).
    @ivar peers: the count of connections, in all and per address.
    @ivar outbox: the connections with output gathered in this reactor turn.
    @ivar repeats: the status lines a client can cause at will, summarised.
    @ivar buffered: what the connections have waiting, in all (C{--max-buffered}).
    @ivar relay_log: where every MESG and BCST gets its status line, or
        C{None} for none (they are always counted in the metrics).
    @ivar shutdown_grace: seconds that clients get to read the shutdown
        notice before their connections are aborted.
    @ivar moderation: the operators, bans and mutes (no operators until
        C{moderation.operators} is set: C{--operators}).
    @ivar history: the broadcasts kept for HISTORY.
    @ivar greeting: what every new connection is sent first: the greeting,
        which says how many broadcasts are kept, then the message of the
        day (L{setMotd}).
    """

    log = Logger()
    shutdown_grace = 3.0

    def __init__(
        self,
        max_users: int = 10,
        limits: Limits | None = None,
        clock: IReactorTime | None = None,
        room: Room | None = None,
        relay_log: RelayLog | None = RELAY_LOG,
        history: History | None = None,
        motd: bytes = b"",
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.outbox = Outbox(clock)
        self.stats = Stats()
        self.room: Room = (
            room
            if room is not None
            else LocalRoom(max_users, self.outbox.later, self._noticesDelivered)
        )
        self.limits = limits or Limits()
        self.relay_log = relay_log
        self.history: History = history if history is not None else LocalHistory()
        self.setMotd(motd)
        self.clock = clock
        self.started = clock.seconds()
        self.peers = PeerCount()
        self.buffered: Buffered[Session] = Buffered()
        self.repeats = Repeats(clock, SESSION_LOG)
        self.connections: dict[Session, None] = {}
        self.moderation = Moderation(clock, self.room, self.connections, SESSION_LOG)
        self._allClosed: Deferred[None] | None = None

    def _noticesDelivered(self, count: int) -> None:
        self.stats.relayed["presence"] += count

    def setMotd(self, motd: bytes) -> None:
        """Greet new connections with C{motd}, the INFO lines of a message of the day."""
        self.motd = motd
        self.greeting = grammar.greeting(self.history.size) + motd

    def buildProtocol(self, addr: IAddress | None) -> ChatProtocol:
        return ChatProtocol(self, *describe(addr))

    def makeRoom(self, peer: str) -> bool:
        """
        The server is at C{--max-connections}: the oldest connection that
        has not joined (or is closing) makes room for a new one from
        C{peer}, chat or HTTP, so that a flood of idle connections cannot
        keep everyone out; registered users are never pushed out.

        @return: whether a connection made room.
        """
        for session in self.connections:
            link = session.link
            if isinstance(link, EditMode):  # MODE EDIT before JOIN
                link = link.inner
            if session.name is None and isinstance(link, ChatProtocol):
                break
        else:
            return False
        victim = link
        self.stats.limits["max_connections_replaced"] += 1
        self.log.info(
            "closing the connection of {victim}, which has not joined, to make room for "
            "{peer}: the server has {count} connections, its limit",
            victim=victim.peer,
            peer=peer,
            count=self.peers.total,
        )
        session.bye(
            grammar.TOO_MANY_CONNECTIONS,
            "the server is full, and a newer connection took the place of this one, "
            "which had not joined",
        )
        victim.abort()  # a closing connection must not hold the place it gave up
        victim.forget()
        return True

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
        self.repeats.stop()
        if not self.connections:
            return succeed(None)
        self.log.info("shutting down: closing {count} connections", count=len(self.connections))
        allClosed = self._allClosed = Deferred()
        # A client that does not read would hold a graceful close open forever.
        abort = self.clock.callLater(self.shutdown_grace, self._abortAll)
        allClosed.addCallback(lambda _: abort.cancel() if abort.active() else None)
        for connection in list(self.connections):
            connection.bye(grammar.SHUTTING_DOWN, "the server is shutting down; goodbye")
        return allClosed

    def _abortAll(self) -> None:
        for connection in list(self.connections):
            connection.link.abort()

    def connectionClosed(self) -> None:
        if self._allClosed is not None and not self.connections:
            allClosed = self._allClosed
            self._allClosed = None
            allClosed.callback(None)
