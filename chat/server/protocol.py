# -*- test-case-name: tests.test_protocol -*-
"""
L{ChatProtocol}: the Twisted side of one connection. The chat itself, every
command and limit, is the L{chat.core.session.Session} it carries; this is
the transport, its flow control, its close, and the connection caps.
"""

from __future__ import annotations

from typing import Final, Protocol, cast

from twisted.internet import tcp
from twisted.internet.interfaces import IHalfCloseableProtocol, IHandshakeListener, IPushProducer
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from chat.core import grammar
from chat.core.away import Timer
from chat.core.limits import PeerCount
from chat.core.session import Session, Shared


class Server(Shared, Protocol):
    """What a connection needs of its server (L{chat.server.factory.ChatFactory})."""

    @property
    def peers(self) -> PeerCount: ...

    @property
    def connections(self) -> dict[Session, None]:
        """Every open connection's session, oldest first."""

    def connectionClosed(self) -> None:
        """A connection that was admitted is gone."""

    def makeRoom(self, peer: str) -> bool:
        """The server is full: let C{peer} take the place of a connection, if one may give it."""


class Transport(Protocol):
    """
    What a connection needs of its transport: Twisted types C{transport} as
    an optional C{ITransport}, which lacks producers and C{abortConnection};
    TCP, TLS and the WebSocket transport (L{chat.web.socket}) all have them.
    """

    def write(self, data: bytes) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def pauseProducing(self) -> None:
        """Stop reading from the client."""

    def resumeProducing(self) -> None:
        """Read from the client again."""


@implementer(IHalfCloseableProtocol, IPushProducer, IHandshakeListener)
class ChatProtocol(LineReceiver):
    """
    One connection: a L{Session} on a transport. It is the L{Link} of its
    session (C{write}, C{close}, C{abort}).

    It subclasses C{LineReceiver}, as the design says, for what a line
    protocol is to Twisted (a C{Protocol} and the producer methods), but not
    for its splitting: the session splits lines itself (L{chat.core.framing}
    says why), so C{dataReceived} is the session's.

    The protocol registers itself as the streaming producer of its own
    transport, so the transport tells it when its outbound buffer is full
    (C{pauseProducing}) and when it has drained (C{resumeProducing}); the
    session counts what is queued in between and drops a client that stopped
    reading. As an L{IHalfCloseableProtocol} it hears of a client that
    closed its sending side (C{readConnectionLost}) and lets the session
    answer what it sent. As an L{IHandshakeListener} it hears when a TLS
    client has finished its handshake, which it must do within
    C{handshake_timeout}: before that nothing reaches the client, not even
    the BYE of a refusal or a timeout, and a close waits for it.
    """

    log = Logger()
    # Class defaults, so that a connection stores only what it has: memory
    # per idle connection is one of the server's figures.
    session: Session | None = None
    """The chat of an admitted connection, until it is lost."""
    _abortCall: Timer | None = None
    _handshakeCall: Timer | None = None
    _tcp: tcp.Connection | None = None
    """The transport, when it is plain TCP (see L{write})."""

    def __init__(self, server: Server, host: str, peer: str) -> None:
        self.server = server
        self.host = host
        self.peer = peer

    @property
    def terminal(self) -> bool:
        """
        Whether a terminal may be at the other end: not on a WebSocket,
        whose transport (L{chat.web.socket}) says C{terminal = False}.
        """
        return bool(getattr(self.transport, "terminal", True))

    @property
    def link(self) -> Transport:
        """The transport, as what it is (see L{Transport})."""
        return cast(Transport, self.transport)

    def connectionMade(self) -> None:
        server = self.server
        if isinstance(self.transport, TLSMemoryBIOProtocol):
            timeout = server.limits.handshake_timeout
            self._handshakeCall = server.clock.callLater(timeout, self._handshakeLate, timeout)
        banned = server.moderation.addressRefusal(self.host)
        if banned is not None:
            self._refuse(*banned)
            return
        refusal = server.peers.admit(self.host, server.limits, self._makeRoom)
        if refusal is not None:
            server.stats.limits["max_connections"] += 1
            self._refuse(refusal, grammar.HUMAN.bye(grammar.TOO_MANY_CONNECTIONS, refusal))
            return
        # Chat lines are small and a reader may never write back: with
        # Nagle's algorithm each line would wait for the delayed ACK of the
        # one before (40 ms). Writes are coalesced per turn anyway.
        setTcpNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setTcpNoDelay is not None:
            setTcpNoDelay(True)
        transport = self.transport
        if isinstance(transport, tcp.Connection) and not transport.TLS:
            self._tcp = transport
        self.link.registerProducer(self, True)
        self.session = Session(server, self, SESSION_LOG, self.host, self.peer)
        server.connections[self.session] = None

    def _refuse(self, why: str, bye: bytes) -> None:
        """Refuse this connection: a status line (summarised per address), a BYE, a close."""
        self.server.repeats.info(
            "refused connections",
            self.host,
            "refused connection from {peer}: {why}",
            peer=self.peer,
            why=why,
        )
        self.link.write(bye)
        self.close()

    def dataReceived(self, data: bytes) -> None:
        session = self.session
        if session is not None:  # else refused, and closing
            session.dataReceived(data)

    def readConnectionLost(self) -> None:
        if self.session is not None:
            self.session.inputEnded()

    def writeConnectionLost(self) -> None:
        """Never called: the server does not half-close its own side."""

    def handshakeCompleted(self) -> None:
        if self._handshakeCall is not None:
            self._handshakeCall.cancel()
            self._handshakeCall = None

    def connectionLost(self, reason: Failure | None = None) -> None:
        for call in (self._abortCall, self._handshakeCall):
            if call is not None and call.active():
                call.cancel()
        self.forget()

    def forget(self) -> None:
        """The connection is gone, or as good as gone: free its place at once."""
        session, self.session = self.session, None
        if session is None:  # refused, or forgotten already
            return
        self.server.peers.release(self.host)
        del self.server.connections[session]
        session.connectionLost()
        self.server.connectionClosed()

    def _makeRoom(self) -> bool:
        return self.server.makeRoom(self.peer)

    # Flow control: the transport tells when its buffer is full, and empty.

    def pauseProducing(self) -> None:
        # The transport calls this again on every write while its buffer is
        # full. Input is still read: flood control bounds it, and a TLS
        # transport pauses its producer until the handshake is done, which
        # needs input.
        if self.session is not None:
            self.session.pause()

    def resumeProducing(self) -> None:
        if self.session is not None:
            self.session.resume()

    # The session's link

    def write(self, data: bytes) -> None:
        """
        C{transport.write(data)}, except that the bytes go to the socket at
        once when they are the only ones queued on a plain TCP connection;
        what the socket does not take is queued by the transport as usual.
        A connection whose transport already holds unsent bytes (its client
        reads slowly), or that is not plain TCP (TLS, a WebSocket), gets the
        bytes through C{transport.write}, so order and flow control are
        Twisted's.

        C{send} is called on the transport's own socket (C{getHandle()}):
        C{writeSomeData} would add only a slice and a retry wrapper that
        Python's C{send} no longer needs (PEP 475), on the path of every
        line the server sends.
        """
        connection = self._tcp
        if (
            connection is not None
            and connection.connected
            and not connection.disconnecting
            and not connection.dataBuffer
            # Private: bytes written in this turn, not yet in dataBuffer. No
            # public attribute tells; setup.cfg bounds Twisted's version for it.
            and not connection._tempDataBuffer
        ):
            try:
                sent = connection.socket.send(data)
            except OSError:  # full (EAGAIN), or lost: the transport deals with both
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        self.link.write(data)

    def close(self) -> None:
        """
        Close once what is queued has been sent, but not later than
        C{close_timeout}: C{loseConnection} waits for the client to read it,
        and a client that does not read would hold the connection for ever.
        """
        if self.session is not None:
            # A transport with a registered producer waits for it before closing.
            self.link.unregisterProducer()
        self.link.loseConnection()
        timeout = self.server.limits.close_timeout
        self._abortCall = self.server.clock.callLater(timeout, self._abortClose, timeout)

    def abort(self) -> None:
        self.link.abortConnection()

    def pauseReading(self) -> None:
        self.link.pauseProducing()

    def resumeReading(self) -> None:
        self.link.resumeProducing()

    def _handshakeLate(self, timeout: float) -> None:
        self._handshakeCall = None
        self.server.stats.limits["handshake_timeout"] += 1
        self.log.info(
            "aborting the connection of {who}: no TLS handshake within {timeout}s",
            who=self.peer,
            timeout=timeout,
        )
        self.abort()

    def _abortClose(self, timeout: float) -> None:
        self._abortCall = None
        self.log.info(
            "aborting the connection of {who}: its last lines were not read within {timeout}s",
            who=self.peer,
            timeout=timeout,
        )
        self.abort()


SESSION_LOG: Final = ChatProtocol.log
"""The logger of every session's status lines, made once: each access to a
C{Logger} attribute makes a new one, which a session would keep."""
