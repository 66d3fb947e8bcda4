"""
Operations over real sockets against a real C{twistd chat}: TLS with the
real C{openssl s_client}, IPv6 on ::1, the Prometheus endpoint, JSON logs,
and every limit hit for real.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import StartServer

from chat.server.metrics import FRESH
from server import ChatServer, Client, self_signed_certificate


def ports(server: ChatServer, what: str) -> list[int]:
    """The ports that C{what} (e.g. C{ChatFactory (TLS)}) was started on."""
    return [int(p) for p in re.findall(re.escape(what) + r" starting on (\d+)", server.log_text())]


def wait_for_ports(server: ChatServer, what: str, count: int = 1) -> list[int]:
    deadline = time.monotonic() + 10
    while len(found := ports(server, what)) < count:
        assert time.monotonic() < deadline, server.log_text()
        time.sleep(0.02)
    return found


# Transports


def openssl_client(port: int, first: bytes) -> subprocess.Popen[bytes]:
    """The real C{openssl s_client} on C{port}, having sent C{first}."""
    session = subprocess.Popen(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-quiet"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert session.stdin is not None
    session.stdin.write(first)
    session.stdin.flush()
    return session


def test_tls_session_with_openssl_s_client(start_server: StartServer, tmp_path: Path) -> None:
    key, cert = self_signed_certificate(tmp_path)
    server = start_server("--port", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    (tls_port,) = wait_for_ports(server, "ChatFactory (TLS)")
    plain = Client(server.port)
    plain.join("plain")
    session = openssl_client(tls_port, b"JOIN secure\r\n")
    assert session.stdin is not None
    server.wait_for_log("secure joined")
    assert plain.expect_reply("MESG secure over tls", "OK MESG secure")
    session.stdin.write(b"LIST\r\nQUIT\r\n")
    session.stdin.flush()
    out, _ = session.communicate(timeout=10)
    lines = re.sub(r" \(resume token: [\w-]{12}\)", "", out.decode()).split("\r\n")
    assert "OK JOIN secure 2/10" in lines
    assert "MESG plain: over tls" in lines
    assert lines[lines.index("OK JOIN secure 2/10") + 2 :][:4] == [
        "USER plain", "USER secure", "OK LIST 2", "OK QUIT Bye",
    ]  # fmt: skip


def closed_within(sock: socket.socket, seconds: float) -> float:
    """How long the server took to close C{sock} (EOF or reset), failing past C{seconds}."""
    start = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"still open after {seconds}s")
    return time.monotonic() - start


def test_tls_clients_that_never_finish_the_handshake_are_aborted(
    start_server: StartServer, tmp_path: Path
) -> None:
    """
    Before its handshake a TLS client can be sent nothing, not even a BYE,
    and a close would wait for the handshake: a silent client, one that
    sends half a ClientHello, and one refused over C{--max-per-ip} are all
    aborted at C{--handshake-timeout}, long before the join timeout and the
    close timeout.
    """
    key, cert = self_signed_certificate(tmp_path)
    server = start_server(
        "--port", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
        "--handshake-timeout", "1", "--join-timeout", "60", "--close-timeout", "30",
        "--max-per-ip", "2",
    )  # fmt: skip
    (tls_port,) = wait_for_ports(server, "ChatFactory (TLS)")
    silent = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
    half = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello's start
    refused = socket.create_connection(("127.0.0.1", tls_port), timeout=5)  # the third from here
    server.wait_for_log("refused connection from 127.0.0.1:")
    for sock in (silent, half, refused):
        closed_within(sock, 10)
        sock.close()
    deadline = time.monotonic() + 5
    while server.log_text().count("no TLS handshake within 1.0s") < 3:
        assert time.monotonic() < deadline, server.log_text()
        time.sleep(0.02)
    # A client that completes the handshake is not affected.
    session = openssl_client(tls_port, b"JOIN late\r\n")
    assert session.stdin is not None
    server.wait_for_log("late joined")
    time.sleep(1.5)  # past the handshake deadline
    session.stdin.write(b"QUIT\r\n")
    session.stdin.flush()
    out, _ = session.communicate(timeout=10)
    assert b"OK QUIT Bye" in out


def test_ipv6(start_server: StartServer) -> None:
    server = start_server("--port", r"tcp6:0:interface=\:\:1")
    six = next(p for p in wait_for_ports(server, "ChatFactory", 2) if p != server.port)
    sock = socket.create_connection(("::1", six), timeout=5)
    sock.sendall(b"JOIN six\r\nLIST\r\n")
    data = b""
    while b"OK LIST" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    assert b"USER six\r\nOK LIST 1\r\n" in data
    server.wait_for_log("six joined from [::1]:")
    sock.close()


# Metrics and logs


def test_metrics_endpoint_is_scraped(start_server: StartServer) -> None:
    server = start_server("--metrics", "tcp:0:interface=127.0.0.1", "--max-line", "100")
    (metrics_port,) = wait_for_ports(server, "Site")
    a, b = Client(server.port), Client(server.port)
    a.join("a")
    b.join("b")
    a.expect_reply("MESG b hi", "OK MESG b")
    a.expect_reply("BCST all", "OK BCST 1")
    a.expect_reply("MESG nobody hi", "ERR Unknown Recipient")
    a.expect_reply(b"x" * 200, "ERR Line Too Long")
    unregistered = Client(server.port)
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    for sample in (
        "chat_connections 3.0",
        "chat_http_connections 1.0",  # this scrape
        "chat_users 2.0",
        "chat_capacity 10.0",
        'chat_commands_total{verb="JOIN"} 2.0',
        'chat_commands_total{verb="MESG"} 2.0',
        'chat_relayed_total{kind="mesg"} 1.0',
        'chat_relayed_total{kind="bcst"} 1.0',
        'chat_errors_total{reason="Unknown Recipient"} 1.0',
        'chat_limits_total{limit="max_line"} 1.0',
    ):
        assert sample in text.splitlines(), (sample, text)
    unregistered.close()


def test_scraping_in_a_loop_costs_one_rendering_a_second(start_server: StartServer) -> None:
    """
    A client scraping /metrics as fast as it can, on one kept-alive
    connection: the page is made once a second and served from that copy,
    so the server's CPU per scrape is HTTP's alone. The figures are printed.
    """
    server = start_server("--metrics", "0")
    (metrics_port,) = wait_for_ports(server, "Site")
    connection = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=10)
    cpu_before, started, scrapes = server_cpu_seconds(server), time.monotonic(), 0
    while time.monotonic() - started < 2:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        assert response.status == 200
        response.read()
        scrapes += 1
    cpu, elapsed = server_cpu_seconds(server) - cpu_before, time.monotonic() - started
    connection.close()
    print(
        f"{scrapes / elapsed:.0f} scrapes a second: server CPU {cpu / elapsed:.0%}, "
        f"{cpu / scrapes * 1e6:.0f} microseconds a scrape"
    )
    assert cpu / scrapes < 0.001
    # The copy is served for a second: a user who joins shows in the next page.
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    time.sleep(FRESH)
    assert "chat_users 0.0" in urllib.request.urlopen(url, timeout=10).read().decode()
    counted = Client(server.port)
    counted.join("counted")
    assert "chat_users 0.0" in urllib.request.urlopen(url, timeout=10).read().decode()
    time.sleep(FRESH)
    assert "chat_users 1.0" in urllib.request.urlopen(url, timeout=10).read().decode()
    counted.close()


def test_metrics_on_a_bare_port_listen_on_loopback_only(start_server: StartServer) -> None:
    """
    C{--metrics 9100} serves 127.0.0.1 and nothing else: 127.0.0.2 (another
    address of the host, as a LAN address would be) is refused.
    """
    server = start_server("--metrics", "0")
    (metrics_port,) = wait_for_ports(server, "Site")
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    assert "chat_users 0.0" in urllib.request.urlopen(url, timeout=10).read().decode()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", metrics_port), timeout=5).close()


def test_json_log(start_server: StartServer) -> None:
    server = start_server("--log-format", "json")
    Client(server.port).join("jay")
    server.wait_for_log('"jay"')
    events = [json.loads(line) for line in server.log_text().splitlines()]
    joined = [e for e in events if e.get("log_format", "").startswith("{name} joined")]
    assert joined[0]["name"] == "jay"
    assert joined[0]["capacity"] == 10


# Limits, each hit for real


def test_connections_per_address(start_server: StartServer) -> None:
    server = start_server("--max-per-ip", "2")
    first, _ = Client(server.port), Client(server.port)
    refused = Client(server.port, greeting=False)
    assert refused.read_line().startswith("BYE Too Many Connections: 127.0.0.1 has 2")
    refused.expect_eof()
    first.close()
    server.wait_for_log("connection from")  # the log is there; wait for the release
    deadline = time.monotonic() + 5
    while True:  # the server learns about the close asynchronously
        late = Client(server.port, greeting=False)
        if late.read_line().startswith("INFO Welcome"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_total_connections(start_server: StartServer) -> None:
    server = start_server("--max-connections", "3")
    keep = [Client(server.port) for _ in range(3)]
    for number, client in enumerate(keep):
        client.join(f"user{number}")
    refused = Client(server.port, greeting=False)
    assert refused.read_line().startswith("BYE Too Many Connections: the server has 3")
    assert keep[0].list_names() == ["user0", "user1", "user2"]


def test_a_flood_of_idle_connections_cannot_keep_people_out(start_server: StartServer) -> None:
    """
    Idle sockets from many addresses fill every connection slot and are
    reopened as they close; a person who connects still gets in, in the
    place of the oldest idle socket, which is told why and closed at once
    (it never reads, so a graceful close would keep its place).
    """
    server = start_server("--max-connections", "20", "--join-timeout", "60")
    member = Client(server.port)
    member.join("member")
    flood = []
    for number in range(40):  # twice the slots: half of them pushed out already
        source = (f"127.0.0.{2 + number % 10}", 0)
        sock = socket.create_connection(("127.0.0.1", server.port), 5, source)
        flood.append(sock)
    person = Client(server.port)  # the 22nd of 20
    assert person.join("person") == "OK JOIN person 2/10"
    oldest = flood[0]
    oldest.settimeout(5)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := oldest.recv(65536):
            received += chunk
    assert b"BYE Too Many Connections: the server is full" in received
    assert member.expect_reply("MESG person still here", "OK MESG person")
    assert person.read_line() == "MESG member: still here"
    server.wait_for_log("to make room for 127.0.0.1:")
    for sock in flood:
        sock.close()


def test_refused_connections_from_one_address_are_summarised(start_server: StartServer) -> None:
    """
    A client reconnecting in a loop past C{--max-per-ip} gets a line in the
    log, not a line per connection: the others are counted, and the count
    is written at the end of the interval or when the server stops.
    """
    server = start_server("--max-per-ip", "1")
    keep = Client(server.port)
    for _ in range(100):
        refused = Client(server.port, greeting=False)
        assert refused.read_line().startswith("BYE Too Many Connections")
        refused.close()
    keep.join("keep")
    server.wait_for_log("keep joined")
    assert server.log_text().count("refused connection from 127.0.0.1") == 1
    assert server.stop() == 0
    assert "99 more refused connections from 127.0.0.1 in the last 10s" in server.log_text()


def test_join_timeout(start_server: StartServer) -> None:
    server = start_server("--join-timeout", "0.5")
    lazy, joiner = Client(server.port), Client(server.port)
    joiner.join("quick")
    assert lazy.read_line() == "BYE Join Timeout: no JOIN within 0.5 seconds"
    lazy.expect_eof()
    time.sleep(0.6)
    assert joiner.list_names() == ["quick"]


def test_idle_timeout(start_server: StartServer) -> None:
    server = start_server("--idle-timeout", "1")
    idle = Client(server.port)
    idle.join("sleepy")
    assert idle.read_line() == "BYE Idle Timeout: nothing sent for 1 seconds"
    idle.expect_eof()
    server.wait_for_log("closing sleepy: idle")


def test_flooder_is_slowed_then_dropped_while_others_chat(start_server: StartServer) -> None:
    server = start_server("--rate-limit", "10", "--rate-burst", "20")
    calm, friend, flooder = Client(server.port), Client(server.port), Client(server.port)
    calm.join("calm")
    friend.join("friend")
    flooder.join("flooder")
    flooder.send(b"MESG friend flood\r\n" * 5000)  # 95 KB: past the 64 KiB backlog
    started = time.monotonic()
    calm.expect_reply("MESG friend are you there", "OK MESG friend")
    assert time.monotonic() - started < 1.0
    lines = friend.read_until(lambda line: line.startswith("MESG calm:"))
    # The flooder got at most its burst and a few lines more through.
    assert len(lines) - 1 <= 40
    server.wait_for_log("disconnecting flooder: flooding")
    reply = flooder.read_until(lambda line: line.startswith("BYE"))
    assert reply[-1].startswith("BYE Flooding: more than 65536 bytes")
    assert calm.list_names() == ["calm", "friend"]


def server_cpu_seconds(server: ChatServer) -> float:
    """User and system CPU time of the server process so far."""
    fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


FLOODER = """
import socket, sys, time
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
sock.sendall(b"JOIN flooder\\r\\n")
sock.settimeout(0.2)
chunk, sent, end = b"\\xff\\xf1" * 32768, 0, time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        sent += sock.send(chunk)
    except TimeoutError:
        pass
print(sent)
"""


def test_a_flood_that_is_not_lines_costs_others_nothing(start_server: StartServer) -> None:
    """
    Telnet NOPs sent as fast as the socket takes them are no lines, so flood
    control never sees them; the input meter stops reading the flooder past
    its byte rate, so the server's CPU stays low and a calm pair's messages
    keep their latency. The figures are printed; the bounds are generous.
    """
    server = start_server()  # the defaults: 10 lines/s of 4096 bytes, 40 KiB/s
    calm, friend = Client(server.port), Client(server.port)
    calm.join("calm")
    friend.join("friend")
    flooder = subprocess.Popen(
        [sys.executable, "-c", FLOODER, str(server.port), "5"], stdout=subprocess.PIPE
    )
    server.wait_for_log("flooder joined")
    cpu_before, started = server_cpu_seconds(server), time.monotonic()
    times = []
    while time.monotonic() - started < 4:
        sent_at = time.monotonic()
        calm.sendline("MESG friend ping")
        calm.expect_line("OK MESG friend delivered")
        assert friend.read_line() == "MESG calm: ping"
        times.append(time.monotonic() - sent_at)
        time.sleep(0.15)  # a person, within flood control's 10 lines a second
    cpu, elapsed = server_cpu_seconds(server) - cpu_before, time.monotonic() - started
    out, _ = flooder.communicate(timeout=10)
    times.sort()
    p50, p99 = times[len(times) // 2] * 1000, times[int(len(times) * 0.99)] * 1000
    print(
        f"flood of telnet NOPs: {int(out) / 5 / 1e6:.2f} MB/s taken by the kernel, "
        f"server CPU {cpu / elapsed:.0%}, calm pair p50/p99 {p50:.1f}/{p99:.1f} ms "
        f"over {len(times)} messages"
    )
    assert cpu / elapsed < 0.5
    assert p99 < 200
    server.wait_for_log("slowing down flooder: more than 40960 bytes of input a second")


def test_the_backlog_bound_is_a_bound_on_memory(start_server: StartServer) -> None:
    """
    Short lines cost Python far more than their bytes: 60 KiB of one-byte
    lines, under the 64 KiB backlog if only bytes counted, took 1.2 MB per
    connection. Counted with what each waiting line costs, they are a flood.
    """
    server = start_server("--max-users", "100")
    before = server.rss_kib()
    clients = [Client(server.port) for _ in range(30)]
    for client in clients:
        client.send(b"a\n" * 30_000)  # 60 KiB: within the input meter's burst
    for client in clients:
        reply = client.read_until(lambda line: line.startswith("BYE"))
        assert reply[-1].startswith("BYE Flooding: more than 65536 bytes"), reply[-1]
    growth = server.rss_kib() - before
    print(f"30 connections with 60 KiB of one-byte lines each: RSS grew by {growth} KiB")
    assert growth < 16 * 1024


def test_max_buffered_bounds_what_all_non_readers_hold(start_server: StartServer) -> None:
    """
    Five registered clients that stop reading, each under a generous
    --max-outbound: together they would hold 30 MB of broadcasts; past
    --max-buffered (2 MB) the one holding the most is dropped, then the
    next, and the server's memory stays bounded. The figures are printed.
    """
    server = start_server(
        "--rate-limit", "0", "--max-line", "65536", "--max-users", "20",
        "--max-outbound", "100000000", "--max-buffered", "2000000",
    )  # fmt: skip
    readers = [Client(server.port, rcvbuf=4096) for _ in range(5)]
    for number, reader in enumerate(readers):
        reader.join(f"reader{number}")
    sender = Client(server.port)
    sender.join("sender")
    before = server.rss_kib()
    line = b"BCST " + b"x" * 60_000 + b"\r\n"
    for _ in range(100):
        sender.send(line)
    sender.read_until(lambda reply: reply.startswith("OK BCST 0"))  # every reader dropped
    growth = server.rss_kib() - before
    dropped = server.log_text().count("bytes waiting, the most while all clients had more than")
    print(f"5 non-readers, 6 MB of broadcasts each: {dropped} dropped, RSS grew by {growth} KiB")
    assert dropped == 5
    assert growth < 16 * 1024
    sender.sendline("LIST")
    assert sender.read_until(lambda reply: reply.startswith("OK LIST"))[-2:] == [
        "USER sender",
        "OK LIST 1",
    ]


def test_fast_client_that_waits_for_replies_is_only_slowed(start_server: StartServer) -> None:
    server = start_server("--rate-limit", "50", "--rate-burst", "5")
    sender, receiver = Client(server.port), Client(server.port)
    sender.join("sender")
    receiver.join("receiver")
    sender.send(b"".join(b"MESG receiver %d\r\n" % i for i in range(40)))
    for i in range(40):
        assert sender.read_line() == "OK MESG receiver delivered"
        assert receiver.read_line() == f"MESG sender: {i}"
    server.wait_for_log("sender joined")
    assert "flooding" not in server.log_text()
