"""
Issue 16, points 4 and 6: what a client of the HTTP ports (C{--web},
C{--metrics}) may cost the server.

  - Every byte written to a WebSocket counts against C{--max-outbound}, the
    pongs autobahn answers pings with too; frames without content (pings,
    empty frames) are bounded by the flood control's numbers.
  - HTTP connections count under C{--max-per-ip} and C{--max-connections}
    (a WebSocket once), a refused one gets a 503, and a request must arrive
    within C{--handshake-timeout}.

At the protocol level, then against a real C{twistd chat} over real sockets.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import time
from pathlib import Path

import pytest
from conftest import StartServer
from test_web import (
    CLOSE,
    TEXT,
    WebSocketClient,
    frame,
    parse_frames,
    web_factory,
)
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource

from chat.core.limits import Limits
from chat.server.factory import ChatFactory
from chat.server.site import CappedChannel, CappedSite
from harness import Client as LineClient
from server import ChatServer, Client, self_signed_certificate

PING, PONG, CONTINUATION = 9, 10, 0
FLOODING = "BYE Flooding: more than 3 pings or empty WebSocket frames at once"

# The WebSocket layer, in memory


def joined(factory: ChatFactory) -> WebSocketClient:
    """A WebSocket user named web on C{factory}."""
    client = WebSocketClient(web_factory(factory), 7000)
    client.messages()
    (line,) = client.command("JOIN web")
    assert line.startswith("OK JOIN web ")
    return client


def texts(client: WebSocketClient) -> list[str]:
    """The text messages received since the last call, pongs left aside."""
    client.protocol.factory.chat.outbox.flushLater()  # presence notices, as if LATER passed
    client.protocol.factory.chat.outbox.flush()  # the end of the reactor turn
    frames, _ = parse_frames(client.transport.value())
    client.transport.clear()
    return [payload.decode() for _, opcode, payload in frames if opcode == TEXT]


def test_pongs_to_a_client_that_does_not_read_count_against_max_outbound() -> None:
    factory = ChatFactory(limits=Limits(max_outbound=1000, rate=0, join_timeout=0), clock=Clock())
    client = joined(factory)
    # What the TCP transport does when 64 KiB are waiting: pause its producer.
    client.transport.producer.pauseProducing()
    for _ in range(7):
        client.send(b"p" * 125, PING)
    assert not client.transport.disconnecting  # 7 pongs of 127 bytes: 889
    client.send(b"p" * 125, PING)
    assert client.transport.disconnected  # aborted: 1,016 bytes
    assert factory.stats.limits["max_outbound"] == 1
    assert not factory.room.names()
    client.lost()


def test_pongs_to_a_client_that_reads_are_free() -> None:
    factory = ChatFactory(limits=Limits(max_outbound=1000, rate=0, join_timeout=0), clock=Clock())
    client = joined(factory)
    for _ in range(100):
        client.send(b"p" * 125, PING)
    frames, _ = parse_frames(client.transport.value())
    assert [opcode for _, opcode, _ in frames] == [PONG] * 100
    assert not client.transport.disconnecting


def test_the_frames_of_long_lines_count_too() -> None:
    """A line of 126 bytes or more has a 4-byte frame header, 2 more than its CRLF."""
    factory = ChatFactory(limits=Limits(max_outbound=1000, rate=0, join_timeout=0), clock=Clock())
    client = joined(factory)
    sender = LineClient(factory, 5000)
    sender.lines()
    sender.send("JOIN tel")
    client.messages()
    client.transport.producer.pauseProducing()
    for _ in range(6):  # "MESG tel: " + 150 + CRLF: 6 x 162 = 972, and 6 x 2 more sent
        sender.send("MESG web " + "z" * 150)
    assert not client.transport.disconnecting
    sender.send("MESG web " + "z" * 10)  # 22 bytes: 994 for the lines, 1,006 sent
    assert client.transport.disconnected


@pytest.fixture
def flood_factory() -> ChatFactory:
    return ChatFactory(limits=Limits(rate=1, burst=3, join_timeout=0), clock=Clock())


@pytest.mark.parametrize(
    "frames",
    [
        [(PING, b"", True)] * 4,
        [(PONG, b"unasked", True)] * 4,
        [(TEXT, b"", True)] * 4,
        [(TEXT, b"", False)] + [(CONTINUATION, b"", False)] * 3,
    ],
    ids=["pings", "pongs", "empty messages", "empty continuations"],
)
def test_frames_without_content_past_the_burst_say_bye_flooding(
    flood_factory: ChatFactory, frames: list[tuple[int, bytes, bool]]
) -> None:
    client = joined(flood_factory)
    for opcode, payload, fin in frames[:3]:
        client.protocol.dataReceived(frame(opcode, payload, fin))
    assert texts(client) == []
    opcode, payload, fin = frames[3]
    client.protocol.dataReceived(frame(opcode, payload, fin))
    assert client.messages() == [f"{FLOODING}; send at most 1 per second"]
    assert client.close_code == 1000
    assert flood_factory.stats.limits["websocket_frames"] == 1
    assert not flood_factory.room.names()  # left at the BYE


def test_frames_without_content_are_refilled_at_the_rate(flood_factory: ChatFactory) -> None:
    client = joined(flood_factory)
    clock = flood_factory.clock
    assert isinstance(clock, Clock)
    for _ in range(10):
        for _ in range(3):
            client.send(b"", PING)
        clock.advance(3)
    frames, _ = parse_frames(client.transport.value())
    assert [opcode for _, opcode, _ in frames] == [PONG] * 30
    assert client.close_code is None


def test_the_bye_of_a_frame_flood_in_machine_mode(flood_factory: ChatFactory) -> None:
    client = joined(flood_factory)
    assert client.command("MODE MACHINE") == ["OK MODE MACHINE 2"]
    for _ in range(4):
        client.send(b"", PING)
    assert texts(client) == ["BYE FLOODING"]


def test_no_frame_flood_control_without_flood_control() -> None:
    factory = ChatFactory(limits=Limits(rate=0, join_timeout=0), clock=Clock())
    client = joined(factory)
    for _ in range(100):
        client.send(b"", PING)
    assert client.close_code is None


# The HTTP channel, in memory

PEER = IPv4Address("TCP", "10.0.0.2", 5000)


def channel(
    factory: ChatFactory, peer: IPv4Address = PEER
) -> tuple[CappedChannel, StringTransport]:
    site = CappedSite(Resource(), factory)
    built = site.buildProtocol(peer)
    assert isinstance(built, CappedChannel)
    transport = StringTransport(peerAddress=peer)
    built.makeConnection(transport)
    return built, transport


@pytest.fixture
def capped() -> ChatFactory:
    limits = Limits(max_per_peer=2, handshake_timeout=2, close_timeout=5)
    return ChatFactory(limits=limits, clock=Clock())


def test_http_connections_are_counted_and_refused_past_the_cap(capped: ChatFactory) -> None:
    first, _ = channel(capped)
    channel(capped)
    assert capped.peers.total == 2
    refused, transport = channel(capped)
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert answer.endswith(b"\r\n\r\n10.0.0.2 has 2 connections open, the limit per address\n")
    assert transport.disconnecting
    refused.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not read
    assert transport.value() == answer
    assert capped.stats.limits["max_connections"] == 1
    refused.connectionLost(None)
    assert capped.peers.total == 2
    first.connectionLost(None)
    assert capped.peers.total == 1
    channel(capped, IPv4Address("TCP", "10.0.0.3", 5000))  # another address


def test_a_refusal_that_is_not_read_is_aborted(capped: ChatFactory) -> None:
    channel(capped)
    channel(capped)
    refused, transport = channel(capped)
    clock = capped.clock
    assert isinstance(clock, Clock)
    clock.advance(1.9)
    assert not transport.disconnected
    clock.advance(0.1)
    assert transport.disconnected
    refused.connectionLost(None)
    assert capped.peers.total == 2


def test_a_request_must_be_complete_within_the_deadline(capped: ChatFactory) -> None:
    trickling, transport = channel(capped)
    clock = capped.clock
    assert isinstance(clock, Clock)
    trickling.dataReceived(b"GET / HTTP/1.1\r\n")
    for second in range(3):
        assert not transport.disconnected, second
        trickling.dataReceived(b"X-Slow: 1\r\n")
        clock.advance(0.9)
    assert transport.disconnected
    assert capped.stats.limits["request_timeout"] == 1
    trickling.connectionLost(None)
    assert capped.peers.total == 0


def test_a_request_in_time_is_served_and_the_next_one_has_its_own_deadline(
    capped: ChatFactory,
) -> None:
    served, transport = channel(capped)
    clock = capped.clock
    assert isinstance(clock, Clock)
    for _ in range(3):
        clock.advance(1.9)
        served.dataReceived(b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n")
        assert transport.value().startswith(b"HTTP/1.1 404 ")
        transport.clear()
    assert not transport.disconnected
    clock.advance(2)  # kept alive, and no request within the deadline
    assert transport.disconnected


def test_a_close_after_a_response_is_bounded(capped: ChatFactory) -> None:
    """HTTP/1.0: Twisted closes after the response, and waits for the client to read it."""
    served, transport = channel(capped)
    served.dataReceived(b"GET /missing HTTP/1.0\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.0 404 ")
    assert transport.disconnecting and not transport.disconnected
    clock = capped.clock
    assert isinstance(clock, Clock)
    clock.advance(5)
    assert transport.disconnected
    assert capped.stats.limits["request_timeout"] == 0


def test_a_websocket_is_counted_once(capped: ChatFactory) -> None:
    """The HTTP count is handed over to the chat protocol at the upgrade."""
    from chat.web import web_site

    site = web_site(capped)
    transport = StringTransport(peerAddress=PEER)
    http = site.buildProtocol(PEER)
    assert http is not None
    transport.protocol = http  # type: ignore[attr-defined]  # as TCP's; autobahn takes it over
    http.makeConnection(transport)
    assert capped.peers.total == 1
    http.dataReceived(
        b"GET /ws HTTP/1.1\r\nHost: chat.example\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    assert transport.value().startswith(b"HTTP/1.1 101 ")
    assert capped.peers.total == 1 and len(capped.connections) == 1
    clock = capped.clock
    assert isinstance(clock, Clock)
    clock.advance(60)  # no request deadline for a WebSocket
    assert not transport.disconnecting


# A real server, real sockets

SITE_PORT = re.compile(r"Site (?:\(TLS\) )?starting on (\d+)")


def site_port(server: ChatServer) -> int:
    """The port of the server's one HTTP site (C{--web} or C{--metrics})."""
    deadline = time.monotonic() + 5
    while not (match := SITE_PORT.search(server.log_text())):
        assert time.monotonic() < deadline, server.log_text()
        time.sleep(0.02)
    return int(match.group(1))


class WebSocketPeer:
    """A raw WebSocket client on a real socket: frames in, frames out."""

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            assert chunk, data
            data += chunk
        head, _, self.buffer = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        self.eof = False

    def frames(self, until: float) -> list[tuple[bool, int, bytes]]:
        """Every frame received until the close frame, EOF, or C{until} seconds pass."""
        deadline = time.monotonic() + until
        received, self.buffer = parse_frames(self.buffer)
        while not self.eof and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                chunk = b""
            self.eof = not chunk
            got, self.buffer = parse_frames(self.buffer + chunk)
            received += got
            if any(opcode == CLOSE for _, opcode, _ in got):
                break
        return received

    def texts(self, until: float) -> list[str]:
        return [payload.decode() for _, op, payload in self.frames(until) if op == TEXT]

    def close(self) -> None:
        self.sock.close()


def percentile(seconds: list[float], rank: int) -> float:
    """The C{rank}th percentile of C{seconds}, in milliseconds (0 for none)."""
    if not seconds:
        return 0.0
    ordered = sorted(seconds)
    return 1000 * ordered[min(len(ordered) - 1, len(ordered) * rank // 100)]


def test_a_websocket_client_that_pings_and_never_reads_is_dropped(
    start_server: StartServer,
) -> None:
    """
    Issue 16 point 4: pongs went to the transport outside the outbound count,
    and a client that sent pings and never read grew the server without end.
    Flood control is off, so only the outbound count can stop it.
    """
    server = start_server(
        "--web", "tcp:0:interface=127.0.0.1", "--rate-limit", "0", "--max-outbound", "65536"
    )
    port = site_port(server)
    alice, bob = Client(server.port), Client(server.port)
    alice.join("alice")
    bob.join("bob")
    pinger = WebSocketPeer(port, rcvbuf=4096)
    pinger.sock.sendall(frame(TEXT, b"JOIN pinger"))
    assert any(text.startswith("OK JOIN pinger") for text in pinger.texts(2))
    before = server.rss_kib()
    batch = frame(PING, b"p" * 125) * 512
    sent = rounds = 0
    latencies: list[float] = []
    started = time.monotonic()
    while "dropped slow consumer pinger" not in server.log_text():
        assert sent < 24 << 20, (
            f"still connected after {sent >> 20} MiB of pings, "
            f"server RSS grew by {server.rss_kib() - before} KiB; calm MESG round trips "
            f"p50/p99 {percentile(latencies, 50):.1f}/{percentile(latencies, 99):.1f} ms"
        )
        try:
            pinger.sock.sendall(batch)
        except OSError:  # aborted by the server
            break
        sent += len(batch)
        rounds += 1
        if rounds % 4 == 0:  # a calm pair goes on talking meanwhile
            calm = time.monotonic()
            alice.expect_reply(f"MESG bob calm {rounds}", "OK MESG bob delivered")
            assert bob.read_line() == f"MESG alice: calm {rounds}"
            latencies.append(time.monotonic() - calm)
    server.wait_for_log("dropped slow consumer pinger at 127.0.0.1:")
    growth = server.rss_kib() - before
    print(
        f"\npings sent: {sent >> 10} KiB in {time.monotonic() - started:.1f} s, "
        f"then dropped; server RSS {before} KiB before, grew by {growth} KiB; "
        f"calm MESG round trips meanwhile: {len(latencies)}, "
        f"p50/p99 {percentile(latencies, 50):.1f}/{percentile(latencies, 99):.1f} ms"
    )
    assert growth < 16 << 10, f"server RSS grew by {growth} KiB"
    assert alice.command("LIST") == ["USER alice", "USER bob", "OK LIST 2"]
    alice.expect_reply("MESG bob after", "OK MESG bob delivered")
    assert bob.read_line() == "MESG alice: after"
    pinger.close()


@pytest.mark.parametrize(
    "flood",
    [
        frame(PING, b"") * 100,
        frame(TEXT, b"") * 100,
        frame(TEXT, b"", fin=False) + frame(CONTINUATION, b"", fin=False) * 100,
    ],
    ids=["pings", "empty messages", "empty continuations"],
)
def test_a_flood_of_frames_without_content_gets_bye_flooding(
    start_server: StartServer, flood: bytes
) -> None:
    server = start_server("--web", "tcp:0:interface=127.0.0.1")  # 20 at once, 10 a second
    port = site_port(server)
    flooder = WebSocketPeer(port)
    flooder.sock.sendall(frame(TEXT, b"JOIN flooder"))
    assert any(text.startswith("OK JOIN flooder") for text in flooder.texts(2))
    flooder.sock.sendall(flood)
    frames = flooder.frames(3)
    pongs = sum(opcode == PONG for _, opcode, _ in frames)
    texts = [payload.decode() for _, opcode, payload in frames if opcode == TEXT]
    print(f"\n{len(frames)} frames back, {pongs} pongs, texts {texts}")
    bye = "BYE Flooding: more than 20 pings or empty WebSocket frames at once"
    assert texts[-1:] == [f"{bye}; send at most 10 per second"]
    assert pongs <= 20
    assert frames[-1] == (True, CLOSE, struct.pack("!H", 1000))
    server.wait_for_log("disconnecting flooder: flooding, more than 20 WebSocket frames")
    flooder.close()


def open_or_closed(sock: socket.socket) -> tuple[bytes, bool]:
    """What the (non-blocking) socket has received, and whether it is closed."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return data, False
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk


@pytest.mark.parametrize("option", ["--web", "--metrics"])
def test_trickling_http_connections_are_capped_and_aborted(
    start_server: StartServer, option: str
) -> None:
    """
    Issue 16 point 6: 40 connections from one address, each sending a header
    every 0.25 s, all stayed open (for hours) with C{--max-per-ip 10}.
    """
    server = start_server(
        option,
        "tcp:0:interface=127.0.0.1",
        "--max-per-ip",
        "10",
        "--handshake-timeout",
        "2",
    )
    port = site_port(server)
    started = time.monotonic()
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(40)]
    received = {sock: b"" for sock in socks}
    closed_at: dict[socket.socket, float] = {}
    path = b"/metrics" if option == "--metrics" else b"/"
    for sock in socks:
        try:
            sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        except OSError:
            pass  # refused and closed already
        sock.setblocking(False)  # else recv waits out the timeout, whatever its flags
    header = 0
    held_at_1s = -1
    while time.monotonic() - started < 4 and len(closed_at) < len(socks):
        for sock in socks:
            if sock in closed_at:
                continue
            data, closed = open_or_closed(sock)
            received[sock] += data
            if closed:
                closed_at[sock] = time.monotonic() - started
                continue
            try:
                sock.sendall(b"X-Trickle-%d: 1\r\n" % header)
            except OSError:
                closed_at[sock] = time.monotonic() - started
        header += 1
        if held_at_1s < 0 and time.monotonic() - started >= 1:
            held_at_1s = len(socks) - len(closed_at)
        time.sleep(0.25)
    refused = [sock for sock in socks if received[sock].startswith(b"HTTP/1.1 503 ")]
    held = [sock for sock in socks if sock not in refused]
    print(
        f"\n{option}: 40 trickling connections from one address, --max-per-ip 10: "
        f"{len(refused)} refused with 503, {held_at_1s} held at 1 s, "
        f"{len(closed_at)} closed by {time.monotonic() - started:.1f} s; the admitted ones "
        f"closed at {sorted(round(closed_at.get(s, -1), 1) for s in held)} s; refused closed at "
        f"{sorted(round(closed_at.get(s, -1), 1) for s in refused)}"
    )
    assert len(refused) == 30 and len(held) == 10
    assert all(
        received[sock].endswith(b"127.0.0.1 has 10 connections open, the limit per address\n")
        for sock in refused
    )
    assert all(closed_at.get(sock, 99) < 1 for sock in refused)
    assert held_at_1s == 10
    assert all(1.9 < closed_at.get(sock, 99) < 3.5 for sock in held)
    assert all(received[sock] == b"" for sock in held)  # aborted, no answer
    log = server.wait_for_log("no complete request within 2.0s")
    assert log.count("refused HTTP connection from 127.0.0.1:") == 1  # the rest counted
    for sock in socks:
        sock.close()


def test_a_websocket_is_one_connection_of_its_address(start_server: StartServer) -> None:
    """With --max-per-ip 1, a WebSocket is admitted, and then holds the address's place."""
    server = start_server("--web", "tcp:0:interface=127.0.0.1", "--max-per-ip", "1")
    port = site_port(server)
    browser = WebSocketPeer(port)
    assert browser.texts(2)[0].startswith("INFO Welcome")
    refused = Client(server.port, greeting=False)
    refused.expect_line("BYE Too Many Connections: 127.0.0.1 has 1 connections open")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as http:
        data = b""
        while chunk := http.recv(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 503 ")
    browser.sock.sendall(frame(TEXT, b"QUIT"))
    assert browser.texts(2)[-1] == "OK QUIT Bye"
    browser.close()
    deadline = time.monotonic() + 5
    while True:  # the place is free once the server has seen the close
        after = Client(server.port, greeting=False)
        if after.read_line().startswith("INFO Welcome"):
            break
        assert time.monotonic() < deadline, "the WebSocket's place was never released"
        time.sleep(0.05)


def test_tls_web_clients_without_a_request_are_aborted(
    start_server: StartServer, tmp_path: Path
) -> None:
    """
    On C{--web ssl:...} the request deadline covers the TLS handshake: a
    silent client, half a ClientHello, and one refused over C{--max-per-ip}
    (whose 503 waits for a handshake) are aborted at C{--handshake-timeout}.
    """
    key, cert = self_signed_certificate(tmp_path)
    server = start_server(
        "--web", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
        "--handshake-timeout", "1", "--close-timeout", "30", "--max-per-ip", "2",
    )  # fmt: skip
    port = site_port(server)
    started = time.monotonic()
    silent = socket.create_connection(("127.0.0.1", port), timeout=5)
    half = socket.create_connection(("127.0.0.1", port), timeout=5)
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello's start
    refused = socket.create_connection(("127.0.0.1", port), timeout=5)
    server.wait_for_log("refused HTTP connection from 127.0.0.1:")
    for sock in (silent, half, refused):
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(4096) == b""
        sock.close()
    elapsed = time.monotonic() - started
    print(f"\nthree TLS connections without a request closed within {elapsed:.1f} s")
    assert elapsed < 5
    assert server.wait_for_log("no complete request within 1.0s").count("within 1.0s") >= 2


def test_a_browser_takes_the_place_of_an_idle_connection_when_the_server_is_full(
    start_server: StartServer,
) -> None:
    """
    At C{--max-connections}, an HTTP connection (the web page, a scrape)
    takes the place of the oldest connection that has not joined, as a chat
    connection does; before, it was answered 503 until one timed out.
    """
    server = start_server(
        "--web", "tcp:0:interface=127.0.0.1", "--max-connections", "10", "--join-timeout", "60"
    )
    port = site_port(server)
    member = Client(server.port)
    member.join("member")
    idle = [Client(server.port, source=f"127.0.0.{2 + n % 5}") for n in range(9)]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as browser:
        browser.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := browser.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:200]
    received = b""
    with contextlib.suppress(ConnectionResetError):  # aborted at once, after its BYE
        while chunk := idle[0].sock.recv(65536):
            received += chunk
    assert b"BYE Too Many Connections: the server is full" in received
    server.wait_for_log("to make room for 127.0.0.1:")
    assert member.list_names() == ["member"]
