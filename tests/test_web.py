"""
Tests of the browser client (C{--web}).

First the WebSocket adapter at the protocol level: autobahn's real protocol
over an in-memory transport, with a minimal WebSocket client written here
(handshake, masked frames out, frames in), next to plain L{ChatProtocol}
connections on the same factory. Then a real C{twistd chat --web}: its
static files and origin check over real sockets, and a real headless
Chromium driven by selenium, chatting with telnet-protocol socket clients.

The browser tests need Debian's C{chromium} and C{chromium-driver}; they
fail, not skip, without them (C{.ci/run} installs them).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StartServer
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.server import Site

from chat.core.limits import Limits
from chat.server.factory import ChatFactory
from chat.tap import Options, makeService
from chat.web.socket import (
    BINARY_REFUSED,
    LINE_BREAK_REFUSED,
    ChatWebSocketFactory,
    ChatWebSocketProtocol,
    WebSocketTransport,
    host_name,
    same_origin,
    without_line_end,
)
from harness import GREETING, PRESENCE_NOTICE
from harness import Client as LineClient
from server import REPO_ROOT, ChatServer, Client, self_signed_certificate

HOST = "chat.example:8080"
ORIGIN = "http://chat.example:8080"
TEXT, BINARY, CLOSE = 1, 2, 8

# Unit


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("", "chat.example:8080", True),  # not a browser
        ("http://chat.example:8080", "chat.example:8080", True),
        ("https://Chat.Example:8080", "chat.example:8080", True),  # TLS ended by a proxy
        ("http://[::1]:8080", "[::1]:8080", True),
        ("http://evil.example", "chat.example:8080", False),
        ("http://chat.example:8081", "chat.example:8080", False),
        ("http://chat.example", "chat.example:8080", False),
        ("null", "chat.example:8080", False),  # a file or a sandboxed frame
    ],
)
def test_same_origin(origin: str, host: str, allowed: bool) -> None:
    assert same_origin(origin, host) is allowed


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("chat.example:8080", "chat.example"),
        ("Chat.Example", "chat.example"),
        ("[::1]:8080", "::1"),
        ("[::1]", "::1"),
        ("127.0.0.1:80", "127.0.0.1"),
        ("", ""),
    ],
)
def test_host_name(host: str, name: str) -> None:
    assert host_name(host) == name


@pytest.mark.parametrize(
    ("payload", "line"),
    [(b"LIST", b"LIST"), (b"LIST\r\n", b"LIST"), (b"LIST\n", b"LIST"), (b"LIST\r", b"LIST"),
     (b"LIST\n\n", b"LIST\n"), (b"", b"")],
)  # fmt: skip
def test_one_trailing_line_end_is_dropped(payload: bytes, line: bytes) -> None:
    assert without_line_end(payload) == line


# A minimal WebSocket client over an in-memory transport


class TCPLikeTransport(StringTransport):
    """
    L{StringTransport}, as lenient as TCP and TLS transports: unregistering
    when no producer is registered does nothing (autobahn unregisters again
    when it drops a connection).
    """

    def unregisterProducer(self) -> None:
        if self.producer is not None:
            super().unregisterProducer()


class HTTPChannelStandIn:
    """
    Registered as the transport's producer before the handshake, as
    twisted.web's HTTP channel is when it hands a connection to WebSocket.
    """

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One masked frame, as a client must send it."""
    mask = b"\x1b\x2c\x3d\x4e"
    length = len(payload)
    if length < 126:
        size = bytes([0x80 | length])
    elif length < 1 << 16:
        size = bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        size = bytes([0x80 | 127]) + struct.pack("!Q", length)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode]) + size + mask + masked


def parse_frames(data: bytes) -> tuple[list[tuple[bool, int, bytes]], bytes]:
    """The complete server frames (unmasked) at the start of C{data}, and the rest."""
    frames = []
    while len(data) >= 2:
        fin, opcode, masked, length = data[0] & 0x80, data[0] & 0x0F, data[1] & 0x80, data[1] & 0x7F
        assert not masked, "server frames are never masked"
        offset = 2
        if length == 126:
            (length,), offset = struct.unpack("!H", data[2:4]), 4
        elif length == 127:
            (length,), offset = struct.unpack("!Q", data[2:10]), 10
        if len(data) < offset + length:
            break
        frames.append((bool(fin), opcode, data[offset : offset + length]))
        data = data[offset + length :]
    return frames, data


class WebSocketClient:
    """
    One WebSocket connection to a L{ChatWebSocketFactory}, in memory.

    @ivar status: the status line of the handshake response.
    @ivar close_code: the code of the close frame received, if any.
    """

    def __init__(
        self, factory: ChatWebSocketFactory, port: int, origin: str | None = ORIGIN
    ) -> None:
        peer = IPv4Address("TCP", "10.0.0.2", port)
        self.transport = TCPLikeTransport(
            hostAddress=IPv4Address("TCP", "10.0.0.1", 8080), peerAddress=peer
        )
        self.transport.registerProducer(HTTPChannelStandIn(), True)
        self.protocol: ChatWebSocketProtocol = factory.buildProtocol(peer)
        self._outbox = factory.chat.outbox
        self.protocol.makeConnection(self.transport)
        request = [
            "GET /ws HTTP/1.1",
            f"Host: {HOST}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ] + ([f"Origin: {origin}"] if origin is not None else [])
        self.protocol.dataReceived("\r\n".join(request).encode() + b"\r\n\r\n")
        head, _, self._buffer = self.transport.value().partition(b"\r\n\r\n")
        self.transport.clear()
        self.status = head.split(b"\r\n")[0].decode()
        self._parts: list[bytes] = []
        self.close_code: int | None = None
        self.close_reason = ""

    def send(self, payload: bytes | str, opcode: int = TEXT) -> None:
        if isinstance(payload, str):
            payload = payload.encode()
        self.protocol.dataReceived(frame(opcode, payload))

    def messages(self) -> list[str]:
        """The text messages received since the last call (close frames noted)."""
        self._outbox.flushLater()  # presence notices: as if LATER had passed
        self._outbox.flush()  # the end of the reactor turn
        frames, self._buffer = parse_frames(self._buffer + self.transport.value())
        self.transport.clear()
        messages = []
        for fin, opcode, payload in frames:
            if opcode == CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0]
                self.close_reason = payload[2:].decode()
                continue
            assert opcode in (0, TEXT), f"unexpected frame {opcode}"
            self._parts.append(payload)
            if fin:
                messages.append(b"".join(self._parts).decode())
                self._parts = []
        # Presence notices are for tests/test_presence.py and the page test.
        return [message for message in messages if not PRESENCE_NOTICE.match(message)]

    def command(self, payload: bytes | str, opcode: int = TEXT) -> list[str]:
        """Send one message; the messages that came back."""
        self.send(payload, opcode)
        return self.messages()

    def answer_close(self) -> None:
        """Answer the server's close frame, as a browser does."""
        self.send(struct.pack("!H", 1000), CLOSE)

    def lost(self, reason: type[Exception] = ConnectionDone) -> None:
        """The reactor's part: the TCP connection is gone."""
        self.protocol.connectionLost(Failure(reason()))

    @property
    def dropped(self) -> bool:
        return self.transport.disconnecting


def one(lines: list[str], prefix: str) -> bool:
    """Whether C{lines} is one line that starts with C{prefix} (what follows is for people)."""
    return len(lines) == 1 and lines[0].startswith(prefix)


@pytest.fixture
def factory() -> ChatFactory:
    # grace=0: a dropped user's name is freed at once, as QUIT frees it.
    limits = Limits(max_line=64, max_outbound=1000, rate=0, join_timeout=0, grace=0)
    return ChatFactory(max_users=3, limits=limits, clock=Clock())


def web_factory(factory: ChatFactory) -> ChatWebSocketFactory:
    web = ChatWebSocketFactory(factory)
    # No handshake timers: they would be left on the global reactor.
    web.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
    return web


@pytest.fixture
def web(factory: ChatFactory) -> ChatWebSocketFactory:
    return web_factory(factory)


@pytest.fixture
def browser_user(web: ChatWebSocketFactory) -> WebSocketClient:
    client = WebSocketClient(web, 7000)
    assert client.status == "HTTP/1.1 101 Switching Protocols"
    assert client.messages() == GREETING
    (joined,) = client.command("JOIN web")
    assert joined.startswith("OK JOIN web 1/3")
    return client


@pytest.fixture
def telnet_user(factory: ChatFactory, browser_user: WebSocketClient) -> LineClient:
    client = LineClient(factory, 5000)
    assert client.lines() == GREETING
    (joined,) = client.send("JOIN tel")
    assert joined.startswith("OK JOIN tel 2/3")
    return client


# The adapter, at the protocol level


def test_websocket_and_telnet_users_share_the_room(
    browser_user: WebSocketClient, telnet_user: LineClient
) -> None:
    # Each server line is one message, without its CRLF.
    assert browser_user.command("LIST") == ["USER web", "USER tel", "OK LIST 2"]
    assert telnet_user.send("LIST") == ["USER web", "USER tel", "OK LIST 2"]
    assert one(browser_user.command("MESG TEL hello telnet"), "OK MESG tel")
    assert telnet_user.lines() == ["MESG web: hello telnet"]
    assert one(telnet_user.send("MESG web hello browser"), "OK MESG web")
    assert browser_user.messages() == ["MESG tel: hello browser"]
    assert browser_user.command("BCST to all") == ["OK BCST 1"]
    assert telnet_user.lines() == ["BCST web: to all"]
    assert telnet_user.send("BCST and back") == ["OK BCST 1"]
    assert browser_user.messages() == ["BCST tel: and back"]


def test_what_a_turn_gathered_goes_out_before_the_clients_close_frame(
    browser_user: WebSocketClient, telnet_user: LineClient
) -> None:
    # A message for the browser user, then its last command and its close in
    # one read, as a script that sends and closes at once does: nothing can
    # be sent after the close, so what was gathered goes first.
    telnet_user.protocol.dataReceived(b"MESG web bye\r\n")
    browser_user.protocol.dataReceived(frame(TEXT, b"LIST") + frame(CLOSE, struct.pack("!H", 1000)))
    assert browser_user.messages() == ["MESG tel: bye", "USER web", "USER tel", "OK LIST 2"]
    assert browser_user.close_code == 1000
    assert telnet_user.lines() == ["OK MESG web delivered"]


def test_the_chat_rules_are_the_same(
    browser_user: WebSocketClient, web: ChatWebSocketFactory
) -> None:
    other = WebSocketClient(web, 7001)
    assert other.messages() == GREETING
    assert one(other.command("LIST"), "ERR Unregistered User: ")
    assert other.command("JOIN WEB") == ["ERR Username Taken: WEB is already registered"]
    assert one(other.command("JOIN <b>"), "ERR Invalid Username: ")
    assert other.command("") == []  # an empty line gets no answer
    assert one(other.command("join second"), "OK JOIN second 2/3")


def test_a_websocket_user_has_a_chat_protocol_on_the_shim(
    browser_user: WebSocketClient, factory: ChatFactory
) -> None:
    chat = browser_user.protocol.chat
    assert chat is not None and chat.session in factory.connections
    assert isinstance(chat.transport, WebSocketTransport)
    assert chat.peer == "10.0.0.2:7000"
    assert chat.transport.getPeer() == IPv4Address("TCP", "10.0.0.2", 7000)
    assert chat.transport.getHost() == IPv4Address("TCP", "10.0.0.1", 8080)
    # The chat protocol took the producer slot from the HTTP channel.
    assert browser_user.transport.producer is chat
    assert browser_user.transport.streaming


def test_one_trailing_line_end_is_accepted(browser_user: WebSocketClient) -> None:
    assert browser_user.command("LIST\r\n") == ["USER web", "OK LIST 1"]
    assert browser_user.command("LIST\n") == ["USER web", "OK LIST 1"]


@pytest.mark.parametrize("payload", ["BCST one\nQUIT", "BCST one\r\nBCST two", "BCST a\rb", "\n\n"])
def test_a_message_with_a_line_break_inside_is_refused(
    browser_user: WebSocketClient, telnet_user: LineClient, factory: ChatFactory, payload: str
) -> None:
    assert browser_user.command(payload) == [f"ERR Usage: {LINE_BREAK_REFUSED}"]
    assert telnet_user.lines() == []  # nothing of it was run
    assert factory.stats.errors["Usage"] == 1
    assert browser_user.command("BCST still here") == ["OK BCST 1"]


def test_binary_messages_get_an_error(
    browser_user: WebSocketClient, telnet_user: LineClient
) -> None:
    assert browser_user.command(b"BCST hi", BINARY) == [f"ERR Usage: {BINARY_REFUSED}"]
    assert telnet_user.lines() == []
    assert not browser_user.dropped
    assert browser_user.command("BCST hi") == ["OK BCST 1"]


def test_a_message_of_max_line_bytes_is_a_command(
    browser_user: WebSocketClient, telnet_user: LineClient
) -> None:
    text = "é" * 29  # 58 bytes: with "BCST " the 64-byte limit, exactly
    assert browser_user.command(f"BCST {text}") == ["OK BCST 1"]
    assert telnet_user.lines() == [f"BCST web: {text}"]


def test_an_oversize_message_closes_with_1009_and_frees_the_name(
    browser_user: WebSocketClient, telnet_user: LineClient
) -> None:
    assert browser_user.command("BCST " + "x" * 60) == []
    assert browser_user.close_code == 1009  # Message Too Big
    assert "64" in browser_user.close_reason
    assert telnet_user.lines() == []
    browser_user.answer_close()
    assert browser_user.dropped
    browser_user.lost()
    assert telnet_user.send("LIST") == ["USER tel", "OK LIST 1"]


def test_an_oversize_message_in_fragments_is_refused_too(browser_user: WebSocketClient) -> None:
    # Two frames within the limit, one message past it.
    browser_user.protocol.dataReceived(frame(TEXT, b"BCST " + b"x" * 40, fin=False))
    browser_user.protocol.dataReceived(frame(0, b"y" * 40))
    assert browser_user.messages() == []
    assert browser_user.close_code == 1009


def test_lines_longer_than_max_line_are_still_sent_to_browsers(
    browser_user: WebSocketClient, telnet_user: LineClient
) -> None:
    # A relayed line is its sender's line plus "MESG name: ": longer than the
    # longest input line, which autobahn's message limit must not refuse.
    text = "\x80" * 55  # invalid UTF-8: each byte becomes U+FFFD, 3 bytes
    assert one(telnet_user.send(b"MESG web " + text.encode("latin-1") + b"\r\n"), "OK MESG web")
    (line,) = browser_user.messages()
    assert line == "MESG tel: " + "\ufffd" * 55
    assert len(line.encode()) > 64


def test_invalid_utf8_text_closes_with_1007(browser_user: WebSocketClient) -> None:
    assert browser_user.command(b"BCST \xff") == []
    assert browser_user.close_code == 1007  # Invalid Frame Payload Data


def test_quit_sends_the_reply_then_closes(
    browser_user: WebSocketClient, telnet_user: LineClient
) -> None:
    assert browser_user.command("QUIT") == ["OK QUIT Bye"]
    assert browser_user.close_code == 1000
    # The name is free at once, before the closing handshake ends.
    assert telnet_user.send("LIST") == ["USER tel", "OK LIST 1"]
    # Nothing is sent once closing, even if the room still relays to it.
    browser_user.protocol.chat.transport.write(b"INFO late\r\n")
    assert browser_user.messages() == []
    browser_user.answer_close()
    assert browser_user.dropped
    browser_user.lost()
    assert browser_user.protocol.chat is None


def test_a_dropped_connection_frees_the_name(
    browser_user: WebSocketClient, telnet_user: LineClient, factory: ChatFactory
) -> None:
    browser_user.lost(ConnectionLost)
    assert telnet_user.send("LIST") == ["USER tel", "OK LIST 1"]
    assert telnet_user.send("MESG web anyone") == [
        "ERR Unknown Recipient: nobody named web is registered"
    ]
    assert len(factory.connections) == 1 and factory.peers.total == 1


def test_a_browser_that_stops_reading_is_dropped(
    browser_user: WebSocketClient, telnet_user: LineClient
) -> None:
    # What the TCP transport does when 64 KiB are waiting: pause its producer.
    browser_user.transport.producer.pauseProducing()
    for _ in range(40):
        telnet_user.send("MESG web " + "z" * 40)
    assert browser_user.transport.disconnected  # aborted, not closed
    assert telnet_user.send("LIST") == ["USER tel", "OK LIST 1"]
    browser_user.lost(ConnectionLost)


def test_resumed_browser_is_counted_afresh(
    browser_user: WebSocketClient, telnet_user: LineClient
) -> None:
    chat = browser_user.transport.producer
    for _ in range(3):
        chat.pauseProducing()
        for _ in range(10):
            telnet_user.send("MESG web " + "z" * 40)
        chat.resumeProducing()
    assert not browser_user.transport.disconnecting


def test_connection_caps_refuse_browsers_too() -> None:
    factory = ChatFactory(limits=Limits(max_connections=1, join_timeout=0), clock=Clock())
    LineClient(factory, 5000).send("JOIN telnet")  # registered: never pushed out
    refused = WebSocketClient(web_factory(factory), 7000)
    assert refused.messages() == [
        "BYE Too Many Connections: the server has 1 connections, its limit"
    ]
    assert refused.close_code == 1000
    refused.answer_close()
    refused.lost()
    assert factory.peers.total == 1


def test_shutdown_says_goodbye_to_browsers(
    browser_user: WebSocketClient, factory: ChatFactory
) -> None:
    closed = factory.closeAll()
    assert browser_user.messages() == ["BYE Shutting Down: the server is shutting down; goodbye"]
    assert browser_user.close_code == 1000
    assert not closed.called
    browser_user.answer_close()
    browser_user.lost()
    assert closed.called


@pytest.mark.parametrize(
    ("origin", "status"),
    [("http://evil.example", 403), ("http://chat.example:9999", 403), ("null", 400)],
)  # autobahn itself refuses "null"
def test_other_origins_are_refused(
    web: ChatWebSocketFactory, factory: ChatFactory, origin: str, status: int
) -> None:
    client = WebSocketClient(web, 7000, origin=origin)
    assert client.status.startswith(f"HTTP/1.1 {status} ")
    assert client.dropped
    assert not factory.connections and factory.peers.total == 0


@pytest.mark.parametrize("origin", [ORIGIN, None])
def test_same_origin_and_non_browsers_are_served(
    web: ChatWebSocketFactory, origin: str | None
) -> None:
    client = WebSocketClient(web, 7000, origin=origin)
    assert client.status == "HTTP/1.1 101 Switching Protocols"
    assert client.messages() == GREETING


def test_message_limits_come_from_max_line(factory: ChatFactory) -> None:
    web = ChatWebSocketFactory(factory)
    assert web.maxMessagePayloadSize == web.maxFramePayloadSize == 64
    assert web.closeHandshakeTimeout == factory.shutdown_grace
    assert not web.failByDrop


def test_the_web_option_adds_a_site_to_the_service() -> None:
    options = Options()
    options.parseOptions(["--port", "tcp:0", "--web", "8080"])
    service = makeService(options)
    sites = [
        child
        for child in service
        if isinstance(child, StreamServerEndpointService) and isinstance(child.factory, Site)
    ]
    assert len(sites) == 1
    assert isinstance(sites[0].endpoint, TCP4ServerEndpoint)  # a bare number means TCP


# A real server, real sockets

WEB_PORT = re.compile(r"Site starting on (\d+)")


def start_web_server(start_server: StartServer, *args: str) -> tuple[ChatServer, int]:
    """A C{twistd chat --web} on 127.0.0.1; the server and its web port."""
    server = start_server("--web", "tcp:0:interface=127.0.0.1", *args)
    match = WEB_PORT.search(server.wait_for_log("Site starting on"))
    assert match is not None
    return server, int(match.group(1))


def test_the_page_is_served_with_its_headers(start_server: StartServer) -> None:
    _, port = start_web_server(start_server)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        page = response.read().decode()
        assert response.headers["Content-Type"].startswith("text/html")
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert '<script src="app.js" defer></script>' in page
    with pytest.raises(urllib.error.HTTPError) as refused:  # not a WebSocket handshake
        urllib.request.urlopen(f"http://127.0.0.1:{port}/ws", timeout=5)
    assert refused.value.code == 426
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{name}", timeout=5) as response:
            assert kind in response.headers["Content-Type"]
            assert response.headers["Content-Security-Policy"] == csp


def handshake(port: int, origin: str, host: str = "127.0.0.1") -> bytes:
    """The first bytes of the answer to a WebSocket handshake at /ws."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def test_a_page_elsewhere_cannot_open_the_websocket(start_server: StartServer) -> None:
    _, port = start_web_server(start_server)
    assert handshake(port, "http://evil.example").startswith(b"HTTP/1.1 403 ")
    answer = handshake(port, f"http://127.0.0.1:{port}")
    assert answer.startswith(b"HTTP/1.1 101 ")


def test_a_rebound_name_cannot_open_the_websocket(start_server: StartServer) -> None:
    """
    DNS rebinding: evil.example's page, its name now resolving to this
    server, sends an Origin that matches its Host. With C{--web-hosts} the
    name is checked; without it the handshake passes (the default, as a
    server may be reached under any name).
    """
    _, port = start_web_server(start_server, "--web-hosts", "chat.example, 127.0.0.1")
    rebound = handshake(port, f"http://evil.example:{port}", host="evil.example")
    assert rebound.startswith(b"HTTP/1.1 403 "), rebound
    named = handshake(port, f"http://chat.example:{port}", host="chat.example")
    assert named.startswith(b"HTTP/1.1 101 "), named
    assert handshake(port, f"http://127.0.0.1:{port}").startswith(b"HTTP/1.1 101 ")
    _, open_port = start_web_server(start_server)
    anyname = handshake(open_port, f"http://evil.example:{open_port}", host="evil.example")
    assert anyname.startswith(b"HTTP/1.1 101 ")


def test_websocket_over_tls(start_server: StartServer, tmp_path: Path) -> None:
    """C{--web ssl:...}: the chat protocol is the producer of a TLS transport."""
    key, cert = self_signed_certificate(tmp_path)
    server = start_server("--web", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    match = re.search(r"Site \(TLS\) starting on (\d+)", server.wait_for_log("Site (TLS)"))
    assert match is not None
    port = int(match.group(1))
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5)) as sock:
        sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: https://127.0.0.1:{port}\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:  # a client waits for the handshake's answer (RFC 6455)
            data += sock.recv(65536)
        sock.sendall(frame(TEXT, b"JOIN secure") + frame(TEXT, b"LIST") + frame(TEXT, b"QUIT"))
        while b"\x88" not in data.partition(b"\r\n\r\n")[2]:  # the close frame
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    frames, _ = parse_frames(rest)
    lines = [payload.decode() for _, opcode, payload in frames if opcode == TEXT]
    assert lines[2].startswith("OK JOIN secure 1/10")
    assert lines[3:] == ["USER secure", "OK LIST 1", "OK QUIT Bye"]
    assert frames[-1] == (True, CLOSE, struct.pack("!H", 1000))


# A real browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--lang=en-US",
)
SCREENSHOT = REPO_ROOT / "docs" / "web.png"
WAIT = 10.0
"""Seconds to wait for the page."""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """A headless Chromium; quit (with every process it started) at teardown."""
    for path in (CHROMIUM, CHROMEDRIVER):
        assert path.exists(), f"{path} is missing: apt-get install chromium chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium'}")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    # The exact viewport, whatever room this version's window frame takes.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1000, "height": 560, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: WebDriver, what: str, condition: object) -> object:
    """Wait until C{condition(driver)} is truthy; fail with C{what} if never."""
    return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(condition, message=what)


def rows(driver: WebDriver, kind: str) -> list[str]:
    """The text of the message rows of one kind (mesg, bcst, own, error...), time left out."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#messages li.' + arguments[0])]"
        ".map(row => [...row.children].slice(1).map(part => part.textContent).join(' '))",
        kind,
    )


def listed(driver: WebDriver) -> list[str]:
    """The names in the page's list of users."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#users [data-name]')].map(b => b.dataset.name)"
    )


def join_in_page(driver: WebDriver, name: str) -> None:
    field = driver.find_element(By.ID, "name")
    field.clear()
    field.send_keys(name, Keys.ENTER)


def send_in_page(driver: WebDriver, text: str) -> None:
    driver.find_element(By.ID, "text").send_keys(text, Keys.ENTER)


def joined(driver: WebDriver, name: str) -> None:
    until(
        driver,
        f"joined as {name}",
        lambda d: d.find_element(By.ID, "status").text == f"Joined as {name}",
    )


@pytest.mark.usefixtures("time_limit")
def test_a_browser_user_and_telnet_users_chat(
    start_server: StartServer, browser: WebDriver, tmp_path: Path
) -> None:
    server, port = start_web_server(start_server)
    alice, carol, dave = Client(server.port), Client(server.port), Client(server.port)
    alice.join("alice")
    carol.join("carol")
    browser.get(f"http://127.0.0.1:{port}/")
    assert browser.title == "chat"

    # Errors are shown: a name already taken.
    join_in_page(browser, "alice")
    until(browser, "the JOIN error", lambda d: d.find_element(By.ID, "join-error").is_displayed())
    assert browser.find_element(By.ID, "join-error").text == (
        "Username Taken: alice is already registered"
    )
    assert rows(browser, "error") == [
        "ERR Could not join as alice: Username Taken alice is already registered"
    ]
    join_in_page(browser, "bob")
    joined(browser, "bob")
    server.wait_for_log("bob joined from 127.0.0.1:")

    # LIST, in the page and for telnet users alike; presence notices keep
    # the page's list live: a join, a QUIT, a dropped connection.
    dave.join("dave")
    until(browser, "dave listed", lambda d: listed(d) == ["alice", "carol", "bob", "dave"])
    assert alice.list_names() == ["alice", "carol", "bob", "dave"]
    dave.quit()
    until(browser, "dave gone", lambda d: listed(d) == ["alice", "carol", "bob"])
    eve = Client(server.port)
    eve.join("eve")
    until(browser, "eve listed", lambda d: listed(d) == ["alice", "carol", "bob", "eve"])
    eve.abort()
    until(browser, "eve gone", lambda d: listed(d) == ["alice", "carol", "bob"])
    assert rows(browser, "notice") == [
        "dave joined",
        "dave left",
        "eve joined",
        "eve lost the connection",
    ]
    # From the notices alone: the page listed once, when it joined (it no
    # longer polls LIST).
    assert server.log_text().count("bob listed") == 1

    # MESG from telnet to the browser.
    assert alice.expect_reply("MESG bob hi Bob, are you on the web page?", "OK MESG bob")
    until(browser, "alice's message", lambda d: rows(d, "mesg"))
    assert rows(browser, "mesg") == ["alice to you hi Bob, are you on the web page?"]

    # MESG from the browser: a click on the user, then the text.
    browser.find_element(By.CSS_SELECTOR, '#users [data-name="alice"]').click()
    assert browser.find_element(By.ID, "target").text == "To alice"
    send_in_page(browser, "Yes! No telnet needed.")
    assert alice.read_line() == "MESG bob: Yes! No telnet needed."
    until(browser, "the MESG confirmed", lambda d: rows(d, "own"))
    assert rows(browser, "own") == ["you to alice Yes! No telnet needed."]

    # BCST from the browser reaches every telnet user.
    browser.find_element(By.ID, "target").click()
    send_in_page(browser, "Hello everyone, grüße!")
    assert alice.read_line() == "BCST bob: Hello everyone, grüße!"
    assert carol.read_line() == "BCST bob: Hello everyone, grüße!"
    until(browser, "the BCST confirmed", lambda d: len(rows(d, "own")) == 2)
    assert rows(browser, "own")[1] == "you to everyone Hello everyone, grüße! reached 2 users"

    # BCST from telnet reaches the browser.
    assert carol.expect_reply("BCST welcome, bob", "OK BCST 2")
    assert alice.read_line() == "BCST carol: welcome, bob"
    until(browser, "carol's broadcast", lambda d: rows(d, "bcst"))
    assert rows(browser, "bcst") == ["carol to everyone welcome, bob"]

    # The user chosen for a private message leaves: the notice takes the
    # page back to everyone at once (no MESG to someone gone).
    browser.find_element(By.CSS_SELECTOR, '#users [data-name="carol"]').click()
    assert browser.find_element(By.ID, "target").text == "To carol"
    carol.quit()
    until(browser, "carol gone", lambda d: listed(d) == ["alice", "bob"])
    assert browser.find_element(By.ID, "target").text == "To everyone"
    assert rows(browser, "notice")[-1] == "carol left"
    browser.find_element(By.ID, "target").click()

    browser.save_screenshot(str(tmp_path / "web.png"))
    if os.environ.get("CHAT_UPDATE_SCREENSHOT") or not SCREENSHOT.exists():
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "web.png", SCREENSHOT)

    # QUIT from the page.
    browser.find_element(By.ID, "quit").click()
    until(browser, "left", lambda d: d.find_element(By.ID, "status").text == "You left the chat")
    assert browser.find_element(By.ID, "name").is_displayed()
    assert alice.list_names() == ["alice"]


@pytest.mark.usefixtures("time_limit")
def test_user_text_is_shown_as_text_and_never_run(
    start_server: StartServer, browser: WebDriver
) -> None:
    server, port = start_web_server(start_server)
    mallory = Client(server.port)
    mallory.join("mallory")
    browser.get(f"http://127.0.0.1:{port}/")
    join_in_page(browser, "bob")
    joined(browser, "bob")

    image = """<img src=x onerror="document.title='pwned'">"""
    script = "<script>document.title='pwned'</script>"
    markup = "<b>bold</b> &amp; &lt;i&gt;"
    mallory.expect_reply(f"MESG bob {image}", "OK MESG bob")
    mallory.expect_reply(f"BCST {script}", "OK BCST 1")
    mallory.expect_reply(f"MESG bob {markup}", "OK MESG bob")
    send_in_page(browser, image)
    assert mallory.read_line() == f"BCST bob: {image}"
    until(browser, "every message", lambda d: len(rows(d, "mesg")) == 2 and rows(d, "own"))
    assert rows(browser, "mesg") == [f"mallory to you {image}", f"mallory to you {markup}"]
    assert rows(browser, "bcst") == [f"mallory to everyone {script}"]
    assert rows(browser, "own") == [f"you to everyone {image} reached 1 user"]
    time.sleep(0.3)  # an absence: give an injected handler the time to run
    assert browser.title == "chat"
    injected = "#messages img, #messages script, #messages b, #messages i"
    assert browser.find_elements(By.CSS_SELECTOR, injected) == []

    # Leaving the page is leaving the chat: the name is not held for a resume.
    browser.get("about:blank")
    server.wait_for_log("bob quit")
    assert mallory.list_names() == ["mallory"]


@pytest.mark.usefixtures("time_limit")
def test_the_page_shows_the_history_and_actions(
    start_server: StartServer, browser: WebDriver
) -> None:
    server, port = start_web_server(start_server)
    alice = Client(server.port)
    alice.join("alice")
    assert alice.expect_reply("BCST anyone here?", "OK BCST 0")
    assert alice.expect_reply("ME waits", "OK ME 0")
    assert alice.command("MESG alice a note to self")[-1] == "OK MESG alice delivered"
    browser.get(f"http://127.0.0.1:{port}/")
    join_in_page(browser, "bob")
    joined(browser, "bob")

    # After joining, the page asks for the history: shown before the live messages.
    until(browser, "the history", lambda d: len(rows(d, "history")) == 2)
    assert rows(browser, "history") == ["earlier alice anyone here?", "earlier * alice waits"]
    assert rows(browser, "notice") == ["2 earlier messages above; new ones below"]
    server.wait_for_log("bob asked for the history: 2 broadcasts replayed")
    times = browser.execute_script(
        "return [...document.querySelectorAll('#messages li.history time')].map(t => t.dateTime)"
    )
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z", t) for t in times), times

    # A live action, and one from the page ("/me").
    assert alice.expect_reply("ME waves at bob", "OK ME 1")
    until(browser, "alice's action", lambda d: rows(d, "action:not(.history)"))
    assert rows(browser, "action:not(.history)") == ["* alice waves at bob"]
    send_in_page(browser, "/me waves back")
    assert alice.read_line() == "* bob waves back"
    until(browser, "the ME confirmed", lambda d: rows(d, "own"))
    assert rows(browser, "own") == ["you * waves back reached 1 user"]
    assert [line.split(" ", 2)[2] for line in alice.command("HISTORY 2")] == [
        "* alice waves at bob",
        "* bob waves back",
        "2",
    ]


@pytest.mark.usefixtures("time_limit")
def test_shutdown_reaches_the_page(start_server: StartServer, browser: WebDriver) -> None:
    server, port = start_web_server(start_server)
    browser.get(f"http://127.0.0.1:{port}/")
    join_in_page(browser, "bob")
    joined(browser, "bob")
    started = time.monotonic()
    server.terminate()
    assert server.wait() == 0
    # The browser answered the close frame: no wait for the shutdown grace.
    assert time.monotonic() - started < ChatFactory.shutdown_grace
    status = "Disconnected by the server: Shutting Down: the server is shutting down; goodbye"
    until(browser, "the goodbye", lambda d: d.find_element(By.ID, "status").text == status)
    assert rows(browser, "bye") == [
        "BYE Disconnected: Shutting Down the server is shutting down; goodbye"
    ]
