"""
Tests for the limits: connection caps, timeouts, flood control. Time is a
L{Clock}, so every timeout is hit for real and deterministically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent

from chat.core.limits import Limits, PeerCount, TokenBucket
from chat.core.repeats import INTERVAL, MAX_KEYS, Repeats
from chat.server.factory import ChatFactory
from chat.server.outbox import LATER
from harness import GREETING, Client, logged

OFF = Limits(rate=0, join_timeout=0)


Connect = Callable[..., Client]


def server(clock: Clock, **limits: float) -> Connect:
    """A factory with the given limits switched on; returns a connect()."""
    factory = ChatFactory(max_users=50, limits=replace(OFF, **limits), clock=clock)
    ports = iter(range(1000, 9000))

    def connect(name: str | None = None, host: str = "10.0.0.1") -> Client:
        client = Client(factory, next(ports), host)
        if name is not None:
            assert client.lines() == GREETING
            assert client.send(f"JOIN {name}")[0].startswith("OK JOIN")
        return client

    connect.factory = factory  # type: ignore[attr-defined]
    return connect


# Unit level


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert bucket.grant(0.0, 5) == 3
    assert bucket.wait(0.0) == pytest.approx(0.1)
    assert bucket.grant(0.05, 1) == 0
    assert bucket.wait(0.05) == pytest.approx(0.05)
    assert bucket.grant(0.1, 1) == 1
    assert bucket.grant(100.0, 5) == 3  # refills, but never past the burst
    bucket.refund(2)  # two of them were not processed after all
    assert bucket.grant(100.0, 5) == 2
    assert bucket.wait(100.0) == pytest.approx(0.1)


def test_peer_count() -> None:
    peers, limits = PeerCount(), Limits(max_connections=3, max_per_peer=2)
    assert peers.admit("a", limits) is None
    assert peers.admit("a", limits) is None
    assert "limit per address" in str(peers.admit("a", limits))
    assert peers.admit("b", limits) is None
    assert "its limit" in str(peers.admit("c", limits))
    assert "its limit" in str(peers.admit("c", limits, lambda: False))
    assert "limit per address" in str(peers.admit("a", limits, lambda: True))
    peers.release("a")
    assert peers.admit("c", limits) is None
    assert peers.total == 3


# Connection caps


def test_connections_per_address_are_capped(clock: Clock, logs: Sequence[LogEvent]) -> None:
    connect = server(clock, max_per_peer=2)
    first, _ = connect(), connect()
    refused = connect()
    assert refused.lines() == [
        "BYE Too Many Connections: 10.0.0.1 has 2 connections open, the limit per address"
    ]
    assert refused.closed
    assert connect(host="10.0.0.2").lines() == GREETING
    first.transport.loseConnection()
    assert connect().lines() == GREETING
    assert logged(logs, "refused connection from 10.0.0.1")
    assert connect.factory.stats.limits["max_connections"] == 1  # type: ignore[attr-defined]


def test_total_connections_are_capped(clock: Clock) -> None:
    connect = server(clock, max_connections=2)
    connect("alice", host="10.0.0.1")
    connect("bob", host="10.0.0.2")
    refused = connect(host="10.0.0.3")
    assert refused.lines()[0].startswith("BYE Too Many Connections: the server has 2")
    assert refused.closed
    assert connect.factory.peers.total == 2  # type: ignore[attr-defined]


def test_at_the_cap_a_new_connection_replaces_the_oldest_that_has_not_joined(
    clock: Clock, logs: Sequence[LogEvent]
) -> None:
    """
    A flood of idle connections cannot keep people out: at
    C{--max-connections} a new one takes the place of the oldest connection
    that has not joined; registered users are never pushed out.
    """
    connect = server(clock, max_connections=3)
    alice = connect("alice")
    idle, later = connect(host="10.0.0.2"), connect(host="10.0.0.3")
    newcomer = connect(host="10.0.0.4")
    assert idle.lines()[len(GREETING) :] == [
        (
            "BYE Too Many Connections: the server is full, and a newer connection took "
            "the place of this one, which had not joined"
        )
    ]
    assert idle.closed and idle.transport.disconnected  # aborted: its place is free at once
    assert not later.closed and not alice.closed
    assert newcomer.lines() == GREETING
    assert newcomer.send("JOIN bob")[0].startswith("OK JOIN bob")
    factory = connect.factory  # type: ignore[attr-defined]
    assert factory.peers.total == 3 and len(factory.connections) == 3
    assert logged(logs, "closing the connection of 10.0.0.2:", "to make room for 10.0.0.4:")
    assert factory.stats.limits["max_connections_replaced"] == 1
    # Now only `later` has not joined: it makes room, and then nobody can.
    assert connect(host="10.0.0.5").lines() == GREETING
    assert later.closed
    alice.send("QUIT")  # a seat freed by a registered user is a seat
    assert connect(host="10.0.0.6").lines() == GREETING


def test_input_past_its_rate_pauses_reading(clock: Clock, logs: Sequence[LogEvent]) -> None:
    """
    Input that is not a line (here telnet NOPs) escapes flood control, but
    not the input meter: past C{rate * max_line} bytes a second (after a
    burst of C{burst * max_line}), the connection is not read until the
    client has earned what it sent.
    """
    connect = server(clock, rate=10, burst=2, max_line=100)  # 1000 B/s, burst 200 B
    flooder, calm = connect("flooder"), connect("calm", host="10.0.0.2")
    flooder.send(b"\xff\xf1" * 90)  # with its JOIN line, 194 bytes: within the burst
    assert flooder.transport.producerState == "producing"
    flooder.send(b"\xff\xf1" * 50)  # 100 more: 94 bytes, 0.094 s early
    assert flooder.transport.producerState == "paused"
    clock.advance(0.09)
    assert flooder.transport.producerState == "paused"
    assert calm.send("MESG flooder hi") == ["OK MESG flooder delivered"]
    clock.advance(0.02)
    assert flooder.transport.producerState == "producing"
    assert flooder.lines() == ["MESG calm: hi"]
    flooder.send(b"\xff\xf1" * 100)  # again past it: paused, but logged once
    assert flooder.transport.producerState == "paused"
    assert [formatEvent(event) for event in logs].count(
        "slowing down flooder: more than 1000 bytes of input a second"
    ) == 1
    assert connect.factory.stats.limits["input_rate"] == 2  # type: ignore[attr-defined]
    flooder.transport.loseConnection()  # the timer goes with the connection
    clock.advance(LATER)  # calm's notice that the flooder left
    assert not clock.getDelayedCalls()


def test_repeats_are_summarised_per_kind_and_address(clock: Clock) -> None:
    lines: list[str] = []

    class Log:
        def info(self, format: str, **fields: object) -> None:
            lines.append(format.format(**fields))

        def warn(self, format: str, **fields: object) -> None:
            raise AssertionError(format)

    repeats = Repeats(clock, Log())
    for host in ("a", "a", "a", "b"):
        repeats.info("refusals", host, "refused {host}", host=host)
    repeats.info("guesses", "a", "guess from {host}", host="a")
    assert lines == ["refused a", "refused b", "guess from a"]
    clock.advance(INTERVAL)
    assert lines[3:] == ["2 more refusals from a in the last 10s"]
    repeats.info("refusals", "a", "refused {host}", host="a")  # a new interval
    assert lines[4:] == ["refused a"]
    for number in range(MAX_KEYS + 5):  # many addresses: the counts stay bounded
        repeats.info("refusals", str(number), "refused {host}", host=number)
    assert len(lines) == 4 + MAX_KEYS  # "a" and MAX_KEYS - 1 others are counted
    repeats.stop()  # the server stops: what is counted is written
    assert lines[-1] == "6 more refusals from other addresses in the last 10s"
    assert not clock.getDelayedCalls()


def test_past_max_buffered_the_connection_with_the_most_waiting_is_dropped(
    clock: Clock, logs: Sequence[LogEvent]
) -> None:
    """
    Each non-reader is under --max-outbound, but together they pass
    --max-buffered: the one with the most waiting goes, the others stay.
    """
    connect = server(clock, max_outbound=10**7, max_buffered=50_000, max_line=20_000)
    sender, first, second = connect("sender"), connect("first"), connect("second")
    first.protocol.pauseProducing()  # stopped reading
    for _ in range(2):
        sender.send("BCST " + "x" * 15_000)
    second.protocol.pauseProducing()
    sender.send("BCST " + "y" * 15_000)  # first 45 KB, second 15 KB: past 50,000
    assert first.closed and first.transport.disconnected  # aborted
    assert not second.closed and not sender.closed
    assert logged(logs, "dropped first at 10.0.0.1:", "bytes waiting, the most while all")
    factory = connect.factory  # type: ignore[attr-defined]
    assert factory.stats.limits["max_buffered"] == 1
    assert factory.buffered.total == factory.buffered.by[second.protocol.session] > 0
    second.protocol.resumeProducing()  # it read: nothing waits any more
    assert factory.buffered.total == 0 and not factory.buffered.by


# Timeouts


def test_unregistered_connection_is_closed_after_the_join_timeout(clock: Clock) -> None:
    connect = server(clock, join_timeout=30)
    lazy, joiner = connect(), connect()
    lazy.lines()
    joiner.send("JOIN bob")
    clock.advance(29)
    assert not lazy.closed
    lazy.send("HELP")  # asking for help is not joining
    clock.advance(1)
    assert lazy.lines() == ["BYE Join Timeout: no JOIN within 30 seconds"]
    assert lazy.closed
    assert not joiner.closed


def test_idle_users_are_closed_and_input_keeps_them(clock: Clock) -> None:
    connect = server(clock, idle_timeout=60)
    idle, busy = connect("idle"), connect("busy")
    unregistered = connect()
    for _ in range(4):
        clock.advance(20)
        busy.send("LIST")
        connect.factory.checkIdle()  # type: ignore[attr-defined]
    assert idle.lines() == ["BYE Idle Timeout: nothing sent for 60 seconds"]
    assert idle.closed
    assert not busy.closed
    assert not unregistered.closed  # the join timeout is for those
    assert busy.send("LIST") == ["USER busy", "OK LIST 1"]


def test_server_output_is_not_activity(clock: Clock) -> None:
    connect = server(clock, idle_timeout=10)
    reader, talker = connect("reader"), connect("talker")
    for _ in range(5):
        clock.advance(3)
        talker.send("MESG reader still there?")
        connect.factory.checkIdle()  # type: ignore[attr-defined]
    assert reader.closed
    assert not talker.closed


# Flood control


def test_burst_then_lines_are_delayed_not_dropped(clock: Clock) -> None:
    connect = server(clock, rate=10, burst=5)
    sender, receiver = connect("sender"), connect("receiver")
    replies = sender.send(b"".join(b"MESG receiver %d\r\n" % i for i in range(15)))
    assert len(replies) == 4  # JOIN took the first token
    clock.advance(0.35)
    assert len(sender.lines()) == 3
    clock.pump([0.1] * 20)
    assert len(sender.lines()) == 8
    assert receiver.lines() == [f"MESG sender: {i}" for i in range(15)]
    assert not sender.closed


def test_a_client_that_waits_for_replies_is_never_delayed(clock: Clock) -> None:
    connect = server(clock, rate=10, burst=5)
    client = connect("polite")
    for _ in range(50):
        clock.advance(0.1)
        assert client.send("LIST") == ["USER polite", "OK LIST 1"]


def test_flooder_is_disconnected_and_others_are_served(
    clock: Clock, logs: Sequence[LogEvent]
) -> None:
    connect = server(clock, rate=10, burst=20, max_backlog=4096)
    flooder, calm, friend = connect("flooder"), connect("calm"), connect("friend")
    flood = b"BCST " + b"x" * 95 + b"\r\n"
    for _ in range(30):
        flooder.send(flood)  # 30 * 100 bytes: under the backlog limit
    assert not flooder.closed
    clock.advance(0.5)
    calm.lines()  # the flooder's broadcasts so far
    assert calm.send("MESG friend hello") == ["OK MESG friend delivered"]
    assert friend.lines()[-1] == "MESG calm: hello"
    assert flooder.send(flood * 40)[-1].startswith(
        "BYE Flooding: more than 4096 bytes of commands waiting"
    )
    assert flooder.closed
    assert calm.send("LIST") == ["USER calm", "USER friend", "OK LIST 2"]
    assert logged(logs, "disconnecting flooder: flooding")
    clock.advance(10)  # no timer left behind touches the closed connection
    assert flooder.lines() == []


def test_overlong_lines_count_against_the_backlog(clock: Clock) -> None:
    connect = server(clock, rate=1, burst=1, max_backlog=20000, max_line=100)
    flooder = connect("flooder")
    for _ in range(300):
        flooder.send(b"x" * 200 + b"\n")
    assert flooder.closed


def test_token_bucket_rounding_never_asks_for_a_wait_too_small_to_pass() -> None:
    """
    Float time adds up with rounding: a token short by that much is a token,
    else the wait asked for would be too small to move a clock (which then
    ran the drain again and again without end).
    """
    bucket = TokenBucket(10, 1, 0.0)
    assert bucket.grant(0.0, 1) == 1
    almost = 0.7 - 0.6  # 0.09999999999999998: a token short by 2e-16
    assert bucket.grant(almost, 1) == 1
