"""
Moderation at protocol level, with a Clock: OPER and its backoff, KICK,
MUTE/UNMUTE, BAN/UNBAN of names and addresses, HELP, machine mode, the
bounded stores, the password hashes and the bans file.
(tests/test_moderation_sockets.py tells the same stories over real sockets.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogEvent

from chat.core import grammar
from chat.core.limits import Limits
from chat.core.passwords import (
    BadHash,
    Failures,
    backoff,
    hash_password,
    parse_hash,
    parse_operators,
)
from chat.core.room import Later, RoomUnavailable
from chat.core.sanctions import MAX_MINUTES, Sanction, Sanctions, file_text, read_file_text
from chat.server.factory import ChatFactory
from chat.server.moderation import BanFile, read_bans, write_atomically
from harness import GREETING, Client, connector, logged

Connect = Callable[..., Client]

PASSWORD = "correct horse"
FAST = 16  # scrypt's N for tests: the format and the check are the same, only cheaper


@pytest.fixture
def factory(clock: Clock) -> ChatFactory:
    factory = ChatFactory(max_users=5, limits=Limits(rate=0, join_timeout=0), clock=clock)
    factory.moderation.operators = parse_operators(
        f"# the operators\n\nroot {hash_password(PASSWORD, n=FAST)}\n"
    )
    return factory


@pytest.fixture
def connect(factory: ChatFactory) -> Connect:
    return connector(factory)


def operator(connect: Connect, name: str = "carol") -> Client:
    client = connect(name)
    assert client.send(f"OPER root {PASSWORD}") == [
        "OK OPER root: you are an operator now; HELP lists your commands"
    ]
    return client


# Before JOIN, and without the right


@pytest.mark.parametrize(
    "line", ["OPER root x", "KICK bob", "MUTE bob 5", "UNMUTE bob", "BAN bob 5", "UNBAN bob"]
)
def test_unregistered_user_before_join(connect: Connect, line: str) -> None:
    assert connect().send(line) == [
        "ERR Unregistered User: register first with JOIN <username>; HELP lists the commands"
    ]


@pytest.mark.parametrize(
    ("line", "verb"),
    [
        ("KICK bob spam", "KICK"),
        ("mute bob 5", "MUTE"),
        ("UNMUTE bob", "UNMUTE"),
        ("Ban bob 5", "BAN"),
        ("UNBAN bob", "UNBAN"),
    ],
)
def test_a_user_who_is_no_operator_is_refused(
    connect: Connect, factory: ChatFactory, line: str, verb: str
) -> None:
    alice, bob = connect("alice"), connect("bob")
    assert alice.send(line) == [
        f"ERR Not Operator: {verb} is for operators; OPER <name> <password> first"
    ]
    assert alice.send("MODE MACHINE")
    assert alice.send(line) == [f"ERR NOT_OPERATOR {verb}"]
    assert bob.lines() == []
    assert factory.moderation.counts["denied"] == 2
    assert factory.stats.errors[grammar.NOT_OPERATOR] == 2


def test_unknown_words_are_still_unknown_messages(connect: Connect) -> None:
    carol = operator(connect)
    assert carol.send("KICKS bob") == [
        "ERR Unknown Message: KICKS is not a command; HELP lists them"
    ]


# OPER


def test_oper_usage_and_a_server_without_operators(connect: Connect, clock: Clock) -> None:
    alice = connect("alice")
    assert alice.send("OPER") == ["ERR Usage: OPER <name> <password>"]
    assert alice.send("OPER root") == ["ERR Usage: OPER <name> <password>"]
    bare = connector(ChatFactory(limits=Limits(rate=0), clock=clock))("bob")
    assert bare.send("OPER root x") == ["ERR Not Operator: this server has no operators"]
    assert bare.send("HELP")[-2:] == [
        "INFO QUIT                    leave and close the connection",
        "OK HELP -",
    ]


def test_help_shows_oper_to_all_and_the_rest_to_operators(connect: Connect) -> None:
    alice = connect("alice")
    help_lines = alice.send("HELP")
    assert help_lines[-2:] == [
        f"INFO {grammar.OPER_HELP}",
        "OK HELP -",
    ]
    assert not any("KICK" in line for line in help_lines)
    carol = operator(connect)
    assert carol.send("HELP")[-7:] == [
        f"INFO {grammar.OPER_HELP}",
        *(f"INFO {line}" for line in grammar.OPERATOR_HELP),
        "OK HELP -",
    ]


def test_wrong_password_is_answered_late_and_logged(
    connect: Connect, clock: Clock, factory: ChatFactory, logs: Sequence[LogEvent]
) -> None:
    alice = connect("alice")
    # The answer waits for the backoff, and so does the input behind it.
    assert alice.send(b"OPER root guess\r\nLIST\r\n") == []
    clock.advance(0.9)
    assert alice.lines() == []
    clock.advance(0.1)
    assert alice.lines() == [
        (
            "ERR Wrong Password: that operator name and password do not match "
            "(answered after 1 seconds; each wrong try doubles the wait)"
        ),
        "USER alice",
        "OK LIST 1",
    ]
    assert logged(logs, "failed OPER as 'root' by alice from 10.0.0.1:", "(1 in a row)")
    assert alice.send("OPER nobody guess") == []  # an unknown name: the same answer
    clock.advance(1.9)
    assert alice.lines() == []
    clock.advance(0.1)
    assert alice.lines()[0].startswith("ERR Wrong Password: ")
    # Per address: another connection from there starts where it left off.
    again = connect("again")
    again.send("MODE MACHINE")
    again.send("OPER root guess")
    clock.advance(3.9)
    assert again.lines() == []
    clock.advance(0.1)
    assert again.lines() == ["ERR WRONG_PASSWORD 4.0"]
    # ... but not another address.
    other = connect("other", host="10.0.0.2")
    other.send("OPER root guess")
    clock.advance(1)
    assert other.lines()[0].startswith("ERR Wrong Password: ")
    # The right password is answered at once and forgets the address's failures.
    assert alice.send(f"OPER ROOT {PASSWORD}") == [
        "OK OPER root: you are an operator now; HELP lists your commands"
    ]
    assert factory.moderation.failures.count("10.0.0.1", clock.seconds()) == 0
    assert factory.moderation.counts["oper_failed"] == 4
    assert factory.moderation.counts["oper"] == 1
    assert logged(logs, "alice from 10.0.0.1:", "is now operator root")
    assert not logged(logs, "guess")
    assert not logged(logs, PASSWORD)


def test_a_client_cannot_queue_unbounded_attempts(clock: Clock) -> None:
    factory = ChatFactory(limits=Limits(rate=0, join_timeout=0, max_backlog=200), clock=clock)
    factory.moderation.operators = parse_operators(f"root {hash_password(PASSWORD, n=FAST)}")
    guesser = connector(factory)("guesser")
    assert guesser.send(b"".join(b"OPER root guess%d\r\n" % i for i in range(20))) == [
        "BYE Flooding: more than 200 bytes of commands waiting; send at most 0 lines per second"
    ]
    assert guesser.closed


def test_the_backoff_doubles_up_to_a_minute_and_is_bounded() -> None:
    assert [backoff(n) for n in (1, 2, 3, 7, 8, 100)] == [1, 2, 4, 60, 60, 60]
    failures = Failures()
    for i in range(5000):
        failures.failed(f"10.1.{i // 256}.{i % 256}", 0)
    assert len(failures) == 4096
    assert failures.count("10.1.0.0", 0) == 0  # the oldest forgotten first
    assert failures.count("10.1.19.135", 0) == 1
    assert failures.count("10.1.19.135", 3601) == 0  # and all after an hour


def test_operator_passwords() -> None:
    line = hash_password("s3cret pass", n=FAST)
    assert line.startswith("scrypt$16$8$1$")
    assert parse_hash(line).matches("s3cret pass")
    assert not parse_hash(line).matches("s3cret pasS")
    assert hash_password("s3cret pass", n=FAST) != line  # salted
    for bad in ("", "md5$x", "scrypt$3$8$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAA",
                "scrypt$1073741824$8$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAA",
                "scrypt$16$8$1$A$A", "scrypt$16$x$1$AAAA$AAAA"):  # fmt: skip
        with pytest.raises(BadHash):
            parse_hash(bad)
    with pytest.raises(ValueError, match="line 2: expected 'name hash'"):
        parse_operators(f"root {line}\nbob\n")
    with pytest.raises(ValueError, match="line 1: not a scrypt"):
        parse_operators("root plaintext")
    assert set(parse_operators(f"Root {line}\n  # note\n")) == {"root"}


# KICK


def test_kick_tells_the_user_who_and_why(
    connect: Connect, factory: ChatFactory, logs: Sequence[LogEvent]
) -> None:
    carol, bob, dave = operator(connect), connect("bob"), connect("dave")
    dave.presence = True  # the others are told, as of any removal
    assert carol.send("KICK BOB stop spamming, please") == ["OK KICK bob disconnected"]
    assert bob.lines() == ["BYE Kicked: carol disconnected you: stop spamming, please"]
    assert bob.closed
    assert dave.lines() == ["INFO bob was disconnected by the server: Kicked"]
    dave.presence = False
    assert dave.send("LIST") == ["USER carol", "USER dave", "OK LIST 2"]
    assert connect().send("JOIN bob")[0].startswith("OK JOIN bob ")  # the name is free
    assert logged(logs, "carol (operator root) kicked bob: stop spamming, please")
    assert factory.moderation.counts["kick"] == 1
    dave.send("MODE MACHINE")
    assert carol.send("KICK dave") == ["OK KICK dave disconnected"]
    assert dave.lines() == ["BYE KICKED carol -"]


def test_kick_reason_in_machine_mode_is_one_field(connect: Connect) -> None:
    carol, bob = operator(connect), connect("bob")
    bob.send("MODE MACHINE")
    carol.send("MODE MACHINE")
    assert carol.send("KICK bob 100% spam - sorry") == ["OK KICK bob"]
    assert bob.lines() == ["BYE KICKED carol 100%25%20spam%20%2D%20sorry"]


def test_kick_bad_inputs(connect: Connect) -> None:
    carol = operator(connect)
    assert carol.send("KICK") == ["ERR Usage: KICK <username> [<reason>]"]
    assert carol.send("KICK nobody") == [
        "ERR Unknown User: nobody named nobody is registered on this server"
    ]
    assert carol.send("KICK b@d") == [
        "ERR Unknown User: nobody named b@d is registered on this server"
    ]
    assert carol.send("KICK Carol") == ["ERR Usage: you cannot KICK yourself"]


def test_kick_of_a_user_held_for_a_resume_frees_the_name(clock: Clock) -> None:
    factory = ChatFactory(limits=Limits(rate=0, join_timeout=0, grace=60), clock=clock)
    factory.moderation.operators = parse_operators(f"root {hash_password(PASSWORD, n=FAST)}")
    connect = connector(factory)
    carol, bob = operator(connect), connect("bob")
    bob.transport.loseConnection()
    assert carol.send("LIST") == [
        "USER carol",
        "USER bob (disconnected, held for a resume)",
        "OK LIST 2",
    ]
    assert carol.send("KICK bob") == ["OK KICK bob disconnected"]
    assert carol.send("LIST") == ["USER carol", "OK LIST 1"]
    clock.advance(60)  # the grace timer was cancelled with it
    assert carol.send("LIST") == ["USER carol", "OK LIST 1"]


def test_operator_rights_are_the_connections(connect: Connect) -> None:
    carol = operator(connect)
    carol.send("QUIT")
    again = connect("carol")
    assert again.send("KICK bob")[0].startswith("ERR Not Operator")


# MUTE


def test_mute_refuses_every_relay_command_with_the_time_left(
    connect: Connect, clock: Clock, factory: ChatFactory, logs: Sequence[LogEvent]
) -> None:
    carol, bob, dave = operator(connect), connect("bob"), connect("dave")
    assert carol.send("MUTE bob 10 flooding the room") == ["OK MUTE bob for 10 minutes"]
    assert bob.lines() == [
        (
            "INFO carol muted you for 10 minutes: flooding the room. "
            "Your MESG, BCST and ME are refused until then."
        )
    ]
    assert logged(logs, "carol (operator root) muted bob for 10 minutes: flooding the room")
    clock.advance(61)
    refusal = (
        "ERR Muted: carol muted you for 9 minutes more: flooding the room; your {} was not sent"
    )
    assert bob.send("MESG dave hi") == [refusal.format("MESG")]
    assert bob.send("BCST hi all") == [refusal.format("BCST")]
    # A row of them in one read, spelled in every way: each refused, none relayed.
    replies = bob.send(b"MESG dave a\r\nmesg dave b\r\n  BCST c\r\nbcst d\r\nLIST\r\n")
    assert [reply[:11] for reply in replies[:4]] == ["ERR Muted: "] * 4
    assert [reply.split(" (")[0] for reply in replies[4:]] == [  # idle times after them
        "USER carol",
        "USER bob",
        "USER dave",
        "OK LIST 3",
    ]
    assert dave.lines() == []
    assert carol.lines() == []
    assert bob.send("ME waves") == [refusal.format("ME")]
    assert bob.send(b"ME a\r\nme b\r\n") == [refusal.format("ME")] * 2  # a row of them too
    # Everything else still works; messages to bob still arrive.
    assert dave.send("MESG bob hello") == ["OK MESG bob delivered"]
    assert bob.lines() == ["MESG dave: hello"]
    clock.advance(8 * 60 + 40)
    assert bob.send("MESG dave hi") == [
        "ERR Muted: carol muted you for 19 seconds more: flooding the room; your MESG was not sent"
    ]
    bob.send("MODE MACHINE")
    assert bob.send("BCST hi") == ["ERR MUTED carol 19 flooding%20the%20room"]
    assert factory.moderation.counts["refused_muted"] == 11  # 8 MESG and BCST, 3 ME
    assert factory.stats.commands["MESG"] >= 5
    assert logged(logs, "refused MESG from bob: muted by carol (", "s left)")
    # The mute ends by itself, and bob is told.
    clock.advance(18.9)
    assert bob.lines() == []
    clock.advance(0.1)
    assert bob.lines() == ["MOD MUTE_ENDED carol"]
    assert logged(logs, "the mute of bob by carol ended")
    assert bob.send("MESG dave free") == ["OK MESG dave delivered"]
    assert bob.send("BCST free") == ["OK BCST 2 0"]
    assert dave.lines() == ["MESG bob: free", "BCST bob: free"]


def test_a_mute_outlives_a_reconnection_and_unmute_lifts_it(
    connect: Connect, factory: ChatFactory, logs: Sequence[LogEvent]
) -> None:
    carol, bob, dave = operator(connect), connect("bob"), connect("dave")
    carol.send("MUTE bob 5")
    assert bob.lines() == [
        (
            "INFO carol muted you for 5 minutes; no reason given. "
            "Your MESG, BCST and ME are refused until then."
        )
    ]
    bob.send("QUIT")
    again = connect("BOB")
    assert again.send("BCST back")[0].startswith("ERR Muted: carol muted you for 5 minutes more;")
    assert carol.send("UNMUTE bob") == ["OK UNMUTE bob"]
    assert again.lines() == ["INFO carol unmuted you: you may send messages again"]
    assert again.send("BCST back") == ["OK BCST 2"]
    assert dave.lines() == carol.lines() == ["BCST BOB: back"]
    assert carol.send("UNMUTE bob") == ["ERR Not Muted: bob is not muted"]
    assert logged(logs, "carol (operator root) unmuted bob")
    assert factory.moderation.counts["unmute"] == 1


def test_the_end_of_a_mute_is_told_once(connect: Connect, clock: Clock) -> None:
    carol, bob = operator(connect), connect("bob")
    carol.send("MUTE bob 1")
    carol.send("MUTE bob 2")  # the second one replaces the first, and its end
    assert carol.send("UNMUTE bob") == ["OK UNMUTE bob"]
    carol.send("MUTE bob 3")
    assert len(bob.lines()) == 4
    clock.advance(179)
    assert bob.lines() == []
    clock.advance(1)
    assert bob.lines() == ["INFO your mute by carol has ended: you may send messages again"]
    clock.advance(3600)
    assert bob.lines() == []
    assert clock.getDelayedCalls() == []


def test_mute_in_machine_mode(connect: Connect) -> None:
    carol, bob = operator(connect), connect("bob")
    carol.send("MODE MACHINE")
    bob.send("MODE MACHINE")
    assert carol.send("MUTE bob 2 spam") == ["OK MUTE bob 120"]
    assert bob.lines() == ["MOD MUTED carol 120 spam"]
    assert carol.send("UNMUTE bob") == ["OK UNMUTE bob"]
    assert bob.lines() == ["MOD UNMUTED carol"]


@pytest.mark.parametrize("minutes", ["0", "-5", "abc", "1.5", str(MAX_MINUTES + 1), "9" * 30, "٣"])
def test_mute_and_ban_refuse_bad_minutes(connect: Connect, minutes: str) -> None:
    carol, _ = operator(connect), connect("bob")
    assert carol.send(f"MUTE bob {minutes}") == [
        f"ERR Usage: MUTE <username> <minutes> [<reason>]; minutes from 1 to {MAX_MINUTES}"
    ]
    assert carol.send(f"BAN bob {minutes}") == [
        (
            "ERR Usage: BAN <username or IP address> <minutes> [<reason>]; "
            f"minutes from 1 to {MAX_MINUTES}"
        )
    ]


def test_mute_bad_inputs_and_a_full_store(connect: Connect, factory: ChatFactory) -> None:
    carol, _, _, _ = operator(connect), connect("bob"), connect("dave"), connect("erin")
    assert carol.send("MUTE") == [
        f"ERR Usage: MUTE <username> <minutes> [<reason>]; minutes from 1 to {MAX_MINUTES}"
    ]
    assert carol.send("MUTE nobody 5") == [
        "ERR Unknown User: nobody named nobody is registered on this server"
    ]
    assert carol.send("MUTE carol 5") == ["ERR Usage: you cannot MUTE yourself"]
    assert carol.send("UNMUTE") == ["ERR Usage: UNMUTE <username>"]
    factory.moderation.mutes.capacity = 2
    carol.send("MUTE bob 5")
    carol.send("MUTE dave 5")
    assert carol.send("MUTE erin 5") == [
        "ERR Store Full: 2 mutes are in force, the most this server keeps; lift one or wait"
    ]
    assert carol.send("MUTE bob 7") == ["OK MUTE bob for 7 minutes"]  # a change is not more


# BAN


def test_ban_of_a_name_kicks_it_and_refuses_it_at_join(
    connect: Connect, clock: Clock, factory: ChatFactory, logs: Sequence[LogEvent]
) -> None:
    carol, bob, dave = operator(connect), connect("bob"), connect("dave")
    assert carol.send("BAN bob 60 trolling") == ["OK BAN bob for 60 minutes (1 connections closed)"]
    assert bob.lines() == ["BYE Banned: carol banned you for 60 minutes: trolling"]
    assert bob.closed
    assert logged(
        logs, "carol (operator root) banned bob for 60 minutes: trolling (1 connections closed)"
    )
    clock.advance(30 * 60)
    again = connect()
    refusal = "ERR Banned: the name bob is banned for 30 minutes more by carol: trolling"
    assert again.send("JOIN bob") == [refusal]
    assert again.send("JOIN B0B") == [refusal]  # look-alikes too
    assert logged(logs, "refused JOIN 'bob' from 10.0.0.1:", ": banned")
    again.send("MODE MACHINE")
    assert again.send("JOIN Bob") == ["ERR BANNED bob carol 1800 trolling"]
    assert again.send("JOIN bobby")[0].startswith("OK JOIN bobby")
    assert dave.lines() == []
    assert factory.moderation.counts["refused_join"] == 3
    clock.advance(30 * 60)  # the ban ends by itself
    assert connect().send("JOIN bob")[0].startswith("OK JOIN bob ")


def test_ban_of_a_name_that_is_not_online_and_unban(connect: Connect) -> None:
    carol = operator(connect)
    assert carol.send("BAN mallory 5") == ["OK BAN mallory for 5 minutes (0 connections closed)"]
    assert connect().send("JOIN Mallory")[0].startswith("ERR Banned: the name mallory is banned")
    assert carol.send("UNBAN MALLORY") == ["OK UNBAN mallory"]
    assert connect().send("JOIN Mallory")[0].startswith("OK JOIN Mallory")
    assert carol.send("UNBAN mallory") == ["ERR Not Banned: mallory is not banned"]
    carol.send("MODE MACHINE")
    assert carol.send("UNBAN mallory") == ["ERR NOT_BANNED mallory"]
    assert carol.send("BAN eve 5") == ["OK BAN eve 300 0"]


def test_ban_of_an_address_closes_its_connections_and_refuses_new_ones(
    connect: Connect, clock: Clock, factory: ChatFactory, logs: Sequence[LogEvent]
) -> None:
    carol = operator(connect)
    bob, lurker = connect("bob", host="10.0.0.9"), connect(host="10.0.0.9")
    dave = connect("dave", host="10.0.0.10")
    assert carol.send("BAN 10.0.0.9 10 botnet") == [
        "OK BAN 10.0.0.9 for 10 minutes (2 connections closed)"
    ]
    for victim in (bob, lurker):
        assert victim.lines() == ["BYE Banned: carol banned you for 10 minutes: botnet"]
        assert victim.closed
    assert dave.lines() == []
    client = Client(factory, 5000, "10.0.0.9")
    assert client.lines() == [
        "BYE Banned: connections from 10.0.0.9 are banned for 10 minutes more by carol: botnet"
    ]
    assert client.closed
    assert logged(logs, "refused connection from 10.0.0.9:5000: banned address (600s left")
    assert factory.moderation.counts["refused_address"] == 1
    assert factory.peers.total == 2  # carol and dave: a refused connection is not counted
    assert carol.send("UNBAN 10.0.0.9") == ["OK UNBAN 10.0.0.9"]
    assert Client(factory, 5001, "10.0.0.9").lines() == GREETING


def test_ban_of_an_ipv6_address_in_any_spelling(connect: Connect, factory: ChatFactory) -> None:
    carol = operator(connect)
    assert carol.send("BAN 2001:DB8:0::1 5")[0].startswith("OK BAN 2001:DB8:0::1 for 5 minutes")
    refused = Client(factory, 5000, "2001:db8::1")
    assert refused.lines()[0].startswith("BYE Banned: connections from 2001:db8::1 are banned")
    assert carol.send("UNBAN 2001:db8::1") == ["OK UNBAN 2001:DB8:0::1"]


def test_ban_bad_inputs_and_a_full_store(connect: Connect, factory: ChatFactory) -> None:
    carol = operator(connect)
    usage = (
        "ERR Usage: BAN <username or IP address> <minutes> [<reason>]; "
        f"minutes from 1 to {MAX_MINUTES}"
    )
    assert carol.send("BAN") == [usage]
    assert carol.send("BAN bob") == [usage]
    assert carol.send("BAN b@b 5") == [usage]
    assert carol.send("BAN 10.0.0.300 5") == [usage]
    assert carol.send("BAN CAROL 5") == ["ERR Usage: you cannot BAN yourself"]
    assert carol.send("BAN 10.0.0.1 5") == ["ERR Usage: you cannot BAN yourself"]
    assert carol.send("UNBAN") == ["ERR Usage: UNBAN <username or IP address>"]
    assert carol.send("UNBAN a b") == ["ERR Usage: UNBAN <username or IP address>"]
    factory.moderation.bans.capacity = 2
    carol.send("BAN x1 5")
    carol.send("BAN x2 5")
    assert carol.send("BAN x3 5") == [
        "ERR Store Full: 2 bans are in force, the most this server keeps; lift one or wait"
    ]


def test_expired_bans_make_room(clock: Clock) -> None:
    bans = Sanctions(2)
    assert bans.add(Sanction("name:a", "a", 10, "op", ""), 0)
    assert bans.add(Sanction("name:b", "b", 20, "op", ""), 0)
    assert not bans.add(Sanction("name:c", "c", 30, "op", ""), 5)
    assert bans.add(Sanction("name:c", "c", 30, "op", ""), 10)  # a's time is up
    assert [ban.target for ban in bans] == ["b", "c"]


def test_operator_reasons_are_cleaned_and_bounded(connect: Connect) -> None:
    carol, bob = operator(connect), connect("bob")
    carol.send(b"KICK bob \x1b[31mred\x07 " + b"x" * 500 + b"\r\n")
    (bye,) = bob.lines()
    assert bye.startswith("BYE Kicked: carol disconnected you: red xxx")
    assert len(bye) < 260 and "\x1b" not in bye and "\x07" not in bye


class Slow:
    """
    A keeper that answers when the test says (a cluster's Redis, whose
    failure in the middle of a command cannot be produced on cue).
    """

    def __init__(self) -> None:
        self.pending: list[Later[bool]] = []

    def saved(self, bans: Sanctions, changed: Sanction, lifted: bool) -> Later[bool]:
        self.pending.append(Later())
        return self.pending[-1]


def test_a_ban_waits_for_its_keeper_and_is_undone_if_not_kept(
    connect: Connect, factory: ChatFactory
) -> None:
    keeper = factory.moderation.keeper = Slow()
    carol, bob = operator(connect), connect("bob")
    assert carol.send(b"BAN bob 5\r\nLIST\r\n") == []  # LIST waits for the BAN
    keeper.pending.pop().resolve(False)
    assert carol.lines() == [
        "ERR Store Full: 1000 bans are in force, the most this server keeps; lift one or wait",
        "USER carol",
        "USER bob",
        "OK LIST 2",
    ]
    assert not factory.moderation.bans
    carol.send("BAN bob 5")
    keeper.pending.pop().fail(RoomUnavailable("Redis is not connected"))
    assert carol.lines() == [
        "ERR Cluster Unavailable: the cluster cannot be reached; try again soon"
    ]
    assert not factory.moderation.bans
    assert bob.lines() == []
    carol.send("BAN bob 5")
    keeper.pending.pop().resolve(True)
    assert carol.lines() == ["OK BAN bob for 5 minutes (1 connections closed)"]
    assert bob.closed
    carol.send("UNBAN bob")
    keeper.pending.pop().fail(RoomUnavailable("Redis is not connected"))
    assert carol.lines()[0].startswith("ERR Cluster Unavailable")
    assert len(factory.moderation.bans) == 1  # still banned


def test_bans_loaded_from_a_cluster_are_enforced(
    connect: Connect, factory: ChatFactory, clock: Clock
) -> None:
    """What a node does with the cluster's bans when it (re)connects to Redis."""
    bob, lurker, dave = connect("bob"), connect(host="10.0.0.9"), connect("dave")
    factory.moderation.loaded(
        [
            Sanction("name:bob", "Bob", 600, "carol", "spam"),
            Sanction("address:10.0.0.9", "10.0.0.9", 600, "carol", ""),
            Sanction("name:dave", "dave", 0, "carol", "expired"),
        ]
    )
    assert bob.lines() == ["BYE Banned: carol banned you for 10 minutes: spam"]
    assert lurker.lines() == ["BYE Banned: carol banned you for 10 minutes; no reason given"]
    assert dave.lines() == []
    assert len(factory.moderation.bans) == 2
    factory.moderation.lifted("name:bob")
    assert connect().send("JOIN bob")[0].startswith("OK JOIN bob")


# The bans file


def test_the_bans_file_is_written_atomically_and_read_back(
    connect: Connect, factory: ChatFactory, tmp_path: Path
) -> None:
    path = tmp_path / "bans"
    factory.moderation.keeper = BanFile(str(path))
    carol = operator(connect)
    carol.send("BAN bob 5 spam")
    carol.send("BAN 10.0.0.9 5")
    (bob, address) = read_bans(str(path))
    assert (bob.key, bob.target, bob.by, bob.reason, bob.until) == ("name:bob", "bob", "carol",
                                                                    "spam", 300)  # fmt: skip
    assert address.key == "address:10.0.0.9"
    carol.send("UNBAN bob")
    assert [ban.key for ban in read_bans(str(path))] == ["address:10.0.0.9"]
    assert [p.name for p in tmp_path.iterdir()] == ["bans"]  # no temporary file left


def test_bad_bans_files_are_refused(tmp_path: Path) -> None:
    assert read_bans(str(tmp_path / "missing")) == []
    path = tmp_path / "bans"
    path.write_text("not a bans file\n")
    with pytest.raises(ValueError, match="the first line is not 'chat-bans 1'"):
        read_bans(str(path))
    path.write_text('chat-bans 1\n{"key": "name:x"}\n')
    with pytest.raises(ValueError, match="line 2: not a sanction"):
        read_bans(str(path))
    path.write_text(
        'chat-bans 1\n{"key":"name:x","target":"x","until":"soon","by":"o","reason":""}\n'
    )
    with pytest.raises(ValueError, match="line 2"):
        read_bans(str(path))
    bans = [Sanction("name:x", "x", 1.5, "o", "a reason, with ünicode")]
    assert read_file_text(file_text(bans)) == bans
    write_atomically(str(path), file_text(bans))
    assert read_bans(str(path)) == bans
