"""
HISTORY and ME: the broadcasts a server keeps and replays on request, and
actions. Unit tests of L{chat.core.history}, protocol-level tests with a
Clock, then the same over real sockets against a real C{twistd chat}.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pytest
from conftest import StartServer
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import LogEvent
from twisted.python import usage

from chat.core.history import LocalHistory, decode_entry, encode_entry, wanted
from chat.core.limits import Limits
from chat.server.factory import ChatFactory
from chat.tap import Options, makeService
from harness import Client, connector, logged
from server import Client as SocketClient

Connect = Callable[..., Client]

NOW = 1796165720  # 2026-12-01T22:55:20Z
STAMP = "2026-12-01T22:55:20Z"
USAGE = "ERR Usage: HISTORY [<count>], a whole number from 1 to 50"


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(NOW)
    return clock


@pytest.fixture
def factory(clock: Clock) -> ChatFactory:
    limits = Limits(rate=0, join_timeout=0, grace=60)
    return ChatFactory(max_users=5, limits=limits, clock=clock)


@pytest.fixture
def connect(factory: ChatFactory) -> Connect:
    return connector(factory)


# The store


def test_local_history_is_bounded_and_replays_oldest_first() -> None:
    history = LocalHistory(3)
    history.keep(1.0, "BCST", "a", ["one", "two"])
    history.keep(2.0, "ME", "b", ["waves"])
    assert history.recent(3) == [(1.0, "BCST", "a", "one"), (1.0, "BCST", "a", "two"),
                                 (2.0, "ME", "b", "waves")]  # fmt: skip
    history.keep(3.0, "BCST", "c", ["four", "five"])
    assert history.recent(3) == [(2.0, "ME", "b", "waves"), (3.0, "BCST", "c", "four"),
                                 (3.0, "BCST", "c", "five")]  # fmt: skip
    assert history.recent(1) == [(3.0, "BCST", "c", "five")]


@given(
    st.integers(min_value=1, max_value=6),
    st.lists(st.lists(st.text(max_size=2), min_size=1, max_size=5), max_size=12),
    st.integers(min_value=1, max_value=6),
)
def test_local_history_keeps_exactly_the_last_size(
    size: int, rows: list[list[str]], count: int
) -> None:
    history, model = LocalHistory(size), []
    for when, texts in enumerate(rows):
        history.keep(float(when), "BCST", "a", texts)
        model += [(float(when), "BCST", "a", text) for text in texts]
    kept = model[-size:]
    assert history.recent(size) == kept
    if count <= size:
        assert history.recent(count) == kept[-count:]
    # At most a row more than size is held, whatever the rows.
    assert sum(len(row[3]) for row in history._rows) < size + 5


def test_a_history_of_zero_keeps_nothing() -> None:
    history = LocalHistory(0)
    history.keep(1.0, "BCST", "a", ["one"])
    assert history.recent(0) == []


@pytest.mark.parametrize(("rest", "count"), [("", 50), ("1", 1), ("50", 50), ("007", 7)])
def test_wanted_counts(rest: str, count: int) -> None:
    assert wanted(rest, 50) == count


@pytest.mark.parametrize(
    "rest", ["0", "-1", "+3", "51", "ten", "1.5", "1 2", "9" * 5000, "\uff13", "\u00b2", "0x10"]
)
def test_wanted_refuses_anything_else(rest: str) -> None:
    with pytest.raises(ValueError, match=r"HISTORY \[<count>\], a whole number from 1 to 50"):
        wanted(rest, 50)


def test_with_no_history_only_a_bare_history_is_served() -> None:
    assert wanted("", 0) == 0
    with pytest.raises(ValueError, match="keeps no broadcasts"):
        wanted("1", 0)


@given(
    st.floats(min_value=0, max_value=2**40, allow_nan=False),
    st.sampled_from(["BCST", "ME"]),
    st.from_regex(r"[A-Za-z0-9]{1,32}", fullmatch=True),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1),
)
def test_an_entry_survives_its_redis_form(when: float, verb: str, sender: str, text: str) -> None:
    assert decode_entry(encode_entry((when, verb, sender, text))) == (when, verb, sender, text)


# HISTORY


def test_broadcasts_and_actions_are_replayed_on_request_only(
    connect: Connect, logs: Sequence[LogEvent]
) -> None:
    alice, bob = connect("alice"), connect("bob")
    assert alice.send("BCST hello everyone") == ["OK BCST 1"]
    assert bob.lines() == ["BCST alice: hello everyone"]
    assert bob.send("ME waves") == ["OK ME 1"]
    assert alice.lines() == ["* bob waves"]
    assert alice.send("MESG bob a secret") == ["OK MESG bob delivered"]
    assert bob.lines() == ["MESG alice: a secret"]
    carol = connect("carol")
    assert carol.lines() == []  # nothing replayed unasked
    assert carol.send("HISTORY") == [
        f"HIST {STAMP} alice: hello everyone",
        f"HIST {STAMP} * bob waves",
        "OK HISTORY 2",
    ]
    assert logged(logs, "carol asked for the history: 2 broadcasts replayed")
    assert carol.send("history 1") == [f"HIST {STAMP} * bob waves", "OK HISTORY 1"]


def test_each_broadcast_is_kept_once_whatever_its_recipients(
    connect: Connect, factory: ChatFactory, clock: Clock
) -> None:
    alice, *_ = [connect(name) for name in ("alice", "bob", "carol", "dave")]
    alice.send(b"BCST one\r\nME two\r\nBCST three\r\nBCST four\r\n")
    clock.advance(61)
    alice.send("BCST five")
    assert factory.history.recent(50) == [
        (NOW, "BCST", "alice", "one"),
        (NOW, "ME", "alice", "two"),
        (NOW, "BCST", "alice", "three"),
        (NOW, "BCST", "alice", "four"),
        (NOW + 61, "BCST", "alice", "five"),
    ]
    assert alice.send("HISTORY 2") == [
        f"HIST {STAMP} alice: four",
        "HIST 2026-12-01T22:56:21Z alice: five",
        "OK HISTORY 2",
    ]


def test_the_server_keeps_only_the_last_n(clock: Clock) -> None:
    factory = ChatFactory(limits=Limits(rate=0), clock=clock, history=LocalHistory(3))
    alice, bob = Client(factory, 1), Client(factory, 2)
    assert alice.lines()[1].endswith(
        "Type HELP for the commands, HISTORY for the last 3 broadcasts."
    )
    alice.send("JOIN alice")
    bob.send("JOIN bob")
    for i in range(5):
        alice.send(f"BCST {i}")
    bob.lines()
    assert bob.send("HISTORY") == [f"HIST {STAMP} alice: {i}" for i in (2, 3, 4)] + ["OK HISTORY 3"]
    assert bob.send("HISTORY 4") == [
        (
            "ERR Usage: HISTORY [<count>], a whole number from 1 to 3: "
            "the server keeps the last 3 broadcasts"
        )
    ]


def test_an_empty_history(connect: Connect) -> None:
    assert connect("alice").send("HISTORY") == ["OK HISTORY 0"]


@pytest.mark.parametrize("count", ["0", "-1", "abc", "1.5", "99999999999999999999", "+3", "1 2"])
def test_a_bad_count_gets_a_clear_reply(connect: Connect, count: str) -> None:
    alice = connect("alice")
    reply = alice.send(f"HISTORY {count}")
    assert len(reply) == 1 and reply[0].startswith(USAGE), reply
    assert alice.send("HISTORY") == ["OK HISTORY 0"]  # and the connection goes on


def test_history_zero_keeps_nothing_and_says_so(clock: Clock) -> None:
    factory = ChatFactory(limits=Limits(rate=0), clock=clock, history=LocalHistory(0))
    alice = Client(factory, 1)
    assert alice.lines()[1] == (
        "INFO Usernames are 1 to 32 ASCII letters and digits. Type HELP for the commands. "
        "No broadcasts are kept."
    )
    alice.send("JOIN alice")
    other = Client(factory, 2)
    other.lines()
    other.send("JOIN bob")
    assert alice.send("BCST not kept") == ["OK BCST 1"]
    assert alice.send("ME neither") == ["OK ME 1"]
    assert other.lines() == ["BCST alice: not kept", "* alice neither"]
    assert other.send("HISTORY") == ["INFO This server keeps no broadcasts.", "OK HISTORY 0"]
    assert other.send("HISTORY 1") == ["ERR Usage: HISTORY: this server keeps no broadcasts"]
    assert "INFO History: no broadcasts are kept" in other.send("STATUS")


@pytest.mark.parametrize("line", ["HISTORY", "HISTORY 5", "history x", "ME waves", "me"])
def test_history_and_me_before_join_are_unregistered(connect: Connect, line: str) -> None:
    assert connect().send(line) == [
        "ERR Unregistered User: register first with JOIN <username>; HELP lists the commands"
    ]


def test_greeting_and_status_say_how_much_is_kept(connect: Connect) -> None:
    alice = connect("alice")
    assert "INFO History: the last 50 broadcasts are kept; HISTORY replays them" in alice.send(
        "STATUS"
    )
    alice.send("MODE MACHINE")
    assert "STAT history 50" in alice.send("STATUS")


def test_machine_format(connect: Connect) -> None:
    bot, alice = connect(), connect("alice")
    bot.send("MODE MACHINE")
    assert bot.send("JOIN bot")[0].startswith("OK JOIN bot 2 5 ")
    assert alice.send("BCST hi there") == ["OK BCST 1"]
    assert alice.send("ME waves at  bot") == ["OK ME 1"]
    assert bot.lines() == ["BCST alice: hi there", "ACTION alice waves at  bot"]
    assert bot.send("ME beeps") == ["OK ME 1 0"]
    assert alice.lines() == ["* bot beeps"]
    assert bot.send("HISTORY") == [
        f"HIST {STAMP} BCST alice hi there",
        f"HIST {STAMP} ME alice waves at  bot",
        f"HIST {STAMP} ME bot beeps",
        "OK HISTORY 3",
    ]
    assert bot.send("HISTORY 0") == ["ERR USAGE"]
    assert bot.send("ME") == ["ERR USAGE"]


def test_a_replayed_line_cannot_pass_for_a_reply_or_a_live_message(connect: Connect) -> None:
    mallory, bob = connect("mallory"), connect("bob")
    for forged in ("OK HISTORY 0", "BCST alice: hi", "ERR Usage: x"):
        mallory.send(f"BCST {forged}")
    mallory.send("ME \x07rings\r\nOK HISTORY 9")  # a line break ends the line: two commands
    bob.lines()
    assert bob.send("HISTORY") == [
        f"HIST {STAMP} mallory: OK HISTORY 0",
        f"HIST {STAMP} mallory: BCST alice: hi",
        f"HIST {STAMP} mallory: ERR Usage: x",
        f"HIST {STAMP} * mallory rings",
        "OK HISTORY 4",
    ]


# ME


def test_an_action_is_a_broadcast(
    connect: Connect, factory: ChatFactory, logs: Sequence[LogEvent]
) -> None:
    alice, bob, carol = connect("alice"), connect("bob"), connect("carol")
    assert alice.send("me waves hello") == ["OK ME 2"]
    assert alice.lines() == []  # never to the sender
    assert bob.lines() == carol.lines() == ["* alice waves hello"]
    assert logged(logs, "ME from alice reached 2 users")
    assert factory.stats.commands["ME"] == 1
    assert factory.stats.relayed["bcst"] == 2


@pytest.mark.parametrize("line", [b"ME\r\n", b"ME   \r\n", b"ME \x1b\x07\r\n", b"me\t\r\n"])
def test_an_empty_action_is_a_usage_error(connect: Connect, line: bytes) -> None:
    alice, bob = connect("alice"), connect("bob")
    assert alice.send(line) == ["ERR Usage: ME <text>"]
    assert bob.lines() == []
    assert alice.send("HISTORY") == ["OK HISTORY 0"]


def test_an_action_is_held_for_an_away_user_in_their_format(connect: Connect) -> None:
    alice, bob, bot = connect("alice"), connect("bob"), connect()
    bot.send("MODE MACHINE")
    bot_token = bot.send("JOIN bot")[0].split()[-1]
    bob.transport.loseConnection()
    bot.transport.loseConnection()
    assert alice.send("ME is back") == ["OK ME 2 (2 of them away, held for them)"]
    back = connect()
    assert back.send(f"JOIN bob {bob.token}")[0] == "* alice is back"
    machine = connect()
    machine.send("MODE MACHINE")
    assert machine.send(f"JOIN bot {bot_token}")[0] == "ACTION alice is back"


def test_a_row_of_broadcasts_and_actions_keeps_its_order(connect: Connect) -> None:
    alice, bob = connect("alice"), connect("bob")
    alice.send(b"BCST one\r\nBCST two\r\nME three\r\nME four\r\nBCST five\r\n")
    assert bob.lines() == [
        "BCST alice: one",
        "BCST alice: two",
        "* alice three",
        "* alice four",
        "BCST alice: five",
    ]
    assert alice.send("HISTORY") == [
        f"HIST {STAMP} alice: one",
        f"HIST {STAMP} alice: two",
        f"HIST {STAMP} * alice three",
        f"HIST {STAMP} * alice four",
        f"HIST {STAMP} alice: five",
        "OK HISTORY 5",
    ]


def test_a_row_of_actions_reaches_readers_and_those_not_reading_in_their_format(
    connect: Connect,
) -> None:
    alice, bob, bot = connect("alice"), connect("bob"), connect()
    bot.send("MODE MACHINE")
    bot.send("JOIN bot")
    bot.protocol.pauseProducing()  # its transport is full: it gets each line on its own
    assert alice.send(b"ME one\r\nme two\r\nME\tthree\r\n") == ["OK ME 2"] * 3
    assert bob.lines() == ["* alice one", "* alice two", "* alice three"]
    bot.protocol.resumeProducing()
    assert bot.lines() == ["ACTION alice one", "ACTION alice two", "ACTION alice three"]
    assert [entry[1:] for entry in alice.protocol.server.history.recent(3)] == [
        ("ME", "alice", "one"),
        ("ME", "alice", "two"),
        ("ME", "alice", "three"),
    ]


# Over real sockets


@pytest.mark.usefixtures("time_limit")
def test_history_and_actions_over_real_sockets(start_server: StartServer) -> None:
    server = start_server("--history", "3")
    alice, bob = SocketClient(server.port), SocketClient(server.port)
    alice.join("alice")
    bob.join("bob")
    for i in range(4):
        assert alice.expect_reply(f"BCST message {i}", "OK BCST 1")
        assert bob.read_line() == f"BCST alice: message {i}"
    assert bob.expect_reply("ME waves", "OK ME 1")
    assert alice.read_line() == "* bob waves"
    assert bob.expect_reply("ME", "ERR Usage: ME <text>")
    alice.expect_reply("MESG bob private", "OK MESG bob delivered")
    assert bob.read_line() == "MESG alice: private"

    carol = SocketClient(server.port, greeting=False)
    assert carol.read_line() == "INFO Welcome to chat. Register with: JOIN <username>"
    assert carol.read_line().endswith(
        "Type HELP for the commands, HISTORY for the last 3 broadcasts."
    )
    assert carol.command("HISTORY")[0].startswith("ERR Unregistered User")
    carol.join("carol")
    carol.assert_silent()  # nothing unasked
    replay = carol.command("HISTORY")
    stamp = r"HIST \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "
    assert [re.sub(stamp, "HIST T ", line) for line in replay] == [
        "HIST T alice: message 2",
        "HIST T alice: message 3",
        "HIST T * bob waves",
        "OK HISTORY 3",
    ]
    for bad in ("0", "-2", "4", "lots", "123456789012345678901234567890"):
        assert carol.expect_reply(f"HISTORY {bad}", "ERR Usage: HISTORY [<count>]")
    carol.sendline("MODE MACHINE")
    assert carol.read_line() == "OK MODE MACHINE 2"
    assert re.sub(stamp, "HIST T ", carol.command("HISTORY 1")[0]) == "HIST T ME bob waves"
    assert "STAT history 3" in carol.command("STATUS")
    server.wait_for_log("ME from bob reached 1 users")
    server.wait_for_log("carol asked for the history: 3 broadcasts replayed")


@pytest.mark.usefixtures("time_limit")
def test_history_zero_over_real_sockets(start_server: StartServer) -> None:
    server = start_server("--history", "0")
    alice = SocketClient(server.port, greeting=False)
    alice.read_line()
    assert alice.read_line().endswith("Type HELP for the commands. No broadcasts are kept.")
    alice.join("alice")
    assert alice.expect_reply("BCST into the void", "OK BCST 0")
    assert alice.command("HISTORY") == ["INFO This server keeps no broadcasts.", "OK HISTORY 0"]
    assert alice.expect_reply("HISTORY 1", "ERR Usage: HISTORY: this server keeps no broadcasts")


# The option


def test_the_history_option() -> None:
    def size(*args: str) -> int:
        options = Options()
        options.parseOptions(list(args))
        return makeService(options).factory.history.size

    assert size() == 50
    assert size("--history", "7") == 7
    assert size("--history", "0") == 0
    for bad in ("-1", "lots"):
        with pytest.raises(usage.UsageError):
            Options().parseOptions(["--history", bad])
