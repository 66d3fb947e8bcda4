# -*- test-case-name: tests.test_web -*-
"""
The WebSocket side of the browser client: a WebSocket connection is one more
transport under the unchanged L{ChatProtocol}.

L{ChatWebSocketProtocol} (autobahn) does the WebSocket handshake and framing;
once the connection is open it builds a L{ChatProtocol} with the chat
factory and connects it to a L{WebSocketTransport}, which implements what
C{ChatProtocol} uses of a transport. So the chat rules, the limits and the
counters are the ones every telnet connection has, with no second copy:

  - each WebSocket text message from the client is one command line,
    without its line ending (one trailing CRLF, LF or CR is tolerated);
  - each line the server sends is one WebSocket text message, without its
    CRLF, so a browser gets exactly the lines of the reply grammar;
  - flow control is the telnet one: C{ChatProtocol} registers itself as the
    producer of the underlying TCP (or TLS) transport, which pauses it when
    64 KiB are waiting, and a client that stops reading is dropped after
    C{max_outbound} more bytes. Every byte autobahn writes counts, not only
    the lines: its framing, its close frame, and the pong it answers each
    ping with (L{ChatWebSocketProtocol.sendData});
  - frames without content (pings, pongs, empty text, binary or
    continuation frames) cost the server a frame's work each and give the
    chat nothing: a client may send C{burst} of them at once and C{rate} a
    second, the numbers of flood control, and past that is closed with
    C{BYE Flooding} (L{ChatWebSocketProtocol.onFrameBegin}).
"""

from __future__ import annotations

import typing
from typing import Any, cast
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IAddress, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure

from chat.core import grammar
from chat.core.limits import TokenBucket
from chat.server.factory import ChatFactory
from chat.server.protocol import ChatProtocol

BINARY_REFUSED = "commands are WebSocket text messages; binary messages are not read"
LINE_BREAK_REFUSED = "one command per message: a line break inside a message is not allowed"
ORIGIN_REFUSED = "WebSocket connections are only accepted from this server's own page"
HOST_REFUSED = "this server is not reached under that name"


def host_name(host: str) -> str:
    """The name in a C{Host} header, without the port (C{[::1]:8080} -> C{::1})."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


log = Logger()
"""Ours: C{ChatWebSocketProtocol.log} is autobahn's (txaio), with its own levels."""


def same_origin(origin: str, host: str) -> bool:
    """
    Whether a WebSocket handshake may proceed: its C{Origin} names the site
    this server is reached at (the C{Host} header), or it has no C{Origin}.

    Browsers send C{Origin} with every WebSocket handshake and scripts cannot
    forge it. Without this check any web page a user visits could open a
    connection to a chat server that user's browser can reach (on an
    intranet, on localhost) and chat, or read the room, in their name.
    Programs that are not browsers send no C{Origin}; they are served, as
    they could use telnet anyway. Only the host and port are compared, not
    the scheme, so a reverse proxy that terminates TLS and passes the
    C{Host} header through still works. C{Origin: null} (a file, a sandboxed
    frame) is refused.
    """
    if not origin:
        return True
    netloc = urlsplit(origin).netloc
    return bool(netloc) and netloc.lower() == host.strip().lower()


class Connection(typing.Protocol):
    """
    What L{WebSocketTransport} uses of the TCP (or TLS) connection under the
    WebSocket. Twisted types C{Protocol.transport} as an L{ITransport}, which
    has no producer registration; every connection transport also has it
    (L{IConsumer}), and pauses and resumes its reading (L{IPushProducer}).
    """

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def getPeer(self) -> IAddress: ...

    def getHost(self) -> IAddress: ...


def without_line_end(payload: bytes) -> bytes:
    """C{payload} without one trailing CRLF, LF or CR, which programs often add."""
    if payload.endswith(b"\r\n"):
        return payload[:-2]
    if payload.endswith((b"\n", b"\r")):
        return payload[:-1]
    return payload


class WebSocketTransport:
    """
    What L{ChatProtocol} uses of a transport, on top of one WebSocket.

    Writes are split into lines and each line becomes one text message; a
    partial line (there is none in practice: every reply ends with CRLF) is
    kept until its end arrives. autobahn applies C{maxMessagePayloadSize} to
    what it sends too, and a relayed line (C{MESG sender: text}) may be
    longer than the longest line a client may send: such a line is sent with
    autobahn's frame API (C{beginMessage}, C{sendMessageFrame},
    C{endMessage}), which that limit does not apply to.

    Producer registration goes straight to the TCP (or TLS) transport under
    the WebSocket, so C{pauseProducing} and C{resumeProducing} reach the
    chat protocol exactly as on a telnet connection.
    """

    terminal = False
    """A browser, not a terminal: MODE EDIT (telnet echo and editing) is refused."""

    def __init__(self, websocket: ChatWebSocketProtocol) -> None:
        self._websocket = websocket
        self._partial = b""

    @property
    def _open(self) -> bool:
        return self._websocket.state == WebSocketProtocol.STATE_OPEN

    def write(self, data: bytes) -> None:
        # Once the closing handshake has started nothing more can be sent;
        # the room may still relay a message before connectionLost arrives.
        if not self._open:
            return
        *lines, self._partial = (self._partial + data).split(grammar.CRLF)
        websocket = self._websocket
        limit = websocket.maxMessagePayloadSize
        websocket.framed = 0
        try:
            for line in lines:
                if 0 < limit < len(line):
                    websocket.beginMessage()
                    websocket.sendMessageFrame(line)
                    websocket.endMessage()
                else:
                    websocket.sendMessage(line)
        finally:
            framed, websocket.framed = websocket.framed, None
        # The session counted the lines (with their CRLF, which is not sent);
        # the frame headers of long lines are more.
        if framed > len(data):
            websocket.charge(framed - len(data))

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """
        Start the closing handshake: the close frame goes out after every
        message already written, and the TCP connection is closed when the
        client answers it (or after C{closeHandshakeTimeout}).
        """
        if self._open:
            self._websocket.sendClose(WebSocketProtocol.CLOSE_STATUS_CODE_NORMAL)

    def abortConnection(self) -> None:
        """Drop the TCP connection at once, discarding whatever is queued."""
        self._websocket.dropConnection(abort=True)

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        self._websocket.connection.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._websocket.connection.unregisterProducer()

    def pauseProducing(self) -> None:
        """Stop reading the TCP connection: no frame is taken until resumed."""
        self._websocket.connection.pauseProducing()

    def resumeProducing(self) -> None:
        self._websocket.connection.resumeProducing()

    def stopProducing(self) -> None:
        """
        Nothing to do: C{LineReceiver.stopProducing} calls this when the TCP
        connection it produces for is lost, and the WebSocket protocol's
        C{connectionLost} follows and tells the chat protocol.
        """

    def getPeer(self) -> IAddress:
        return self._websocket.connection.getPeer()

    def getHost(self) -> IAddress:
        return self._websocket.connection.getHost()


class ChatWebSocketProtocol(WebSocketServerProtocol):
    """
    One browser connection: a WebSocket carrying one L{ChatProtocol}.

    @ivar chat: the chat protocol, from the end of the handshake until the
        connection is lost; C{None} otherwise.
    @ivar connection: C{transport}, from the end of the handshake.
    @ivar maxMessagePayloadSize: set by autobahn from the factory's options.
    """

    factory: ChatWebSocketFactory
    chat: ChatProtocol | None = None
    connection: Connection
    maxMessagePayloadSize: int
    framed: int | None = None
    """While the chat's lines are written: the bytes autobahn wrote for them."""
    _emptyFrames: TokenBucket | None = None
    """The flood control of frames without content, once open (if any)."""

    def onConnect(self, request: ConnectionRequest) -> None:
        host = request.headers.get("host", "")
        hosts = self.factory.hosts
        if hosts and host_name(host) not in hosts:
            # DNS rebinding: a page of evil.example whose name now resolves to
            # this server has an Origin that matches its Host; the name does not.
            log.info(
                "refused WebSocket from {peer}: host {host!r} is not one of --web-hosts",
                peer=request.peer,
                host=host,
            )
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, HOST_REFUSED)
        if not same_origin(request.origin, host):
            log.info(
                "refused WebSocket from {peer}: origin {origin!r} is not {host!r}",
                peer=request.peer,
                origin=request.origin,
                host=host,
            )
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, ORIGIN_REFUSED)

    def onOpen(self) -> None:
        # twisted.web's HTTP channel registered itself as the producer of this
        # TCP connection and never lets go: the WebSocket took the connection
        # over in the middle of a request. HTTP is done with it; the chat
        # protocol registers itself in its place.
        assert self.transport is not None  # the handshake came through it
        connection = self.connection = cast(Connection, self.transport)
        connection.unregisterProducer()
        server = self.factory.chat
        limits = server.limits
        if limits.rate:
            self._emptyFrames = TokenBucket(limits.rate, limits.burst, server.clock.seconds())
        chat = server.buildProtocol(connection.getPeer())
        self.chat = chat
        chat.makeConnection(WebSocketTransport(self))

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """
        Every byte autobahn writes passes here. The chat's lines were counted
        by the session as it queued them; anything else (a pong, the close
        frame) is charged to the session now, so a client that pings and
        never reads is dropped past C{max_outbound} like any slow reader.
        """
        super().sendData(data, sync, chopsize)
        if self.framed is not None:
            self.framed += len(data)
        else:
            self.charge(len(data))

    def charge(self, size: int) -> None:
        """Count C{size} bytes written past the session against its outbound limit."""
        chat = self.chat
        if chat is not None and chat.session is not None:
            chat.session.charge(size)

    def onFrameBegin(self) -> None:
        """
        Spend a token of the connection's bucket for a frame without content
        (a control frame, or an empty data frame), and say C{BYE Flooding}
        when there is none.
        """
        frame = self.current_frame
        bucket = self._emptyFrames
        if (
            bucket is not None
            and (frame.opcode > 7 or not frame.length)
            and not bucket.grant(self.factory.chat.clock.seconds(), 1)
        ):
            self._emptyFramesFlood(bucket)
        super().onFrameBegin()

    def _emptyFramesFlood(self, bucket: TokenBucket) -> None:
        self._emptyFrames = None  # one BYE; the close frame follows it
        chat = self.chat
        if chat is None or chat.session is None or self.state != WebSocketProtocol.STATE_OPEN:
            return
        chat.session.flooded(
            "websocket_frames",
            f"more than {bucket.burst} WebSocket frames without content at once",
            f"more than {bucket.burst} pings or empty WebSocket frames at once; "
            f"send at most {bucket.rate:g} per second",
        )

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        chat = self.chat
        if chat is None:
            return
        if isBinary:
            self._refuse(chat, BINARY_REFUSED)
            return
        line = without_line_end(payload)
        if b"\n" in line or b"\r" in line:
            # Splitting it would answer one message with several replies, and
            # make a message that looks like one chat line carry commands.
            self._refuse(chat, LINE_BREAK_REFUSED)
            return
        chat.dataReceived(line + grammar.CRLF)

    def _refuse(self, chat: ChatProtocol, details: str) -> None:
        """
        Answer a message that is not a command line with C{ERR Usage}, its
        one reply, and keep the connection. The answer is immediate, so under
        flood control it may overtake replies still waiting in the backlog.
        """
        session = chat.session
        if session is None:  # the connection was refused
            return
        chat.server.stats.errors[grammar.USAGE] += 1
        session.deliver(session.format.error(grammar.USAGE, details))

    def onCloseFrame(self, code: int | None, reasonRaw: bytes | None) -> bool | None:
        # Nothing can be sent after the client's close frame: first the
        # replies and messages gathered for it in this reactor turn.
        if self.chat is not None and self.chat.session is not None:
            self.chat.session.flush()
        # autobahn annotates both as never None, but passes None for a close
        # frame without a code, and handles it.
        return super().onCloseFrame(cast(int, code), cast(bytes, reasonRaw))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        chat, self.chat = self.chat, None
        if chat is not None:
            error = ConnectionDone if wasClean else ConnectionLost
            chat.connectionLost(Failure(error(f"WebSocket closed: {code} {reason}")))


class ChatWebSocketFactory(WebSocketServerFactory):
    """
    Builds a L{ChatWebSocketProtocol} per connection, all feeding one
    L{ChatFactory}, with the chat's line limit as the message limit.

    A message longer than C{--max-line} bytes is refused by autobahn before
    it is buffered: the connection is closed with code 1009 (Message Too
    Big). A telnet client instead gets C{ERR Line Too Long} and stays
    connected, because the line splitter can skip the rest of a line as it
    arrives; autobahn can only hand over whole messages.
    """

    # Twisted's Factory[P] wants a protocol whose factory is a Factory[P];
    # autobahn's factory is not generic, so only an untyped one would fit.
    protocol = ChatWebSocketProtocol  # type: ignore[assignment]

    def __init__(
        self, chat: ChatFactory, hosts: frozenset[str] = frozenset(), **kwargs: Any
    ) -> None:
        """
        @param hosts: the names the server is reached under (C{--web-hosts});
            a handshake whose C{Host} names another is refused. Empty: any.
        """
        super().__init__(**kwargs)
        self.chat = chat
        self.hosts = hosts
        max_line = chat.limits.max_line
        self.setProtocolOptions(
            maxFramePayloadSize=max_line,
            maxMessagePayloadSize=max_line,
            # Send a close frame with the code and reason (1009, 1007...)
            # instead of dropping the TCP connection without a word.
            failByDrop=False,
            # Time for the client to read what was sent before the close
            # frame (QUIT, BYE) and answer it, as the shutdown grace.
            closeHandshakeTimeout=chat.shutdown_grace,
            # A plain GET of /ws is refused instead of answered with
            # autobahn's status page.
            webStatus=False,
        )
