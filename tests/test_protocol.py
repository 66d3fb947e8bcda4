"""
Protocol-level tests: several clients on one factory over in-memory
transports, no network. Every rule of the protocol has a test here.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from twisted.internet.address import IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection

from chat.core.limits import Limits
from chat.core.room import Delivery, Later, LocalRoom, Member, RoomUnavailable
from chat.core.session import LINE_END_HINT
from chat.server.factory import ChatFactory
from harness import Client, connector, logged


@pytest.fixture
def factory(clock: Clock) -> ChatFactory:
    """Limits that other tests switch on are off here: each rule alone."""
    limits = Limits(max_line=64, max_outbound=1000, rate=0, join_timeout=0)
    return ChatFactory(max_users=3, limits=limits, clock=clock)


@pytest.fixture
def connect(factory: ChatFactory) -> Callable[..., Client]:
    return connector(factory)


# Registration


def test_join_and_count(connect) -> None:
    a = connect()
    assert a.send("JOIN alice") == ["OK JOIN alice 1/3"]
    assert connect().send("join Bob") == ["OK JOIN Bob 2/3"]


def test_commands_are_case_insensitive(connect) -> None:
    a = connect()
    assert a.send("jOiN alice") == ["OK JOIN alice 1/3"]
    assert a.send("list") == ["USER alice", "OK LIST 1"]
    assert a.send("Help")[-1] == "OK HELP -"
    assert a.send("qUiT") == ["OK QUIT Bye"]


def test_too_many_users_keeps_the_connection_open(connect, logs) -> None:
    for name in ("a", "b", "c"):
        connect(name)
    late = connect()
    assert late.send("JOIN d") == [
        "ERR Too Many Users: 3 of 3 users are registered; try again later"
    ]
    assert not late.closed
    assert logged(logs, "refused JOIN 'd'", "server full")


def test_a_seat_freed_by_quit_can_be_taken(connect) -> None:
    a = connect("a")
    connect("b")
    connect("c")
    late = connect()
    assert late.send("JOIN d")[0].startswith("ERR Too Many Users")
    a.send("QUIT")
    assert late.send("JOIN d") == ["OK JOIN d 3/3"]


def test_second_join_is_discarded(connect, logs) -> None:
    a = connect("alice")
    assert a.send("JOIN bob") == ["ERR Already Registered: you are alice; this JOIN was discarded"]
    assert a.send("LIST") == ["USER alice", "OK LIST 1"]
    assert logged(logs, "discarded")


@pytest.mark.parametrize("name", ["bob!", "a" * 33, "b\u00f8b", "-", "t\u0131m"])
def test_invalid_names_are_refused_with_the_rule(connect, name: str) -> None:
    assert connect().send(f"JOIN {name}") == [
        "ERR Invalid Username: 1 to 32 ASCII letters and digits"
    ]


def test_names_are_unique_ignoring_case(connect) -> None:
    connect("Bob")
    assert connect().send("JOIN bOB") == ["ERR Username Taken: bOB is already registered"]


def test_missing_arguments_get_usage(connect) -> None:
    assert connect().send("JOIN") == ["ERR Usage: JOIN <username> [<resume token>]"]
    assert connect().send("JOIN three word name") == ["ERR Usage: JOIN <username> [<resume token>]"]
    a = connect("a")
    assert a.send("MESG") == ["ERR Usage: MESG <username> <text>"]
    assert a.send("MESG a") == ["ERR Usage: MESG <username> <text>"]
    assert a.send("MESG a   ") == ["ERR Usage: MESG <username> <text>"]
    assert a.send("BCST") == ["ERR Usage: BCST <text>"]
    assert a.send(b"BCST \x1b\x07\r\n") == ["ERR Usage: BCST <text>"]


# Unregistered clients


@pytest.mark.parametrize("line", ["LIST", "MESG a hi", "BCST hi", "STATUS", "FOO", "123", "!!"])
def test_unregistered_user_gets_instructions(connect, line: str) -> None:
    assert connect().send(line) == [
        "ERR Unregistered User: register first with JOIN <username>; HELP lists the commands"
    ]


def test_help_before_join(connect) -> None:
    lines = connect().send("HELP")
    assert lines[-1] == "OK HELP -"
    assert all(line.startswith("INFO ") for line in lines[:-1])
    assert {line.split()[1] for line in lines[:-1]} == {
        "STATUS",
        "MODE",
        "JOIN",
        "LIST",
        "MESG",
        "BCST",
        "ME",
        "HISTORY",
        "HELP",
        "QUIT",
        "AWAY",
        "BACK",
        "IGNORE",
        "UNIGNORE",
        "NOTICES",
    }


def test_unregistered_quit_closes(connect, logs) -> None:
    a = connect()
    assert a.send("QUIT") == ["OK QUIT Bye"]
    assert a.closed
    assert logged(logs, "unregistered 10.0.0.1", "quit")


# Messages


def test_mesg_reaches_the_recipient_and_answers_the_sender(connect, logs) -> None:
    a, b = connect("alice"), connect("Bob")
    assert a.send("MESG bob  hello   there ") == ["OK MESG Bob delivered"]
    assert b.lines() == ["MESG alice: hello   there"]
    assert logged(logs, "MESG alice -> Bob")


def test_mesg_to_unknown_recipient(connect) -> None:
    a = connect("alice")
    assert a.send("MESG nobody hi") == ["ERR Unknown Recipient: nobody named nobody is registered"]


def test_bcst_reaches_everyone_but_the_sender(connect, logs) -> None:
    a, b, c = connect("a"), connect("b"), connect("c")
    unregistered = connect()
    assert a.send("BCST hi all") == ["OK BCST 2"]
    assert b.lines() == c.lines() == ["BCST a: hi all"]
    assert a.lines() == unregistered.lines() == []
    assert logged(logs, "BCST from a reached 2 users")


def test_bcst_alone(connect) -> None:
    assert connect("a").send("BCST anyone?") == ["OK BCST 0"]


def test_relayed_text_cannot_inject_lines_or_escapes(connect) -> None:
    a, b = connect("a"), connect("b")
    a.send(b"MESG b hi\x0bOK JOIN fake\x1b[2J\xc2\x9b\x00 end\r\n")
    assert b.lines() == ["MESG a: hiOK JOIN fake end"]
    # A CR ends the line: what follows it is a command of the sender's own.
    assert a.send(b"MESG b hi\rOK JOIN fake\r\n") == [
        "OK MESG b delivered",
        "ERR Unknown Message: OK is not a command; HELP lists them",
    ]
    assert b.lines() == ["MESG a: hi"]


def test_invalid_utf8_is_replaced_not_fatal(connect) -> None:
    a, b = connect("a"), connect("b")
    assert a.send(b"BCST \xfe\x80 ok \xc3(\r\n") == ["OK BCST 1"]
    assert b.lines() == ["BCST a: \ufffd\ufffd ok \ufffd("]


def test_unknown_message(connect, logs) -> None:
    a = connect("a")
    assert a.send("FROB x") == ["ERR Unknown Message: FROB is not a command; HELP lists them"]
    assert a.send("do_JOIN x")[0].startswith("ERR Unknown Message")
    assert a.send("__init__")[0].startswith("ERR Unknown Message")
    assert logged(logs, "unknown command 'FROB'")


def test_list_shows_names_as_registered(connect) -> None:
    connect("Alice")
    b = connect("bob")
    assert b.send("LIST") == ["USER Alice", "USER bob", "OK LIST 2"]


# Input framing


def test_empty_lines_are_ignored(connect) -> None:
    assert connect().send(b"\r\n\n   \r\n\t\n") == []


def test_lf_crlf_and_cr_nul_line_ends(connect) -> None:
    a = connect()
    assert a.send(b"JOIN a\nLIST\r\nLIST\r\x00") == [
        "OK JOIN a 1/3",
        "USER a",
        "OK LIST 1",
        "USER a",
        "OK LIST 1",
    ]


def test_pipelined_commands_are_answered_in_order(connect) -> None:
    a, b = connect(), connect("b")
    replies = a.send(b"JOIN a\r\n" + b"".join(b"MESG b %d\r\n" % i for i in range(20)) + b"LIST\n")
    assert replies == ["OK JOIN a 2/3"] + ["OK MESG b delivered"] * 20 + [
        "USER b",
        "USER a",
        "OK LIST 2",
    ]
    assert b.lines() == [f"MESG a: {i}" for i in range(20)]


def test_one_byte_segments(connect) -> None:
    a, b = connect(), connect("b")
    for byte in b"JOIN a\r\nMESG b split\r\n":
        a.protocol.dataReceived(bytes([byte]))
    assert a.lines() == ["OK JOIN a 2/3", "OK MESG b delivered"]
    assert b.lines() == ["MESG a: split"]


def test_telnet_commands_are_removed_and_negotiation_refused(connect) -> None:
    a = connect()
    a.protocol.dataReceived(b"JO\xff\xf4\xff\xfd\x06IN a\xff\xfa\x1f\x00\x50\xff\xf0\r\n")
    assert a.raw().startswith(b"\xff\xfc\x06OK JOIN a 1/3\r\n")


def test_overlong_line_is_refused_and_connection_kept(connect, logs) -> None:
    a, b = connect("a"), connect("b")
    assert a.send(b"BCST " + b"x" * 100) == [
        "ERR Line Too Long: lines are limited to 64 bytes; it was discarded"
    ]
    assert a.send(b"x" * 1000 + b" BCST tail of the long line\r\nBCST after\r\n") == ["OK BCST 1"]
    assert b.lines() == ["BCST a: after"]
    assert not a.closed
    assert a.protocol.session is not None and a.protocol.session._lines.pending == 0
    assert logged(logs, "longer than 64 bytes")


# Leaving


def test_quit_closes_and_frees_the_name(connect, logs) -> None:
    a, b = connect("alice"), connect("b")
    assert a.send("QUIT") == ["OK QUIT Bye"]
    assert a.closed
    assert b.send("LIST") == ["USER b", "OK LIST 1"]
    assert connect().send("JOIN ALICE") == ["OK JOIN ALICE 2/3"]
    assert logged(logs, "alice quit")


def test_nothing_is_served_after_quit_in_the_same_read(connect) -> None:
    a, b = connect("a"), connect("b")
    assert a.send(b"QUIT\r\nBCST too late\r\n") == ["OK QUIT Bye"]
    assert b.lines() == []


def test_dropped_connection_frees_the_name_at_once_by_default(connect, factory, logs) -> None:
    """The specification: a disconnected client's entry is removed (no --grace)."""
    assert factory.limits.grace == 0
    a, b = connect("alice"), connect("b")
    a.transport.loseConnection()
    assert b.send("MESG alice hi")[0].startswith("ERR Unknown Recipient")
    assert a.protocol not in factory.connections
    assert logged(logs, "alice dropped the connection")


# End of input (half-close) and lines without a line end


def flood_controlled(clock: Clock, **limits: float) -> Callable[..., Client]:
    """Clients of a server with flood control on (burst 5, then 10 lines/s)."""
    settings: dict = {"rate": 10, "burst": 5, "join_timeout": 0, **limits}
    return connector(ChatFactory(limits=Limits(**settings), clock=clock))


def test_end_of_input_answers_every_line_at_the_flood_pace(clock, logs) -> None:
    """nc -N with a script: every line answered, QUIT included, then closed."""
    connect = flood_controlled(clock)
    reader, script = connect("reader"), connect()
    script.protocol.dataReceived(
        b"JOIN scripter\r\n" + b"".join(b"BCST %d\r\n" % i for i in range(30)) + b"QUIT\r\n"
    )
    script.protocol.readConnectionLost()
    assert not script.closed  # the backlog is still being answered
    clock.pump([0.1] * 40)
    assert script.lines() == ["OK JOIN scripter 2/10"] + ["OK BCST 1"] * 30 + ["OK QUIT Bye"]
    assert reader.lines() == [f"BCST scripter: {i}" for i in range(30)]
    assert script.closed
    assert logged(logs, "scripter closed its input")


def test_end_of_input_without_quit_closes_and_frees_the_name(clock, logs) -> None:
    connect = flood_controlled(clock)
    script = connect()
    script.protocol.dataReceived(b"JOIN ghost\r\n" + b"LIST\r\n" * 8)
    script.protocol.readConnectionLost()
    clock.pump([0.1] * 10)
    assert script.lines() == ["OK JOIN ghost 1/10"] + ["USER ghost", "OK LIST 1"] * 8
    assert script.closed
    assert logged(logs, "ghost ended its input from", "(0/10 users)")
    assert connect().send("JOIN ghost") == ["OK JOIN ghost 1/10"]


def test_end_of_input_with_grace_holds_the_name_at_once(clock) -> None:
    """With --grace, a client that ended its input is away at once, not when it reads."""
    connect = flood_controlled(clock, grace=60)
    alice, bob = connect("alice"), connect("bob")
    # Alice does not read her last answers: the transport's close waits for her.
    alice.transport.loseConnection = lambda: None  # type: ignore[method-assign]
    alice.protocol.readConnectionLost()
    assert bob.send("LIST") == [
        "USER alice (disconnected, held for a resume)",
        "USER bob",
        "OK LIST 2",
    ]
    assert bob.send("MESG alice still there?")[0].startswith("OK MESG alice held")


def test_lines_waiting_for_flood_control_are_not_idleness(clock) -> None:
    connect = flood_controlled(clock, idle_timeout=4, rate=1, burst=1)
    script = connect()
    script.protocol.dataReceived(b"JOIN slowpoke\r\n" + b"LIST\r\n" * 10)
    script.protocol.readConnectionLost()
    for _ in range(12):
        clock.advance(1)
        script.protocol.server.checkIdle()
    assert script.lines().count("OK LIST 1") == 10
    assert script.closed


def test_empty_lines_cost_no_token(clock) -> None:
    """LF CR line ends make an empty line after each line: it is free."""
    connect = flood_controlled(clock)
    client = connect()
    assert (
        client.send(b"JOIN lfcr\n\r" + b"LIST\n\r" * 4)
        == ["OK JOIN lfcr 1/10"]
        + [
            "USER lfcr",
            "OK LIST 1",
        ]
        * 4
    )


def test_a_last_line_without_a_line_end_counts_at_end_of_input(connect) -> None:
    script = connect()
    script.protocol.dataReceived(b"JOIN x\nLIST")
    assert script.lines() == ["OK JOIN x 1/3"]
    script.protocol.readConnectionLost()
    assert script.lines() == ["USER x", "OK LIST 1"]
    assert script.closed


def test_end_of_input_while_idle_closes_at_once(connect) -> None:
    client = connect("idle")
    client.protocol.readConnectionLost()
    assert client.closed
    assert connect().send("JOIN idle") == ["OK JOIN idle 1/3"]


def test_a_half_closed_flood_is_still_bounded_by_the_backlog(clock, logs) -> None:
    connect = flood_controlled(clock, max_backlog=200)
    flooder = connect("flooder")
    flooder.protocol.dataReceived(b"BCST flood\r\n" * 30)
    flooder.protocol.readConnectionLost()
    assert flooder.lines()[-1].startswith("BYE Flooding")
    assert flooder.closed


def test_one_hint_when_text_waits_without_a_line_end(connect, clock, logs) -> None:
    """Some clients send "JOIN name" with no line end and wait forever."""
    student = connect()
    student.protocol.dataReceived(b"JOIN ")
    clock.advance(1.5)
    student.protocol.dataReceived(b"kim")  # still typing: the quiet time starts anew
    clock.advance(1.9)
    assert student.lines() == []
    clock.advance(0.2)
    assert student.lines() == [LINE_END_HINT.decode().rstrip()]
    assert logged(logs, "sent 8 bytes without a line end; hinted")
    student.protocol.dataReceived(b" ")
    clock.advance(10)
    assert student.lines() == []  # one hint only
    assert student.send(b"\r\n") == ["OK JOIN kim 1/3"]


def test_no_hint_once_lines_have_ended(connect, clock) -> None:
    typist = connect("typist")
    typist.protocol.dataReceived(b"BCST slow typing")
    clock.advance(10)
    assert typist.lines() == []


def test_join_timeout_says_that_a_line_had_no_end(clock, logs) -> None:
    factory = ChatFactory(limits=Limits(rate=0, join_timeout=5), clock=clock)
    student = Client(factory, 1)
    student.lines()
    student.protocol.dataReceived(b"JOIN kim")
    clock.advance(5)
    assert student.lines()[-1] == (
        "BYE Join Timeout: no JOIN within 5 seconds; your unfinished line of 8 bytes never "
        "got its line end (Enter: LF or CR LF)"
    )
    assert logged(logs, "no JOIN within 5s; an unfinished line of 8 bytes had no line end")


# Slow consumers


def test_slow_consumer_is_dropped_past_the_outbound_limit(connect, factory, logs) -> None:
    slow, fast, talker = connect("slow"), connect("fast"), connect("talker")
    slow.protocol.pauseProducing()  # what the transport does when its buffer is full
    for i in range(100):
        talker.send(f"BCST message number {i}")
        slow.protocol.pauseProducing()  # as a transport does on every write past its buffer
    assert slow.transport.disconnected  # aborted, buffered data thrown away
    assert fast.lines() == [f"BCST talker: message number {i}" for i in range(100)]
    assert talker.send("LIST") == ["USER fast", "USER talker", "OK LIST 2"]
    assert logged(logs, "dropped slow consumer slow")


def test_a_reader_that_catches_up_is_kept(connect) -> None:
    reader, talker = connect("reader"), connect("talker")
    for _ in range(5):
        reader.protocol.pauseProducing()
        for i in range(20):
            talker.send(f"MESG reader {i:03}")
        reader.protocol.resumeProducing()
    assert not reader.transport.disconnected
    assert len(reader.lines()) == 100


# Shutdown


def test_close_all_tells_everyone_and_waits(connect, factory, clock) -> None:
    a, b = connect("a"), connect()
    done = factory.closeAll()
    assert a.lines() == b.lines() == ["BYE Shutting Down: the server is shutting down; goodbye"]
    assert a.closed and b.closed
    assert done.called  # the in-memory transports close at once


def test_close_all_aborts_clients_that_do_not_go(connect, factory, clock) -> None:
    a = connect("a")
    a.transport.loseConnection = lambda: None  # a peer that never lets go
    done = factory.closeAll()
    assert not done.called
    clock.advance(factory.shutdown_grace)
    assert a.transport.disconnected


def test_ipv6_peer_is_logged_with_brackets(factory, logs) -> None:
    protocol = factory.buildProtocol(IPv6Address("TCP", "::1", 4242))
    protocol.makeConnection(StringTransportWithDisconnection())
    assert logged(logs, "connection from [::1]:4242")


def test_quiet_relays_skips_the_relay_status_lines_but_counts(factory, connect, logs) -> None:
    factory.relay_log = None
    a, b = connect("a"), connect("b")
    a.send("MESG b hi")
    a.send("BCST all")
    assert b.lines() == ["MESG a: hi", "BCST a: all"]
    assert not logged(logs, "MESG a -> b")
    assert not logged(logs, "BCST from a")
    assert logged(logs, "a joined")  # every other event still has its line
    assert factory.stats.relayed == {"mesg": 1, "bcst": 1, "presence": 1}  # b joined


def test_commands_before_join_are_counted_by_their_verb(connect, factory) -> None:
    """The metrics count a MESG or BCST refused before JOIN as what it is."""
    client = connect()
    client.send("MESG a b")
    client.send(" bcst x")
    client.send("FROB")
    assert dict(factory.stats.commands) == {"MESG": 1, "BCST": 1, "unknown": 1}


def test_a_room_that_fails_after_answering_late_does_not_stop_input(clock) -> None:
    """
    A cluster room answers a lookup later, and by then cannot relay (Redis
    went away): the MESG is answered Cluster Unavailable and input goes on.
    """

    class Unreachable:
        """A user on another node, while that node cannot be reached."""

        name: str | None = "zed"
        away = False

        def ready(self, size: int) -> bool:
            return False

        prefs = None

        def deliver(self, data: bytes) -> Delivery:
            raise RoomUnavailable("Redis is not connected")

        def bye(self, reason: str, details: str) -> None:
            raise AssertionError("never closed from here")

    answer: Later[Member | None] = Later()

    class LateRoom(LocalRoom):
        __slots__ = ()

        def find(self, name: str) -> Member | None | Later[Member | None]:
            return answer if name == "zed" else super().find(name)

    factory = ChatFactory(limits=Limits(rate=0, join_timeout=0), clock=clock, room=LateRoom(10))
    alice = connector(factory)("alice")
    assert alice.send(b"MESG zed hello\r\nMODE MACHINE\r\n") == []  # waits for the room
    answer.resolve(Unreachable())
    assert alice.lines() == [
        "ERR Cluster Unavailable: the cluster cannot be reached; try again soon",
        "OK MODE MACHINE 2",
    ]
    assert alice.send("MODE HUMAN")[0].startswith("OK MODE HUMAN")


@pytest.mark.usefixtures("time_limit")  # the defect it guards against spun for ever
def test_the_drain_timer_finds_its_token_on_an_exact_clock(clock) -> None:
    """A clock advanced exactly to each due time: every delayed line runs."""
    connect = flood_controlled(clock, rate=1, burst=1)
    client = connect()
    client.protocol.dataReceived(b"HELP\r\n" * 5)
    for _ in range(20):  # at most one firing per line: no spinning
        if not clock.calls:
            break
        clock.advance(clock.calls[0].getTime() - clock.seconds())
    assert client.lines().count("OK HELP -") == 5
