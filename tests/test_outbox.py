"""Tests for L{chat.server.outbox}: the output of a reactor turn, sent in one piece."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from twisted.internet.task import Clock

from chat.core.limits import Limits
from chat.core.room import FLUSH_AT
from chat.server.factory import ChatFactory
from chat.server.outbox import Outbox
from harness import Client, connector


class Recorder:
    def __init__(self, flushed: list[str], name: str) -> None:
        self.flushed, self.name = flushed, name

    def flush(self) -> None:
        self.flushed.append(self.name)


class Failing:
    def flush(self) -> None:
        raise RuntimeError("a transport that breaks")


def test_a_connection_that_fails_to_flush_holds_up_no_other(logs) -> None:
    clock, flushed = Clock(), []
    outbox = Outbox(clock)
    outbox.add(Recorder(flushed, "a"))
    outbox.add(Failing())
    outbox.add(Recorder(flushed, "c"))
    clock.advance(0)
    assert flushed == ["a", "c"]
    assert [event["log_failure"].type for event in logs if "log_failure" in event] == [RuntimeError]


@pytest.fixture
def connect(clock: Clock) -> Callable[..., Client]:
    limits = Limits(max_line=1024, rate=0, join_timeout=0)
    return connector(ChatFactory(max_users=3, limits=limits, clock=clock))


def count_writes(client: Client) -> list[bytes]:
    """Record each C{write} call on the client's transport."""
    writes: list[bytes] = []
    write = client.transport.write

    def counting(data: bytes) -> None:
        writes.append(data)
        write(data)

    client.transport.write = counting  # type: ignore[method-assign]
    return writes


def test_one_flush_per_turn_for_every_connection_in_order() -> None:
    clock, flushed = Clock(), []
    outbox = Outbox(clock)
    for name in "abc":
        outbox.add(Recorder(flushed, name))
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(0)
    assert flushed == ["a", "b", "c"]
    assert clock.getDelayedCalls() == []
    outbox.add(Recorder(flushed, "d"))  # the next turn schedules its own
    clock.advance(0)
    assert flushed == ["a", "b", "c", "d"]


def test_a_turn_of_replies_and_messages_is_one_write_per_connection(connect) -> None:
    a, b = connect("a"), connect("b")
    a_writes, b_writes = count_writes(a), count_writes(b)
    a.protocol.dataReceived(b"".join(b"MESG b hello %d\r\n" % n for n in range(10)) + b"LIST\r\n")
    b.protocol.dataReceived(b"MESG a back\r\n")
    assert (a_writes, b_writes) == ([], [])
    assert a.lines() == ["OK MESG b delivered"] * 10 + [
        "USER a",
        "USER b",
        "OK LIST 2",
        "MESG b: back",
    ]
    assert b.lines() == [f"MESG a: hello {n}" for n in range(10)] + ["OK MESG a delivered"]
    assert (len(a_writes), len(b_writes)) == (1, 1)


def test_a_burst_reaches_the_transport_mid_turn(connect) -> None:
    # So that the transport's flow control (pauseProducing) sees it at once.
    a, b = connect("a"), connect("b")
    text = b"x" * 400
    count = FLUSH_AT // len(text) + 1
    a.protocol.dataReceived(b"".join(b"MESG b %s\r\n" % text for _ in range(count)))
    assert len(b.transport.value()) >= FLUSH_AT
    assert len(b.lines()) == count


def test_closing_sends_what_was_gathered_first(connect) -> None:
    a, b = connect("a"), connect("b")
    a.protocol.dataReceived(b"MESG b one\r\nQUIT\r\n")
    assert a.closed
    assert a.lines() == ["OK MESG b delivered", "OK QUIT Bye"]
    assert b.lines() == ["MESG a: one"]
