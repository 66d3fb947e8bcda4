# -*- test-case-name: tests.test_web_limits -*-
"""
The HTTP ports (C{--web}, C{--metrics}) under the connection caps of the
chat ports, and with a deadline for each request.

Every connection to an HTTP port is admitted by the chat factory's
L{PeerCount}, as a chat connection is: an HTTP port is as good a way as any
other to hold a file descriptor. Over C{--max-per-ip} or
C{--max-connections} the connection is answered C{503 Service Unavailable}
with the reason and closed, and aborted if that close has not finished
within C{handshake_timeout} (a TLS handshake that never ends, a client that
does not read). At C{--max-connections} it first takes the place of the
oldest chat connection that has not joined, as a chat connection does
(L{ChatFactory.makeRoom}): a browser is a person too.

A WebSocket starts as an HTTP request and then becomes a chat connection,
counted by its L{ChatProtocol} from then on: the channel hands its count
over (L{CappedChannel.handOver}) just before, so that a connection is
counted once, and a WebSocket admitted as HTTP is admitted as a chat
connection.

twisted.web closes a connection only after 12 hours without a byte (its
idle timeout, which every byte resets), so a client that sends a header a
minute would hold its connection for ever. Here a request's line, headers
and body must all arrive within C{handshake_timeout} seconds of the
connection, or of the end of the response before (a kept-alive connection
that sends no further request is closed then too); else the connection is
aborted.
"""

from __future__ import annotations

from typing import Final, cast

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.web.http import HTTPChannel, Request
from twisted.web.resource import IResource
from twisted.web.server import Site

from chat.server.factory import ChatFactory, describe
from chat.server.protocol import Transport

log: Final = Logger()

REFUSED: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n"
    b"\r\n"
    b"%s"
)
"""The whole answer to a connection over a cap, sent before its request."""


class CappedChannel(HTTPChannel):
    """
    One HTTP connection, counted with the chat's connections, that must send
    each request in time.

    @ivar site: the L{CappedSite} it belongs to (set by C{Site.buildProtocol}).
    """

    site: CappedSite
    _host = ""
    _peer = ""
    _counted = False
    """Whether this connection holds a place in the count."""
    _refused = False
    _timer: IDelayedCall | None = None
    """The request deadline, or the abort of a close that takes too long."""

    @property
    def _chat(self) -> ChatFactory:
        return self.site.chat

    def connectionMade(self) -> None:
        assert self.transport is not None  # connected
        chat = self._chat
        self._host, self._peer = describe(self.transport.getPeer())
        refusal = chat.peers.admit(self._host, chat.limits, lambda: chat.makeRoom(self._peer))
        if refusal is not None:
            self._refuse(refusal)
            return
        self._counted = True
        super().connectionMade()
        self._expectRequest()

    def _refuse(self, refusal: str) -> None:
        assert self.transport is not None  # connected
        self._refused = True
        chat = self._chat
        chat.stats.limits["max_connections"] += 1
        chat.repeats.info(
            "refused HTTP connections",
            self._host,
            "refused HTTP connection from {peer}: {why}",
            peer=self._peer,
            why=refusal,
        )
        body = refusal.encode() + b"\n"
        self.transport.write(REFUSED % (len(body), body))
        self.transport.loseConnection()
        # The close waits for a TLS handshake: as long as a request may take.
        self._abortIfOpen(chat.limits.handshake_timeout)

    def _abortIfOpen(self, timeout: float) -> None:
        """
        A close waits for the client to read what is queued (and for a TLS
        handshake): bound it, as every close.
        """
        self._startTimer(timeout, f"it was not closed within {timeout}s", None)

    def dataReceived(self, data: bytes) -> None:
        if not self._refused:  # a refused connection's request is not read
            super().dataReceived(data)

    def _expectRequest(self) -> None:
        """Start the deadline of the next request."""
        timeout = self._chat.limits.handshake_timeout
        self._startTimer(timeout, f"no complete request within {timeout}s", "request_timeout")

    def _startTimer(self, timeout: float, why: str, limit: str | None) -> None:
        self._cancelTimer()
        self._timer = self._chat.clock.callLater(timeout, self._abort, why, limit)

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def allContentReceived(self) -> None:
        self._cancelTimer()
        super().allContentReceived()

    def requestDone(self, request: Request) -> None:
        # Before the next request is parsed from what was buffered meanwhile,
        # or Twisted closes the connection (which waits for the client).
        if self.persistent:
            self._expectRequest()
        else:
            self._abortIfOpen(self._chat.limits.close_timeout)
        super().requestDone(request)

    def handOver(self) -> None:
        """
        The connection is becoming a WebSocket, which is counted as a chat
        connection from now on; this channel never hears of it again.
        """
        self._cancelTimer()
        self._release()

    def _abort(self, why: str, limit: str | None) -> None:
        self._timer = None
        if limit is not None:
            self._chat.stats.limits[limit] += 1
        log.info("aborting the HTTP connection of {peer}: {why}", peer=self._peer, why=why)
        if self.transport is not None:
            cast(Transport, self.transport).abortConnection()

    def _release(self) -> None:
        if self._counted:
            self._counted = False
            self._chat.peers.release(self._host)

    def connectionLost(self, reason: object = None) -> None:
        self._cancelTimer()
        self._release()
        super().connectionLost(reason)


class CappedSite(Site):
    """A L{Site} whose connections are L{CappedChannel}s of the chat C{chat}."""

    # Site's default builds an HTTP/1.1-or-HTTP/2 switch; HTTP/2 is not served.
    protocol = CappedChannel  # type: ignore[assignment]

    def __init__(self, resource: IResource, chat: ChatFactory) -> None:
        super().__init__(resource)
        self.chat = chat
