"""
Presence notices (NOTICES), away (AWAY, BACK), idle time in LIST, and
IGNORE / UNIGNORE: protocol-level tests with a Clock, then over real
sockets against a real server, and across the nodes of a real cluster.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import StartServer, assert_clean_log
from test_cluster import Nodes, Redis, nodes, redis, wait_until  # noqa: F401  (fixtures)
from twisted.internet.task import Clock

from chat.core import presence
from chat.core.away import AwaySession
from chat.core.limits import Limits
from chat.core.personal import MAX_AWAY, MAX_IGNORED
from chat.core.room import Delivery, LocalRoom
from chat.server.factory import ChatFactory
from chat.server.outbox import LATER
from harness import Client, connector, logged
from server import ChatServer
from server import Client as SocketClient

Connect = Callable[..., Client]


@pytest.fixture
def factory(clock: Clock) -> ChatFactory:
    limits = Limits(max_outbound=1000, rate=0, join_timeout=0)
    return ChatFactory(max_users=60, limits=limits, clock=clock)


@pytest.fixture
def connect(factory: ChatFactory) -> Connect:
    plain = connector(factory)

    def connect(name: str | None = None, host: str = "10.0.0.1") -> Client:
        client = plain(name, host)
        client.presence = True  # these tests read the notices
        return client

    return connect


def with_grace(clock: Clock) -> ChatFactory:
    """A server that holds a dropped user's name for a resume for 60 s."""
    return ChatFactory(max_users=5, limits=Limits(rate=0, join_timeout=0, grace=60), clock=clock)


UNREGISTERED = "ERR Unregistered User: register first with JOIN <username>; HELP lists the commands"


# Presence notices


def test_notices_wait_a_little_for_what_follows_but_nothing_overtakes_them(
    connect: Connect, clock: Clock
) -> None:
    """
    A busy room's joins and leaves cost an idle user one write per
    L{LATER}, not one each; a message to that user goes at the end of its
    turn as always, with the notices before it in front of it.
    """
    ann = connect("ann")
    ann.lines()
    writes = []
    ann.transport.write = writes.append  # type: ignore[method-assign]
    factory = ann.protocol.server
    for number in range(10):  # a storm: join and leave, one session a turn
        visitor = Client(factory, 2000 + number)  # read nothing: that would flush
        visitor.protocol.dataReceived(b"JOIN v%d\r\nQUIT\r\n" % number)
        clock.advance(0)  # the end of the turn
    assert writes == []
    clock.advance(LATER)
    assert len(writes) == 1
    assert writes[0].decode().splitlines() == [
        line for number in range(10) for line in (f"INFO v{number} joined", f"INFO v{number} left")
    ]
    del writes[:]
    bob = Client(factory, 3000)
    bob.protocol.dataReceived(b"JOIN bob\r\n")
    clock.advance(0)
    assert writes == []  # the notice waits...
    bob.protocol.dataReceived(b"MESG ann hi\r\n")
    clock.advance(0)  # ...not the message, which takes it along, in order
    assert writes == [b"INFO bob joined\r\nMESG bob: hi\r\n"]
    clock.advance(LATER)
    assert len(writes) == 1


def test_join_quit_and_drop_are_told_to_the_others_not_to_the_user(connect, logs) -> None:
    ann, bob = connect("ann"), connect("bob")
    assert ann.lines() == ["INFO bob joined"]
    assert bob.lines() == []  # not told of its own JOIN
    cy = connect("cy")
    assert ann.lines() == bob.lines() == ["INFO cy joined"]
    assert cy.send("QUIT") == ["OK QUIT Bye"]
    assert ann.lines() == bob.lines() == ["INFO cy left"]
    bob.transport.loseConnection()
    assert ann.lines() == ["INFO bob lost the connection"]
    # Status lines exist already for these events: nothing more is logged.
    assert sum("cy" in str(event.get("name")) for event in logs) == 2  # joined, quit


def test_end_of_input_without_quit_is_leaving(connect) -> None:
    ann, script = connect("ann"), connect("script")
    ann.lines()
    script.protocol.readConnectionLost()
    assert ann.lines() == ["INFO script left"]


def test_notices_off_and_on_for_ones_own_connection(connect, logs) -> None:
    ann = connect("ann")
    assert ann.send("notices off") == ["OK NOTICES off: no more notices"]
    assert logged(logs, "ann turned notices off")
    connect("bob").send("QUIT")
    assert ann.lines() == []
    assert ann.send("NOTICES ON") == ["OK NOTICES on: users joining and leaving are shown"]
    connect("cy")
    assert ann.lines() == ["INFO cy joined"]
    assert ann.send("NOTICES") == ["ERR Usage: NOTICES ON | NOTICES OFF"]
    assert ann.send("NOTICES maybe") == ["ERR Usage: NOTICES ON | NOTICES OFF"]


def test_new_commands_before_join_are_unregistered(connect) -> None:
    client = connect()
    for line in ("NOTICES ON", "AWAY lunch", "BACK", "IGNORE bob", "IGNORE", "UNIGNORE bob"):
        assert client.send(line) == [UNREGISTERED]


def test_unregistered_connections_get_no_notices(connect) -> None:
    lurker = connect()
    connect("ann").send("QUIT")
    assert lurker.lines() == []


def test_machine_mode_gets_notices_only_when_asked(connect) -> None:
    bot = connect()
    assert bot.send("MODE MACHINE") == ["OK MODE MACHINE 2"]
    bot.send("JOIN bot")
    connect("ann").send("QUIT")
    assert bot.lines() == []
    assert bot.send("NOTICES ON") == ["OK NOTICES ON"]
    bob = connect("bob")
    assert bot.lines() == ["PRESENCE JOIN bob"]
    bob.transport.loseConnection()
    assert bot.lines() == ["PRESENCE LOST bob"]
    connect("cy").send("QUIT")
    assert bot.lines() == ["PRESENCE JOIN cy", "PRESENCE QUIT cy"]
    assert bot.send("NOTICES OFF") == ["OK NOTICES OFF"]
    connect("dan")
    assert bot.lines() == []
    # The choice holds whatever the format: back to human, still off.
    assert bot.send("MODE HUMAN")[0].startswith("OK MODE HUMAN")
    connect("eve")
    assert bot.lines() == []


def test_switching_to_machine_mode_stops_the_default_human_notices(connect) -> None:
    ann = connect("ann")
    ann.send("MODE MACHINE")
    connect("bob")
    assert ann.lines() == []
    ann.send("MODE HUMAN")
    connect("cy")
    assert ann.lines() == ["INFO cy joined"]


def test_idle_users_and_flooders_are_removed_with_a_reason(clock: Clock) -> None:
    limits = Limits(rate=1, burst=1, max_backlog=20, join_timeout=0, idle_timeout=30)
    factory = ChatFactory(max_users=5, limits=limits, clock=clock)
    connect = connector(factory)
    watcher, bot = connect("watcher"), connect()
    watcher.presence = bot.presence = True
    bot.send("MODE MACHINE")
    clock.advance(1)
    bot.send("JOIN bot")
    clock.advance(1)
    bot.send("NOTICES ON")
    sleepy = connect("sleepy")
    clock.advance(1)
    assert watcher.lines() == ["INFO bot joined", "INFO sleepy joined"]
    assert bot.lines() == ["PRESENCE JOIN sleepy"]
    flooder = connect("flooder")
    flooder.protocol.dataReceived(b"LIST\r\n" * 10)
    assert flooder.closed
    assert watcher.lines()[-1] == "INFO flooder was disconnected by the server: Flooding"
    assert bot.lines()[-1] == "PRESENCE REMOVED flooder FLOODING"
    heard: list[str] = []
    for _ in range(6):
        heard += watcher.send("HELP") + bot.send("HELP")
        clock.advance(5)
        factory.checkIdle()
    assert sleepy.lines()[-1] == "BYE Idle Timeout: nothing sent for 30 seconds"
    heard += watcher.lines() + bot.lines()
    assert "INFO sleepy was disconnected by the server: Idle Timeout" in heard
    assert "PRESENCE REMOVED sleepy IDLE_TIMEOUT" in heard


def test_a_slow_consumer_is_removed_with_a_notice(connect) -> None:
    ann, slow = connect("ann"), connect("slow")
    ann.lines()
    slow.protocol.pauseProducing()
    got = [line for _ in range(30) for line in ann.send("BCST " + "x" * 50)]
    assert slow.closed
    assert "INFO slow was disconnected by the server: Slow Consumer" in got


def test_the_removal_hook_for_other_code(connect) -> None:
    """L{Session.remove}: what a moderator's KICK will call, with its reason."""
    ann, dan = connect("ann"), connect("dan")
    ann.lines()
    dan.protocol.session.remove("Kicked", "by ann: spam", "ann")
    assert dan.lines() == ["BYE Kicked: by ann: spam"]
    assert ann.lines() == ["INFO dan was disconnected by the server: Kicked"]


def test_grace_period_notices(clock: Clock) -> None:
    limits = Limits(rate=0, join_timeout=0, grace=60, max_held=3)
    factory = ChatFactory(max_users=5, limits=limits, clock=clock)
    connect = connector(factory)
    ann, bob = connect("ann"), connect("bob")
    ann.presence = True
    ann.lines()
    token = bob.token
    bob.transport.loseConnection()
    assert ann.lines() == [
        "INFO bob lost the connection; the name is held for a resume for 60 seconds"
    ]
    back = connect()
    back.send(f"JOIN bob {token}")
    assert ann.lines() == ["INFO bob is back, resuming the session"]
    back.transport.loseConnection()
    ann.lines()
    clock.advance(60)
    assert ann.lines() == ["INFO bob did not come back; the name is free"]
    ann.send("MODE MACHINE")
    ann.send("NOTICES ON")
    cy = connect("cy")
    cy.transport.loseConnection()
    assert ann.lines() == ["PRESENCE JOIN cy", "PRESENCE HELD cy 60"]
    clock.advance(60)
    assert ann.lines() == ["PRESENCE EXPIRED cy"]


def test_a_notice_is_made_once_and_shared_by_every_recipient() -> None:
    """One bytes object for all; a member who turned notices off is skipped."""

    class Mailbox:
        away = False
        prefs = None
        lastInput = None

        def __init__(self, notices: int) -> None:
            self.name: str | None = None
            self.notices = notices
            self.received: list[bytes] = []

        def deliver(self, data: bytes) -> Delivery:
            self.received.append(data)
            return Delivery.DELIVERED

        def ready(self, size: int) -> bool:
            return True

        def bye(self, reason: str, details: str) -> None:
            raise AssertionError("never")

    room = LocalRoom(5)
    sender, human, other, machine, off = (
        Mailbox(presence.HUMAN),
        Mailbox(presence.HUMAN),
        Mailbox(presence.HUMAN),
        Mailbox(presence.MACHINE),
        Mailbox(presence.OFF),
    )
    for i, member in enumerate((sender, human, other, machine, off)):
        room.join(f"m{i}", member)
    lines = presence.notice(presence.Kind.JOIN, "m0")
    assert room.announce(lines, sender) == 3
    assert sender.received == off.received == []
    assert human.received[0] is other.received[0] is lines[1]
    assert machine.received == [b"PRESENCE JOIN m0\r\n"]
    assert lines[1] == b"INFO m0 joined\r\n"


def test_presence_deliveries_are_counted(connect, factory) -> None:
    connect("ann")
    connect("bob")
    connect("cy").send("QUIT")
    assert factory.stats.relayed["presence"] == 1 + 2 + 2


# Away and idle


def test_away_is_told_in_the_receipt_and_the_message_still_delivered(connect, logs) -> None:
    ann, bob = connect("ann"), connect("bob")
    assert bob.send("AWAY  at\tlunch ") == ["OK AWAY you are away: at lunch"]
    assert logged(logs, "bob is away: 'at lunch'")
    ann.lines()
    assert ann.send("MESG bob are you there?") == ["OK MESG bob delivered (away: at lunch)"]
    assert bob.lines() == ["MESG ann: are you there?"]
    ann.send("MODE MACHINE")
    assert ann.send("MESG bob still?") == ["OK MESG bob delivered AWAY at lunch"]
    assert ann.send("LIST") == ["USER ann here 0 -", "USER bob here 0 AWAY at lunch", "OK LIST 2"]
    ann.send("MODE HUMAN")
    assert ann.send("LIST") == ["USER ann", "USER bob (away: at lunch)", "OK LIST 2"]
    bob.lines()
    assert bob.send("BCST all") == ["OK BCST 1"]  # away users still talk
    assert bob.send("back") == ["OK BACK you are back"]
    assert logged(logs, "bob is back")
    assert ann.lines() == ["BCST bob: all"]
    assert ann.send("MESG bob hi") == ["OK MESG bob delivered"]
    assert bob.lines() == ["MESG ann: hi"]
    assert bob.send("BACK") == ["OK BACK you were not away"]


def test_away_without_a_message_is_back(connect) -> None:
    bob = connect("bob")
    bob.send("AWAY brb")
    assert bob.send("AWAY") == ["OK AWAY you are back"]
    assert bob.send("AWAY") == ["OK AWAY you were not away"]
    bob.send("MODE MACHINE")
    assert bob.send("AWAY gone fishing") == ["OK AWAY on gone fishing"]
    assert bob.send("BACK") == ["OK BACK off"]


def test_a_long_away_message_is_cut_and_cleaned(connect) -> None:
    bob = connect("bob")
    reply = bob.send(b"AWAY \x1b[31m" + "é".encode() * 500 + b"\x07\r\n")
    # The escape sequence is edited out whole, as a terminal would; BEL removed.
    assert reply == [f"OK AWAY you are away: {'é' * MAX_AWAY} (cut to {MAX_AWAY} characters)"]
    line = bob.send("LIST")[0]
    assert "\x1b" not in line and "\x07" not in line
    assert len(line) < MAX_AWAY + 40


def test_list_shows_idle_time(connect, clock) -> None:
    ann, bob = connect("ann"), connect("bob")
    clock.advance(75)
    ann.send("HELP")
    assert ann.send("LIST") == ["USER ann", "USER bob (idle 75s)", "OK LIST 2"]
    bob.send("AWAY tea")
    clock.advance(100)
    # The one who lists has just sent a command: never idle.
    assert ann.send("LIST") == ["USER ann", "USER bob (idle 100s; away: tea)", "OK LIST 2"]
    ann.send("MODE MACHINE")
    clock.advance(2)
    assert ann.send("LIST") == ["USER ann here 0 -", "USER bob here 102 AWAY tea", "OK LIST 2"]


def test_held_users_are_marked_apart_from_away_ones(clock: Clock) -> None:
    connect = connector(with_grace(clock))
    ann, bob = connect("ann"), connect("bob")
    bob.send("AWAY lunch")
    token = bob.token
    bob.transport.loseConnection()
    clock.advance(59)
    assert ann.send("LIST") == [
        "USER ann",
        "USER bob (disconnected, held for a resume; away: lunch)",
        "OK LIST 2",
    ]
    ann.send("MODE MACHINE")
    assert ann.send("LIST")[1] == "USER bob away 59 AWAY lunch"
    # The away message survives the resume.
    back = connect()
    back.send(f"JOIN bob {token}")
    assert ann.send("MESG bob hi") == ["OK MESG bob delivered AWAY lunch"]


def test_away_and_idle_in_session_objects_stay_bounded(connect) -> None:
    bob = connect("bob")
    bob.send("AWAY " + "x" * 3000)
    assert len(bob.protocol.session.prefs.away) == MAX_AWAY
    bob.send("BACK")
    assert bob.protocol.session.prefs is None  # nothing set: nothing kept


# IGNORE


def test_ignored_users_reach_you_no_more_and_are_not_told(connect, logs) -> None:
    ann, bob, cy = connect("ann"), connect("bob"), connect("cy")
    ann.lines()
    bob.lines()
    assert ann.send("IGNORE BOB") == ["OK IGNORE bob: nothing bob writes reaches you"]
    assert logged(logs, "ann ignores bob")
    assert bob.send("MESG ann hello") == ["OK MESG ann delivered"]
    assert bob.send("BCST hello all") == ["OK BCST 2"]
    bob.send(b"BCST one\r\nBCST two\r\nMESG ann three\r\n")  # a run
    assert cy.lines() == ["BCST bob: hello all", "BCST bob: one", "BCST bob: two"]
    assert ann.lines() == []
    assert logged(logs, "MESG bob -> ann: ignored")
    assert cy.send("MESG ann hi") == ["OK MESG ann delivered"]
    assert ann.lines() == ["MESG cy: hi"]
    assert ann.send("IGNORE") == ["OK IGNORE 1 ignored: bob"]
    ann.send("MODE MACHINE")
    assert ann.send("IGNORE") == ["OK IGNORE 1 bob"]
    assert ann.send("UNIGNORE bob") == ["OK UNIGNORE bob"]
    assert ann.send("IGNORE") == ["OK IGNORE 0"]
    ann.send("MODE HUMAN")
    assert ann.send("IGNORE") == ["OK IGNORE 0 ignored"]
    assert bob.send("MESG ann back") == ["OK MESG ann delivered"]
    assert ann.lines() == ["MESG bob: back"]
    assert ann.protocol.session.prefs is None


def test_ignore_holds_for_the_name_after_it_rejoins(connect) -> None:
    ann, bob = connect("ann"), connect("bob")
    ann.send("IGNORE bob")
    bob.send("QUIT")
    again = connect("Bob")
    again.send("BCST it is me again")
    assert ann.lines() == ["INFO bob left", "INFO Bob joined"]


def test_bad_ignores(connect) -> None:
    ann = connect("ann")
    assert ann.send("IGNORE ANN") == ["ERR Usage: you cannot ignore yourself"]
    assert ann.send("IGNORE Ann") == ["ERR Usage: you cannot ignore yourself"]
    assert ann.send("IGNORE nobody") == ["ERR Unknown Recipient: nobody named nobody is registered"]
    assert ann.send("IGNORE bob!") == [
        "ERR Usage: IGNORE <username>, where a username is 1 to 32 ASCII letters and digits"
    ]
    assert ann.send("IGNORE bob cy")[0].startswith("ERR Usage: IGNORE <username>")
    assert ann.send("UNIGNORE")[0].startswith("ERR Usage: UNIGNORE <username>")
    assert ann.send("UNIGNORE nobody") == ["OK UNIGNORE nobody: you were not ignoring nobody"]
    ann.send("MODE MACHINE")
    assert ann.send("IGNORE nobody") == ["ERR UNKNOWN_RECIPIENT nobody"]
    assert ann.protocol.session.prefs is None


def test_the_ignore_list_is_bounded(connect) -> None:
    ann = connect("ann")
    ann.send("NOTICES OFF")
    for i in range(MAX_IGNORED + 1):
        connect(f"u{i}")
    for i in range(MAX_IGNORED):
        assert ann.send(f"IGNORE u{i}")[0].startswith("OK IGNORE")
    assert ann.send(f"IGNORE u{MAX_IGNORED}") == [
        f"ERR Usage: you ignore {MAX_IGNORED} users, the most; UNIGNORE one first"
    ]
    assert ann.send("IGNORE u0")[0].startswith("OK IGNORE u0")  # already there: fine
    assert ann.send("UNIGNORE u0")[0].startswith("OK UNIGNORE u0")
    assert ann.send(f"IGNORE u{MAX_IGNORED}")[0].startswith("OK IGNORE")


def test_an_ignoring_user_held_for_a_resume_holds_nothing_from_the_ignored(clock: Clock) -> None:
    factory = with_grace(clock)
    connect = connector(factory)
    ann, bob = connect("ann"), connect("bob")
    ann.send("IGNORE bob")
    token = ann.token
    ann.transport.loseConnection()
    assert bob.send("BCST while you were out") == ["OK BCST 1 (1 of them away, held for them)"]
    assert bob.send("MESG ann psst")[0].startswith("OK MESG ann held")
    session = factory.room.find("ann")
    assert isinstance(session, AwaySession) and not session.held
    back = connect()
    assert back.send(f"JOIN ann {token}")[-1].startswith("OK JOIN ann")


# Over real sockets


def test_presence_away_and_ignore_over_real_sockets(start_server: StartServer) -> None:
    server = start_server("--rate-limit", "0")
    ann, bot = SocketClient(server.port), SocketClient(server.port)
    ann.presence = bot.presence = True
    ann.join("ann")
    assert bot.command("MODE MACHINE") == ["OK MODE MACHINE 2"]
    assert bot.command("JOIN bot")[0].startswith("OK JOIN bot 2 10")
    assert ann.read_line() == "INFO bot joined"
    assert bot.command("NOTICES ON") == ["OK NOTICES ON"]
    bob = SocketClient(server.port)
    bob.join("bob")
    assert ann.read_line() == "INFO bob joined"
    assert bot.read_line() == "PRESENCE JOIN bob"
    assert bob.command("AWAY out for lunch") == ["OK AWAY you are away: out for lunch"]
    assert ann.command("MESG bob hi") == ["OK MESG bob delivered (away: out for lunch)"]
    assert bob.read_line() == "MESG ann: hi"
    listing = bot.command("LIST")
    assert [" ".join(line.split()[:3]) for line in listing[:2]] == [
        "USER ann here",
        "USER bot here",
    ]
    assert listing[2].startswith("USER bob here ") and listing[2].endswith(" AWAY out for lunch")
    assert bob.command("IGNORE bot") == ["OK IGNORE bot: nothing bot writes reaches you"]
    assert bot.command("BCST beep") == ["OK BCST 2 0"]
    assert ann.read_line() == "BCST bot: beep"
    assert bot.command("MESG bob beep") == ["OK MESG bob delivered AWAY out for lunch"]
    bob.assert_silent()
    assert bob.command("notices off") == ["OK NOTICES off: no more notices"]
    bob.abort()
    assert ann.read_line() == "INFO bob lost the connection"
    assert bot.read_line() == "PRESENCE LOST bob"
    assert bot.command("QUIT") == ["OK QUIT"]
    bot.expect_eof()
    assert ann.read_line() == "INFO bot left"
    assert ann.command("AWAY") == ["OK AWAY you were not away"]
    server.wait_for_log("MESG bot -> bob: ignored")


def test_bad_inputs_over_real_sockets(start_server: StartServer) -> None:
    server = start_server("--rate-limit", "0")
    stranger, ann = SocketClient(server.port), SocketClient(server.port)
    assert stranger.command("AWAY lunch") == [UNREGISTERED]
    assert stranger.command("IGNORE ann") == [UNREGISTERED]
    assert stranger.command("NOTICES OFF") == [UNREGISTERED]
    ann.join("ann")
    assert ann.command("IGNORE ann") == ["ERR Usage: you cannot ignore yourself"]
    assert ann.command("IGNORE ghost") == [
        "ERR Unknown Recipient: nobody named ghost is registered"
    ]
    reply = ann.command(b"AWAY " + b"\x07zz" * 1000)
    assert reply[0].startswith("OK AWAY you are away: zzzz") and "\x07" not in reply[0]
    assert reply[0].endswith(f"(cut to {MAX_AWAY} characters)")
    assert ann.command("NOTICES sometimes") == ["ERR Usage: NOTICES ON | NOTICES OFF"]
    assert ann.command("HELP")[-1] == "OK HELP -"


# In a cluster


def test_presence_reaches_every_node(nodes: Nodes) -> None:  # noqa: F811  (fixture)
    cluster = nodes(2)
    ann, bob = SocketClient(cluster[0].port), SocketClient(cluster[1].port)
    ann.presence = bob.presence = True
    ann.join("ann")
    bob.join("bob")
    assert ann.read_line() == "INFO bob joined"
    cy = SocketClient(cluster[0].port)
    cy.join("cy")
    assert ann.read_line() == bob.read_line() == "INFO cy joined"
    cy.quit()
    assert ann.read_line() == bob.read_line() == "INFO cy left"
    assert bob.command("MODE MACHINE") == ["OK MODE MACHINE 2"]
    assert bob.command("NOTICES ON") == ["OK NOTICES ON"]
    dan = SocketClient(cluster[0].port)
    dan.join("dan")
    dan.abort()
    assert bob.read_line() == "PRESENCE JOIN dan"
    assert bob.read_line() == "PRESENCE LOST dan"
    assert [ann.read_line() for _ in range(2)] == [
        "INFO dan joined",
        "INFO dan lost the connection",
    ]
    # Away and idle: known for this node's users; others' are listed by name.
    assert ann.command("AWAY lunch")[0].startswith("OK AWAY")
    assert bob.command("MESG ann hi") == ["OK MESG ann sent"]
    assert ann.read_line() == "MESG bob: hi"
    assert sorted(bob.list_names()) == ["ann here - -", "bob here 0 -"]
    wait_until(lambda: "USER ann (away: lunch)" in ann.command("LIST"), 5, "ann's LIST")
    # IGNORE across nodes: a MESG and a BCST from another node are not shown.
    assert ann.command("IGNORE bob")[0].startswith("OK IGNORE bob")
    assert bob.command("MESG ann psst") == ["OK MESG ann sent"]
    assert bob.command("BCST anyone") == ["OK BCST 1 0"]
    eve = SocketClient(cluster[1].port)
    eve.join("eve")
    assert ann.read_line() == "INFO eve joined"  # the first line ann gets after the join


def test_a_dead_nodes_users_are_announced_as_lost(
    redis: Redis,  # noqa: F811  (the fixture)
    start_server: StartServer,
    tmp_path: Path,
) -> None:
    survivor = start_server("--redis", redis.url, "--node-id", "survivor")
    doomed = ChatServer(tmp_path / "doomed.log", ["--redis", redis.url, "--node-id", "doomed"])
    try:
        for node in (survivor, doomed):
            node.wait_for_log("in sync at version")
        ann = SocketClient(survivor.port)
        ann.presence = True
        ann.join("ann")
        victim = SocketClient(doomed.port)
        victim.join("victim")
        assert ann.read_line() == "INFO victim joined"
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(10)
        assert ann.read_line(timeout=15) == "INFO victim lost the connection"
    finally:
        doomed.stop()
        assert_clean_log(doomed)
