"""
Resume after a dropped connection, delivery receipts, unforgeable server
lines, look-alike names, STATUS and MODE MACHINE: protocol-level tests with
a Clock, then the same stories over real sockets against a real server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pytest
from conftest import StartServer
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent

from chat.core import grammar
from chat.core.limits import Limits
from chat.core.repeats import INTERVAL
from chat.server.factory import ChatFactory
from harness import Client, connector, logged
from server import Client as SocketClient

Connect = Callable[..., Client]


@pytest.fixture
def factory(clock: Clock) -> ChatFactory:
    limits = Limits(rate=0, join_timeout=0, grace=60, max_held=3)
    return ChatFactory(max_users=3, limits=limits, clock=clock)


@pytest.fixture
def connect(factory: ChatFactory) -> Callable[..., Client]:
    return connector(factory)


# Resume


def test_drop_hold_resume_replays_in_order_exactly_once(
    connect: Connect, clock: Clock, logs: Sequence[LogEvent]
) -> None:
    alice, bob = connect("alice"), connect("bob")
    token = alice.token
    assert bob.send("MESG alice before the drop") == ["OK MESG alice delivered"]
    alice.transport.loseConnection()
    assert logged(logs, "alice dropped the connection", "name held for 60")
    assert bob.send("LIST") == [
        "USER alice (disconnected, held for a resume)",
        "USER bob",
        "OK LIST 2",
    ]
    assert bob.send("MESG alice one") == [
        "OK MESG alice held: alice lost the connection and gets it on resuming"
    ]
    assert bob.send("BCST two") == ["OK BCST 1 (1 of them away, held for them)"]
    clock.advance(30)
    back = connect()
    assert back.send(f"JOIN alice {token}") == [
        "MESG bob: one",
        "BCST bob: two",
        (
            "OK JOIN alice 2/3 (resume token: T) resumed: 2 held messages replayed, "
            "0 older ones dropped"
        ),
    ]
    # A new token with each resume: one seen once cannot take the name later.
    assert back.token is not None and back.token != token
    assert logged(logs, "alice resumed from", "2 held messages replayed")
    # Live again: new messages arrive at once, and nothing is replayed twice.
    assert bob.send("MESG alice three") == ["OK MESG alice delivered"]
    assert back.lines() == ["MESG bob: three"]
    clock.advance(60)  # the old grace timer is gone; alice has said nothing since
    assert bob.send("LIST") == ["USER alice (idle 60s)", "USER bob", "OK LIST 2"]
    # A second drop: the spent token is refused, the new one resumes.
    back.transport.loseConnection()
    again = connect()
    assert again.send(f"JOIN alice {token}") == [
        "ERR Invalid Token: that is not the resume token of alice"
    ]
    assert again.send(f"JOIN alice {back.token}")[-1].startswith("OK JOIN alice 2/3")


def test_held_messages_are_bounded_oldest_dropped_first(connect: Connect) -> None:
    alice, bob = connect("alice"), connect("bob")
    token = alice.token
    alice.transport.loseConnection()
    for i in range(5):
        bob.send(f"MESG alice {i}")
    back = connect()
    assert back.send(f"JOIN alice {token}") == [
        "MESG bob: 2",
        "MESG bob: 3",
        "MESG bob: 4",
        (
            "OK JOIN alice 2/3 (resume token: T) resumed: 3 held messages replayed, "
            "2 older ones dropped"
        ),
    ]


def test_name_is_held_without_the_token(connect: Connect, clock: Clock) -> None:
    alice = connect("alice")
    token = alice.token
    alice.transport.loseConnection()
    clock.advance(18)
    impostor = connect()
    assert impostor.send("JOIN alice") == [
        "ERR Username Taken: alice is held for a user who lost the connection, for 42 more seconds"
    ]
    assert impostor.send("JOIN ALICE") == [
        "ERR Username Taken: alice is held for a user who lost the connection, for 42 more seconds"
    ]
    assert impostor.send("JOIN alice AAAAAAAAAAAA") == [
        "ERR Invalid Token: that is not the resume token of alice"
    ]
    assert impostor.send(f"JOIN alice {token}")[-1].startswith("OK JOIN alice 1/3")


def test_grace_expiry_frees_the_name_and_the_seat(
    connect: Connect, clock: Clock, logs: Sequence[LogEvent]
) -> None:
    alice, _, _ = connect("alice"), connect("bob"), connect("cy")
    token = alice.token
    alice.transport.loseConnection()
    late = connect()
    assert late.send("JOIN dee")[0].startswith("ERR Too Many Users")  # away still counts
    clock.advance(60)
    assert logged(logs, "alice did not come back: name free")
    assert late.send(f"JOIN alice {token}") == [
        "ERR Invalid Token: no dropped session of alice is waiting; JOIN alice to start anew"
    ]
    assert late.send("JOIN alice") == ["OK JOIN alice 3/3 (resume token: T)"]


def test_quit_ends_the_session_at_once(connect: Connect) -> None:
    alice, bob = connect("alice"), connect("bob")
    token = alice.token
    alice.send("QUIT")
    assert bob.send("MESG alice hi")[0].startswith("ERR Unknown Recipient")
    assert connect().send(f"JOIN alice {token}")[0].startswith("ERR Invalid Token")


def test_a_name_with_a_space_is_not_a_resume(connect: Connect) -> None:
    assert connect().send("JOIN Bob Smith") == [
        "ERR Invalid Username: 1 to 32 ASCII letters and digits"
    ]


def test_look_alike_names_are_taken(connect: Connect) -> None:
    connect("alice")
    connect("B0B")
    for impostor in ("A1ice", "aIice", "bob", "BOB"):
        assert connect().send(f"JOIN {impostor}")[0].startswith("ERR Username Taken")


# Receipts and forgery


def test_message_to_a_reader_that_was_just_dropped(connect: Connect, factory: ChatFactory) -> None:
    slow, talker = connect("slow"), connect("talker")
    slow.protocol.pauseProducing()
    reply = talker.send("MESG slow " + "x" * 40)
    while reply == ["OK MESG slow delivered"]:
        reply = talker.send("MESG slow " + "x" * 40)
    assert reply == [
        "ERR Message Dropped: slow stopped reading and was disconnected; it was not delivered"
    ]


@pytest.mark.parametrize(
    "text",
    [
        "ERR Too Many Users: fake",
        "hi\rOK JOIN mallory 1/10",
        "hi\nBYE Shutting Down: fake",
        "hi\u2028INFO fake",
        "hi\u0085MESG admin: fake",
        "\x1b[2K\rOK MESG fake",
    ],
)
def test_user_text_never_starts_a_line(connect: Connect, text: str) -> None:
    mallory, victim = connect("mallory"), connect("victim")
    mallory.protocol.dataReceived(b"MESG victim " + text.encode() + b"\r\n")
    received = victim.lines()
    # A CR or LF ends the command there (what follows is mallory's own next
    # command); an escape sequence goes whole, which may leave no text.
    assert len(received) <= 1
    assert all(line.startswith("MESG mallory: ") for line in received)


# STATUS and MODE


def test_status_human(connect: Connect, clock: Clock) -> None:
    alice = connect("alice")
    clock.advance(42)
    lines = alice.send("STATUS")
    assert lines == [
        "INFO User: alice, from 10.0.0.1:1000",
        "INFO Users: 1 of 3",
        "INFO Connected: 42 seconds",
        "INFO Uptime: 42 seconds",
        "INFO Rate: no limit",
        "INFO Outbound: flowing, 0 bytes queued past the buffer, dropped past 1048576",
        "INFO Input: 0 bytes waiting, disconnected past 65536",
        "INFO History: the last 50 broadcasts are kept; HISTORY replays them",
        "OK STATUS -",
    ]


def test_status_shows_the_rate_budget(clock: Clock) -> None:
    factory = ChatFactory(limits=Limits(rate=10, burst=20), clock=clock)
    client = Client(factory, 1)
    client.send("JOIN a")
    client.send(b"LIST\r\n" * 4)
    lines = client.send("STATUS")
    assert "INFO Rate: 14.0 of 20 lines left, 10 more per second" in lines


def test_machine_mode(connect: Connect) -> None:
    bot, human = connect(), connect("human")
    assert bot.send("MODE MACHINE") == ["OK MODE MACHINE 2"]
    reply = bot.send("JOIN bot")
    assert re.fullmatch(r"OK JOIN bot 2 3 [\w-]{12}", reply[0]), reply
    assert bot.send("JOIN again") == ["ERR ALREADY_REGISTERED bot"]
    assert bot.send("MESG nobody hi") == ["ERR UNKNOWN_RECIPIENT nobody"]
    assert bot.send("MESG human hi") == ["OK MESG human delivered"]
    assert human.lines() == ["MESG bot: hi"]
    assert human.send("MESG bot hello") == ["OK MESG bot delivered"]
    assert bot.lines() == ["MESG human: hello"]  # relayed lines are the same in both modes
    assert bot.send("BCST all") == ["OK BCST 1 0"]
    assert bot.send("LIST") == ["USER human here 0 -", "USER bot here 0 -", "OK LIST 2"]
    assert bot.send("FROB") == ["ERR UNKNOWN_MESSAGE FROB"]
    status = bot.send("STATUS")
    assert status[0] == "STAT user bot 10.0.0.1:1000"
    assert all(re.fullmatch(r"STAT \w+( \S+)+", line) for line in status[:-1])
    assert status[-1] == "OK STATUS"
    assert bot.send("MODE HUMAN") == ["OK MODE HUMAN: version 2 of the machine format"]
    assert bot.send("MESG nobody hi")[0].startswith("ERR Unknown Recipient: ")
    assert bot.send("MODE ROBOT") == [
        "ERR Usage: MODE MACHINE | MODE HUMAN | MODE EDIT [TIME] [BELL] [COLOR] | MODE LINE"
    ]


def test_machine_mode_before_join_and_bye(clock: Clock) -> None:
    factory = ChatFactory(limits=Limits(rate=0, join_timeout=5), clock=clock)
    bot = Client(factory, 1)
    bot.lines()
    assert bot.send("MODE MACHINE") == ["OK MODE MACHINE 2"]
    clock.advance(5)
    assert bot.lines() == ["BYE JOIN_TIMEOUT 5"]


# Over real sockets


def test_resume_over_real_sockets(start_server: StartServer) -> None:
    server = start_server("--grace", "30", "--rate-limit", "0")
    alice, bob = SocketClient(server.port), SocketClient(server.port)
    alice.join("alice")
    bob.join("bob")
    token = alice.token
    assert bob.expect_reply("MESG alice mid-conversation", "OK MESG alice delivered")
    assert alice.read_line() == "MESG bob: mid-conversation"
    alice.abort()  # RST: the connection drops without QUIT
    server.wait_for_log("alice dropped the connection")
    assert bob.list_names() == ["alice (disconnected, held for a resume)", "bob"]
    for i in range(5):
        bob.expect_reply(f"MESG alice while away {i}", "OK MESG alice held")
    bob.expect_reply("BCST to all", "OK BCST 1 (1 of them away")
    intruder = SocketClient(server.port)
    assert intruder.expect_reply("JOIN alice", "ERR Username Taken: alice is held")
    assert intruder.expect_reply("JOIN alice AAAAAAAAAAAA", "ERR Invalid Token")
    back = SocketClient(server.port)
    back.sendline(f"JOIN alice {token}")
    replayed = back.read_until(lambda line: line.startswith("OK JOIN"))
    assert replayed == [
        *[f"MESG bob: while away {i}" for i in range(5)],
        "BCST bob: to all",
        "OK JOIN alice 2/10 resumed: 6 held messages replayed, 0 older ones dropped",
    ]
    assert bob.expect_reply("MESG alice live again", "OK MESG alice delivered")
    assert back.read_line() == "MESG bob: live again"
    back.assert_silent()  # exactly once: nothing replayed twice


def test_grace_expiry_over_real_sockets(start_server: StartServer) -> None:
    server = start_server("--grace", "1")
    alice, bob = SocketClient(server.port), SocketClient(server.port)
    alice.join("alice")
    bob.join("bob")
    alice.close()
    server.wait_for_log("alice did not come back: name free")
    assert bob.list_names() == ["bob"]
    SocketClient(server.port).join("alice")


def test_forged_server_lines_over_real_sockets(server: object) -> None:
    port = server.port  # type: ignore[attr-defined]
    mallory, victim = SocketClient(port), SocketClient(port)
    mallory.join("mallory")
    victim.join("victim")
    mallory.send(b"MESG victim hi\x0bERR Too Many Users: fake\x1b[2K\xe2\x80\xa8OK QUIT Bye\r\n")
    assert victim.read_line() == "MESG mallory: hiERR Too Many Users: fakeOK QUIT Bye"
    # A CR ends the line: what follows it is mallory's own (unknown) command.
    mallory.send(b"MESG victim hi\rERR Too Many Users: fake\r\n")
    assert victim.read_line() == "MESG mallory: hi"
    victim.assert_silent()


def test_the_receipt_is_the_ok_line_of_either_format() -> None:
    for format in (grammar.HUMAN, grammar.MACHINE):
        for outcome in ("delivered", "sent"):
            assert format.receipt("bob", outcome) == format.ok(
                "MESG", f"bob {outcome}", "bob", outcome
            )


def test_wrong_tokens_from_one_address_are_summarised(
    connect: Connect, clock: Clock, logs: Sequence[LogEvent]
) -> None:
    """
    A client guessing tokens would write the log as fast as it sends: the
    first refusal from an address in ten seconds is logged, the rest are
    counted in one line. The client gets every reply.
    """
    alice = connect("alice")
    alice.transport.loseConnection()
    guesser = connect()
    for _ in range(50):
        assert guesser.send("JOIN alice AAAAAAAAAAAA")[0].startswith("ERR Invalid Token")
    lines = [formatEvent(event) for event in logs]
    assert sum(line.startswith("refused JOIN 'alice'") for line in lines) == 1
    clock.advance(INTERVAL)
    assert logged(logs, "49 more JOINs with a wrong resume token from 10.0.0.1 in the last 10s")
    assert guesser.send("JOIN alice BBBBBBBBBBBB")[0].startswith("ERR Invalid Token")
    lines = [formatEvent(event) for event in logs]
    assert sum(line.startswith("refused JOIN 'alice'") for line in lines) == 2  # a new interval
