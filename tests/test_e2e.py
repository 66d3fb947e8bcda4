"""
End-to-end tests: a real C{twistd chat} process, real sockets on 127.0.0.1.

The unit tests cover the rules byte by byte; these cover what only a running
server shows: the plugin and options wiring, the reactor's segmentation of
reads, kernel buffers and flow control, signals, and the process's memory.
Replies are awaited rather than slept for; a sleep appears only where a test
must show that something did not happen.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import StartServer

from server import (
    REPO_ROOT,
    SHUTDOWN_LINE,
    ChatServer,
    Client,
    poll_until_gone,
    pump,
    server_environment,
    take_lines,
)

pytestmark = pytest.mark.usefixtures("time_limit")

NO_FLOOD_CONTROL = ("--rate-limit", "0")
"""For tests about throughput and framing, not about flood control."""

IAC, DONT, DO, WONT, WILL, SB, SE, IP, AYT, NOP = 255, 254, 253, 252, 251, 250, 240, 244, 246, 241


# Wiring


def test_server_runs_the_source_tree() -> None:
    """
    The environment given to twistd imports this checkout's C{chat}, and the
    plugin module twistd loads declares the same thing as the local one.

    An installed copy of the package is on the path too; if it were the one
    imported, every other test here would be testing stale code.
    """
    probe = (
        "import chat.tap, twisted.plugins.chat_plugin as p; "
        "print(chat.tap.__file__); print(p.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        env=server_environment(),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    tap_file, plugin_file = result.stdout.split()
    assert Path(tap_file).resolve() == REPO_ROOT / "chat" / "tap.py"
    local_plugin = REPO_ROOT / "twisted" / "plugins" / "chat_plugin.py"
    # An installed twisted/plugins/chat_plugin.py comes first on
    # twisted.plugins.__path__ and shadows the local one; that is harmless
    # only while both say the same thing.
    assert Path(plugin_file).read_text() == local_plugin.read_text(), (
        f"twistd loads {plugin_file}, which differs from {local_plugin}; reinstall the package"
    )


# Capacity


def test_capacity_default_ten(server: ChatServer) -> None:
    """
    The eleventh user is refused but stays connected, and gets in as soon as
    someone leaves: refusal must not cost the client its connection.
    """
    users = [Client(server.port) for _ in range(10)]
    for number, user in enumerate(users):
        assert user.join(f"user{number}") == f"OK JOIN user{number} {number + 1}/10"
    late = Client(server.port)
    late.expect_reply("JOIN user10", "ERR Too Many Users: ")
    # Still connected and still unregistered.
    late.expect_reply("LIST", "ERR Unregistered User: ")
    users[0].quit()
    assert late.join("user10") == "OK JOIN user10 10/10"
    assert late.list_names() == [f"user{number}" for number in range(1, 11)]


def test_capacity_custom(start_server: StartServer) -> None:
    """C{--max-users} reaches the room: the fourth of three is refused."""
    server = start_server("--max-users", "3")
    users = [Client(server.port) for _ in range(4)]
    for number in range(3):
        assert users[number].join(f"u{number}") == f"OK JOIN u{number} {number + 1}/3"
    users[3].expect_reply("JOIN u3", "ERR Too Many Users: ")
    users[1].quit()
    assert users[3].join("u3") == "OK JOIN u3 3/3"
    server.wait_for_log("u3 joined from 127.0.0.1:")


# Conversation


def test_two_users_chat(server: ChatServer) -> None:
    """MESG both ways, BCST to others only, LIST with names as registered."""
    alice, bob = Client(server.port), Client(server.port)
    assert alice.join("alice") == "OK JOIN alice 1/10"
    assert bob.join("Bob") == "OK JOIN Bob 2/10"

    alice.expect_reply("MESG Bob hello, Bob", "OK MESG Bob")
    assert bob.read_line() == "MESG alice: hello, Bob"
    bob.expect_reply("MESG alice hi  alice, spaces kept", "OK MESG alice")
    assert alice.read_line() == "MESG Bob: hi  alice, spaces kept"

    alice.expect_reply("BCST hello everyone", "OK BCST 1")
    assert bob.read_line() == "BCST alice: hello everyone"

    # The broadcast was not echoed: the next thing alice reads is her LIST.
    assert alice.list_names() == ["alice", "Bob"]
    assert bob.list_names() == ["alice", "Bob"]

    # Names are case-insensitive for addressing and for uniqueness; the OK
    # names the recipient as registered.
    alice.expect_reply("MESG BOB shouting", "OK MESG Bob")
    assert bob.read_line() == "MESG alice: shouting"
    carol = Client(server.port)
    carol.expect_reply("JOIN bob", "ERR Username Taken: ")
    carol.expect_reply("JOIN ALICE", "ERR Username Taken: ")
    assert carol.join("carol") == "OK JOIN carol 3/10"
    alice.assert_silent()
    bob.assert_silent()


def test_error_replies(server: ChatServer) -> None:
    """Every command gets exactly one reply, with the documented reason."""
    guest = Client(server.port)
    guest.expect_reply("LIST", "ERR Unregistered User: ")
    guest.expect_reply("MESG a b", "ERR Unregistered User: ")
    guest.expect_reply("FROB", "ERR Unregistered User: ")
    guest.expect_reply("JOIN", "ERR Usage: ")
    guest.expect_reply("JOIN no spaces", "ERR Invalid Username: ")
    guest.expect_reply("JOIN dash-name", "ERR Invalid Username: ")
    guest.expect_reply("JOIN " + "x" * 33, "ERR Invalid Username: ")
    help_lines = guest.command("HELP")
    assert help_lines[-1].startswith("OK HELP")
    assert all(line.startswith("INFO ") for line in help_lines[:-1]) and len(help_lines) > 1
    guest.join("x" * 32)
    guest.expect_reply("JOIN other", "ERR Already Registered: ")
    guest.expect_reply("FROB", "ERR Unknown Message: ")
    guest.expect_reply("MESG nobody hi", "ERR Unknown Recipient: ")
    guest.expect_reply("MESG nobody", "ERR Usage: ")
    guest.expect_reply("BCST", "ERR Usage: ")
    guest.expect_reply("BCST alone", "OK BCST 0")
    guest.assert_silent()


# Leaving


def test_quit_frees_the_name(server: ChatServer) -> None:
    """After QUIT the server closes the connection and the name is free."""
    alice, observer = Client(server.port), Client(server.port)
    alice.join("alice")
    observer.join("observer")
    alice.quit()
    assert observer.list_names() == ["observer"]
    again = Client(server.port)
    assert again.join("alice") == "OK JOIN alice 2/10"
    server.wait_for_log("alice quit (1/10 users)")


def test_unregistered_quit(server: ChatServer) -> None:
    """QUIT works before JOIN too."""
    Client(server.port).quit()


def test_close_frees_the_name(start_server: StartServer) -> None:
    """A client that closes its socket (FIN) is unregistered (the default: no grace)."""
    server = start_server()
    alice, observer = Client(server.port), Client(server.port)
    alice.join("alice")
    observer.join("observer")
    alice.close()
    assert poll_until_gone(observer, "alice") == ["observer"]
    Client(server.port).join("alice")
    server.wait_for_log("alice ended its input from 127.0.0.1:")


def test_reset_frees_the_name(start_server: StartServer) -> None:
    """A client that resets its connection (RST) is unregistered (the default: no grace)."""
    server = start_server()
    alice, observer = Client(server.port), Client(server.port)
    alice.join("alice")
    observer.join("observer")
    alice.abort()
    assert poll_until_gone(observer, "alice") == ["observer"]
    Client(server.port).join("alice")


# Load


def test_many_connections_while_chatting(start_server: StartServer) -> None:
    """
    Two hundred open connections are all served, and meanwhile two users'
    messages arrive complete and in order.
    """
    server = start_server(*NO_FLOOD_CONTROL)
    alice, bob = Client(server.port), Client(server.port)
    alice.join("alice")
    bob.join("bob")
    # Connect in waves, each greeted before the next: a burst of 200 SYNs
    # would overflow the listen backlog (50) and wait out SYN retransmits.
    crowd: list[Client] = []
    for wave in range(0, 200, 20):
        crowd += [Client(server.port, greeting=False) for _ in range(20)]
        for guest in crowd[wave:]:
            guest.expect_line("INFO Welcome")
            guest.expect_line("INFO Usernames")
        # Keep the conversation going while the crowd grows.
        alice.sendline(f"MESG bob crowd {wave}")
        bob.sendline(f"BCST crowd {wave}")
    # Each sees its own replies and the other's messages in order; how the
    # two streams interleave on one connection is up to the scheduler.
    alice_lines = [alice.read_line() for _ in range(20)]
    bob_lines = [bob.read_line() for _ in range(20)]
    rounds = range(0, 200, 20)
    assert [line for line in alice_lines if line.startswith("OK ")] == [
        "OK MESG bob delivered"
    ] * 10
    assert [line for line in alice_lines if not line.startswith("OK ")] == [
        f"BCST bob: crowd {number}" for number in rounds
    ]
    assert [line for line in bob_lines if line.startswith("OK ")] == ["OK BCST 1"] * 10
    assert [line for line in bob_lines if not line.startswith("OK ")] == [
        f"MESG alice: crowd {number}" for number in rounds
    ]
    # Every one of the crowd is still connected and answered.
    for guest in crowd:
        guest.sendline("LIST")
    for guest in crowd:
        guest.expect_line("ERR Unregistered User: ")
    alice.send(b"".join(b"MESG bob in order %d\r\n" % n for n in range(300)))
    for number in range(300):
        assert bob.read_line() == f"MESG alice: in order {number}"
    assert [alice.read_line() for _ in range(300)] == ["OK MESG bob delivered"] * 300
    assert alice.list_names() == ["alice", "bob"]
    for guest in crowd:
        guest.close()


# Hostile input


def test_overlong_line_is_refused_and_bounded(start_server: StartServer) -> None:
    """
    A 1 MiB line without a newline is refused once, the connection lives on,
    the next command works, and the server did not buffer the line. (Flood
    control is off: at its 40 KiB a second of input, 3 MiB would take 80 s.)
    """
    server = start_server("--rate-limit", "0")
    alice = Client(server.port)
    alice.join("alice")
    before = server.rss_kib()
    for _ in range(3):
        chunk = b"x" * 65536
        for _ in range(16):
            alice.send(chunk)
        alice.expect_line("ERR Line Too Long: ")
        # The rest of the line, however long, is skipped up to its end.
        alice.send(b"y" * 100_000 + b"\r\nLIST\r\n")
        assert alice.read_line() == "USER alice"
        assert alice.read_line() == "OK LIST 1"
    alice.assert_silent()
    growth = server.rss_kib() - before
    assert growth < 4096, f"server RSS grew by {growth} KiB for three 1 MiB lines"


def test_line_limit_is_exact(start_server: StartServer) -> None:
    """C{--max-line} counts the bytes before the terminator."""
    server = start_server("--max-line", "64")
    alice = Client(server.port)
    alice.join("alice")
    exact = "BCST " + "z" * 59
    alice.expect_reply(exact, "OK BCST 0")
    alice.expect_reply(exact + "z", "ERR Line Too Long: ")
    assert alice.command("LIST") == ["USER alice", "OK LIST 1"]


def test_invalid_utf8_and_controls(server: ChatServer) -> None:
    """
    Invalid UTF-8 is relayed as U+FFFD and terminal controls are removed, so
    no one can garble another user's terminal; the server survives both.
    """
    alice, bob = Client(server.port), Client(server.port)
    alice.join("alice")
    bob.join("bob")
    alice.send(b"MESG bob \xfe\xc3(\x80 ok\r\n")
    alice.expect_line("OK MESG bob")
    assert bob.read_line() == "MESG alice: \ufffd\ufffd(\ufffd ok"
    # 0xFF is telnet's IAC, so b"\xff\xfe\xc3" is IAC DONT 0xC3: a refusal,
    # removed before decoding and not answered.
    alice.send(b"MESG bob \xff\xfe\xc3(\r\n")
    alice.expect_line("OK MESG bob")
    assert bob.read_line() == "MESG alice: ("
    alice.send(b"MESG bob \x1b[31mred\x1b[0m \x07bell\x08 \xc2\x9b2J tab\tkept\r\n")
    alice.expect_line("OK MESG bob")
    # Escape sequences go whole, BS erases the character before it, and the
    # C1 CSI (U+009B) is a control character.
    assert bob.read_line() == "MESG alice: red bel 2J tab\tkept"
    alice.send(b"BCST caf\xc3\xa9 \xe2\x82\xac \x1b]0;title\x07\r\n")
    alice.expect_line("OK BCST 1")
    assert bob.read_line() == "BCST alice: caf\u00e9 \u20ac"
    alice.send(b"JOIN \xff\r\n")
    alice.expect_line("ERR Already Registered: ")
    guest = Client(server.port)
    guest.send(b"JOIN b\xc3\xb6b\r\n")
    guest.expect_line("ERR Invalid Username: ")
    assert bob.list_names() == ["alice", "bob"]


def test_bidi_controls_and_invisible_characters_are_removed(server: ChatServer) -> None:
    """
    Text cannot be disguised on the reader's screen: bidi embeddings,
    overrides, isolates and marks (which reorder what follows) and the
    invisible characters that hide inside words are removed from MESG and
    BCST alike; the joiners that emoji and some scripts need are kept.
    """
    alice, bob = Client(server.port), Client(server.port)
    alice.join("alice")
    bob.join("bob")
    # "Trojan Source": RLO makes "gnp.exe" read as "exe.png".
    alice.sendline("MESG bob open photo_\u202egnp.exe\u202c now")
    alice.expect_line("OK MESG bob")
    assert bob.read_line() == "MESG alice: open photo_gnp.exe now"
    hidden = (
        "".join(
            chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)
        )
        + "\u200b\u2060\ufeff"
    )
    alice.sendline(f"BCST pa{hidden}y me\u200b now, family \U0001f468\u200d\U0001f469")
    alice.expect_line("OK BCST 1")
    assert bob.read_line() == "BCST alice: pay me now, family \U0001f468\u200d\U0001f469"


def test_telnet_commands_are_removed(server: ChatServer) -> None:
    """
    IAC sequences inside commands are not chat text; DO and WILL are refused
    with WONT and DONT, as RFC 854 allows.
    """
    alice, bob = Client(server.port), Client(server.port)
    bob.join("bob")
    alice.send(bytes((IAC, DO, 6)))
    alice.expect_bytes(bytes((IAC, WONT, 6)))
    alice.send(bytes((IAC, WILL, 24)))
    alice.expect_bytes(bytes((IAC, DONT, 24)))
    # Refusals are not answered, or two refusing ends could loop.
    alice.send(bytes((IAC, WONT, 1, IAC, DONT, 3)))
    alice.assert_silent()
    # A command split by an interrupt and a subnegotiation.
    alice.send(b"JO" + bytes((IAC, IP)) + b"IN al" + bytes((IAC, SB, 24, 0)) + b"junk")
    alice.send(bytes((IAC, SE)) + b"ice\r\n")
    alice.expect_line("OK JOIN alice ")
    # Negotiation in the middle of a command is answered before the reply.
    alice.send(b"LI" + bytes((IAC, DO, 1)) + b"S" + bytes((IAC, NOP, IAC, AYT)) + b"T\r\n")
    alice.expect_bytes(bytes((IAC, WONT, 1)))
    assert alice.read_line() == "USER bob"
    assert alice.read_line() == "USER alice"
    assert alice.read_line() == "OK LIST 2"
    # IAC IAC is a literal 0xFF byte: invalid UTF-8, hence U+FFFD.
    alice.send(b"MESG bob a" + bytes((IAC, IAC)) + b"b\r\n")
    alice.expect_line("OK MESG bob")
    assert bob.read_line() == "MESG alice: a\ufffdb"
    # Ctrl-C in a telnet client: IAC IP, then DO TIMING-MARK, which must be
    # refused or the client discards everything it receives.
    alice.send(bytes((IAC, IP, IAC, DO, 6)) + b"MESG bob after ^C\r\n")
    alice.expect_bytes(bytes((IAC, WONT, 6)))
    alice.expect_line("OK MESG bob")
    assert bob.read_line() == "MESG alice: after ^C"


# Segmentation and framing


def test_pipelining(start_server: StartServer) -> None:
    """Fifty commands in one write are all answered, in order, once each."""
    server = start_server(*NO_FLOOD_CONTROL)
    alice, bob = Client(server.port), Client(server.port)
    alice.join("alice")
    bob.join("bob")
    commands: list[str] = []
    expected: list[str] = []
    for number in range(50):
        kind = number % 5
        if kind == 0:
            commands.append(f"MESG bob m{number}")
            expected.append("OK MESG bob delivered")
        elif kind == 1:
            commands.append(f"BCST b{number}")
            expected.append("OK BCST 1")
        elif kind == 2:
            commands.append(f"MESG carol m{number}")
            expected.append("ERR Unknown Recipient: nobody named carol is registered")
        elif kind == 3:
            commands.append("LIST")
            expected += ["USER alice", "USER bob", "OK LIST 2"]
        else:
            commands.append(f"NOPE{number}")
            expected.append(f"ERR Unknown Message: NOPE{number} is not a command; HELP lists them")
    alice.send("".join(command + "\r\n" for command in commands).encode())
    assert [alice.read_line() for _ in expected] == expected
    relayed = [line for number in range(50) for line in _relay(number)]
    assert [bob.read_line() for _ in relayed] == relayed
    alice.assert_silent()
    # Registration, commands and QUIT in one segment, and nothing after QUIT.
    carol = Client(server.port)
    carol.send(b"JOIN carol\r\nMESG alice hi\r\nQUIT\r\nMESG alice too late\r\n")
    assert carol.read_line().startswith("OK JOIN carol ")
    assert carol.read_line() == "OK MESG alice delivered"
    assert carol.read_line() == "OK QUIT Bye"
    carol.expect_eof()
    assert alice.read_line() == "MESG carol: hi"
    assert poll_until_gone(alice, "carol") == ["alice", "bob"]
    alice.assert_silent()


def test_a_slow_reader_gets_everything_in_order(start_server: StartServer) -> None:
    """
    Output goes straight to the socket while the socket takes it, and through
    Twisted's buffer once it does not: across the switch, in both directions
    and many times over, nothing is lost, doubled or reordered.
    """
    server = start_server("--max-outbound", str(64 << 20), *NO_FLOOD_CONTROL)
    alice, reader = Client(server.port), Client(server.port, rcvbuf=4096)
    alice.join("alice")
    reader.join("reader")
    text = "m" * 1000
    count, batch = 6000, 100  # 6 MB: past every kernel buffer on the way
    got = 0
    for start in range(0, count, batch):
        alice.send(
            b"".join(
                b"MESG reader %d %s\r\n" % (n, text.encode()) for n in range(start, start + batch)
            )
        )
        for _ in range(batch):
            assert alice.read_line() == "OK MESG reader delivered"
        if start % (10 * batch) == 0:  # a short read now and then
            for _ in range(batch // 2):
                assert reader.read_line() == f"MESG alice: {got} {text}"
                got += 1
    while got < count:
        assert reader.read_line() == f"MESG alice: {got} {text}"
        got += 1
    reader.assert_silent()


def _relay(number: int) -> list[str]:
    """What bob receives for alice's pipelined command C{number}."""
    if number % 5 == 0:
        return [f"MESG alice: m{number}"]
    if number % 5 == 1:
        return [f"BCST alice: b{number}"]
    return []


def test_one_byte_segments(server: ChatServer) -> None:
    """Commands sent one byte per segment are reassembled."""
    bob = Client(server.port)
    bob.join("bob")
    alice = Client(server.port, nodelay=True)
    for command in (b"JOIN alice\r\n", b"MESG bob one byte at a time\r\n", b"LIST\r\x00"):
        for byte in command:
            alice.send(bytes((byte,)))
    alice.expect_line("OK JOIN alice ")
    alice.expect_line("OK MESG bob")
    assert bob.read_line() == "MESG alice: one byte at a time"
    assert alice.read_line() == "USER bob"
    assert alice.read_line() == "USER alice"
    assert alice.read_line() == "OK LIST 2"


def test_line_endings(server: ChatServer) -> None:
    """LF, CRLF, and CR NUL (telnet's bare Enter) all end a line."""
    observer = Client(server.port)
    observer.join("observer")
    endings = {"lf": b"\n", "crlf": b"\r\n", "crnul": b"\r\x00"}
    clients = {name: Client(server.port) for name in endings}
    for name, ending in endings.items():
        clients[name].send(b"JOIN " + name.encode() + ending)
        clients[name].expect_line(f"OK JOIN {name} ")
    for name, ending in endings.items():
        clients[name].send(b"LIST" + ending + b"MESG observer from " + name.encode() + ending)
        assert clients[name].read_until(lambda line: line.startswith("OK LIST")) == [
            "USER observer",
            "USER lf",
            "USER crlf",
            "USER crnul",
            "OK LIST 4",
        ]
        assert clients[name].read_line() == "OK MESG observer delivered"
        assert observer.read_line() == f"MESG {name}: from {name}"
    # Mixed endings in one segment, with a CR NUL split across two writes.
    clients["crlf"].send(b"BCST a\nBCST b\r\nBCST c\r")
    clients["crlf"].send(b"\x00BCST d\r\x00")
    assert [clients["crlf"].read_line() for _ in range(4)] == ["OK BCST 3"] * 4
    for receiver in (observer, clients["lf"], clients["crnul"]):
        assert [receiver.read_line() for _ in range(4)] == [f"BCST crlf: {c}" for c in "abcd"]


# Flow control


def test_slow_consumer_is_dropped(start_server: StartServer) -> None:
    """
    A client that never reads is disconnected once too much is queued for it,
    while everyone else's messages keep flowing and memory stays bounded.

    What may pile up for the stuck client before it is dropped: its small
    receive buffer, the server's kernel send buffer (at most C{tcp_wmem}'s
    4 MiB), Twisted's 64 KiB write buffer, and C{--max-outbound}. Well past
    that, the server is buffering without limit.
    """
    server = start_server("--max-outbound", "65536", *NO_FLOOD_CONTROL)
    slow = Client(server.port, rcvbuf=4096)
    slow.join("slow")
    alice, bob, carol = Client(server.port), Client(server.port), Client(server.port)
    alice.join("alice")
    bob.join("bob")
    carol.join("carol")
    readers = [alice, bob, carol]
    before = server.rss_kib()
    payload = b"p" * 3900
    limit = (16 << 20) // len(payload)
    sent = alice_got = bob_got = alice_acks = 0
    acks: list[str] = []
    round_number = 0
    while "dropped slow consumer slow" not in server.log_text():
        assert sent < limit, (
            f"{sent * len(payload) >> 20} MiB queued for a client that does not read "
            f"and it is still connected; server RSS grew by {server.rss_kib() - before} KiB"
        )
        # A batch of broadcasts, and a private message that must not wait
        # behind the stuck client.
        carol.send(b"".join(b"BCST %d %s\r\n" % (sent + n, payload) for n in range(16)))
        sent += 16
        round_number += 1
        alice.sendline(f"MESG bob ping {round_number}")
        ping_seen = False
        while (
            alice_got < sent
            or bob_got < sent
            or len(acks) < sent
            or not ping_seen
            or alice_acks < round_number
        ):
            pump(readers)
            for line in take_lines(alice):
                if line.startswith("BCST carol: "):
                    assert line.startswith(f"BCST carol: {alice_got} "), line
                    alice_got += 1
                else:
                    assert line == "OK MESG bob delivered", line
                    alice_acks += 1
            for line in take_lines(bob):
                if line.startswith("BCST carol: "):
                    assert line.startswith(f"BCST carol: {bob_got} "), line
                    bob_got += 1
                else:
                    assert line == f"MESG alice: ping {round_number}", line
                    ping_seen = True
            acks += take_lines(carol)
    # Every broadcast was answered; the count fell from 3 to 2 when slow went.
    assert set(acks) <= {"OK BCST 3", "OK BCST 2"}, set(acks)
    assert acks == sorted(acks, reverse=True), "the recipient count went up again"
    assert alice.list_names() == ["alice", "bob", "carol"]
    carol.expect_reply("BCST after", "OK BCST 2")
    assert alice.read_line() == "BCST carol: after"
    assert bob.read_line() == "BCST carol: after"
    growth = server.rss_kib() - before
    assert growth < 8192, f"server RSS grew by {growth} KiB while one client did not read"
    # The stuck client's connection was cut: EOF or reset after what fit.
    slow.sock.settimeout(5)
    try:
        while slow.sock.recv(1 << 20):
            pass
    except ConnectionResetError:
        pass
    slow.close()
    Client(server.port).join("slow")


# Shutdown


def test_sigterm_says_goodbye(server: ChatServer) -> None:
    """
    On SIGTERM every client, registered or not, is told (a BYE line, always
    the last one) and disconnected, and the process exits 0 promptly.
    """
    alice, guest, half = Client(server.port), Client(server.port), Client(server.port)
    alice.join("alice")
    half.send(b"MESG alice unfinished")  # a partial line must not delay shutdown
    assert alice.list_names() == ["alice"]
    started = time.monotonic()
    server.terminate()
    for client in (alice, guest, half):
        assert client.read_line() == SHUTDOWN_LINE
        client.expect_eof()
    assert server.wait(timeout=5) == 0
    assert time.monotonic() - started < 5
    log = server.log_text()
    assert "shutting down: closing 3 connections" in log
    assert "Traceback" not in log
    # The listener is closed too.
    probe = socket.socket()
    probe.settimeout(2)
    try:
        assert probe.connect_ex(("127.0.0.1", server.port)) != 0
    finally:
        probe.close()


@pytest.mark.parametrize("how", ["join-timeout", "half-close"])
def test_a_client_that_does_not_read_its_last_lines_is_aborted(
    start_server: StartServer, how: str
) -> None:
    """
    The server closes a connection (a BYE, or the answers to a client that
    closed its sending side) and waits for the client to read what is
    queued: a client that never reads gets C{--close-timeout}, then the
    connection is aborted. Before, it held its slot for as long as it liked.
    """
    server = start_server(
        "--join-timeout", "1", "--close-timeout", "1", "--max-outbound", str(64 << 20),
        *NO_FLOOD_CONTROL,
    )  # fmt: skip
    stuck = Client(server.port, rcvbuf=4096)
    # About 8 MB of answers: more than the kernel's socket buffers hold (at
    # most tcp_wmem's 4 MiB), less than --max-outbound, so the server's
    # transport keeps the rest and waits for the client to read it.
    stuck.send(b"HELP\r\n" * 12000)
    if how == "half-close":
        stuck.sock.shutdown(socket.SHUT_WR)
    log = server.wait_for_log("aborting the connection of 127.0.0.1:", timeout=10)
    assert ("no JOIN within 1" in log) == (how == "join-timeout")
