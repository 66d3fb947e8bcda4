"""
One read holding N lines against N reads of one line: the session handles a
read's lines as a batch (L{chat.core.session}), and must give the same
replies, relayed lines, status lines and counts, in the same order, for any
input and any state of the sender's and the recipients' connections.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from chat.core.limits import Limits
from chat.server.factory import ChatFactory
from harness import Client

Setup = Callable[[Client, Client], None]
"""What is done to alice (the sender) and bob before alice's input."""


def transcript(limits: Limits, data: list[bytes], setup: Setup, one_by_one: bool) -> list[object]:
    """
    What everyone sees, what is logged and counted when alice sends the
    reads C{data} (dave is away: messages to him are held), then after
    flood control let the rest through; with C{one_by_one}, each line of
    C{data} is a read of its own.

    The input meter (L{Limits.input_rate}) counts reads, not lines, and
    pauses reading between reads: its status line and count are left out.
    """
    clock = Clock()
    factory = ChatFactory(max_users=5, limits=limits, clock=clock)
    with capturedLogs() as events:
        alice, bob, dave = (Client(factory, port) for port in (1, 2, 3))
        for client, name in ((alice, "alice"), (bob, "B0b"), (dave, "dave")):
            client.send(f"JOIN {name}")
            client.lines()
        dave.transport.loseConnection()
        setup(alice, bob)
        reads = [line for chunk in data for line in chunk.splitlines(True)] if one_by_one else data
        for chunk in reads:
            alice.protocol.dataReceived(chunk)
        seen: list[object] = [alice.raw(), bob.raw()]
        for _ in range(len(data) * 20 if limits.rate else 0):
            clock.advance(1)
        seen += [alice.raw(), bob.raw()]
    stats = factory.stats
    limits_hit = {limit: count for limit, count in stats.limits.items() if limit != "input_rate"}
    counts = [dict(stats.commands), dict(stats.relayed), limits_hit]
    lines = [formatEvent(event) for event in events]
    return [*seen, [line for line in lines if not line.startswith("slowing down")], counts]


def assert_same(limits: Limits, data: list[bytes], setup: Setup) -> None:
    assert transcript(limits, data, setup, one_by_one=False) == transcript(
        limits, data, setup, one_by_one=True
    )


def pause(client: Client) -> None:
    """The client's transport is full: Twisted paused its producer."""
    client.protocol.pauseProducing()


def pause_on_write(client: Client) -> None:
    """The transport is full after every write, as a client that stopped reading."""
    write = client.transport.write

    def full(data: bytes) -> None:
        write(data)
        client.protocol.pauseProducing()

    client.transport.write = full  # type: ignore[method-assign]


# Mostly MESGs and BCSTs the runs take, with the variations they must get
# right; the rest are near misses that they must leave to the general path.
MESG_WORDS = st.sampled_from(["MESG", "mesg", "MeSg", "MESG", "MESGX", "BCST"])
NAMES = st.sampled_from(["B0b", "bob", "BOB", "dave", "alice", "nobody", "b!", "\xe9"])
SPACES = st.sampled_from([" ", "  ", "\t", " \x01", "\x7f ", " ", "", "\x1b"])
TEXTS = st.text(alphabet="ab \t\x00\x1b\x7f", min_size=1, max_size=8) | st.text(
    alphabet="a \xe9\u2028\u0085", max_size=4
)
BCST_LINES = st.sampled_from(
    [b"BCST hi", b"bcst  a b ", b"BcSt\t\x01x", b"BCST", b"BCST ", b"BCSTX y", "BCST \xe9".encode(),
     b"ME waves", b"me", b"ME \xc3\xa9 x"]
)  # fmt: skip
# STATUS shows the flood-control budget and the input waiting, as line by line.
OTHER_LINES = st.sampled_from(
    [b"LIST", b"STATUS", b"HISTORY", b"HISTORY 2", b"MESG bob " + b"y" * 250]  # 250 > max_line
)


@st.composite
def mesg_lines(draw: st.DrawFn) -> bytes:
    """Lines near a MESG: odd case, spacing, controls, names, non-ASCII."""
    parts = [draw(SPACES), draw(MESG_WORDS), draw(SPACES), draw(NAMES), draw(SPACES)]
    text = draw(TEXTS)
    line = "".join(parts) + text
    if draw(st.booleans()):
        line += draw(SPACES)
    return line.encode("utf-8").replace(b"\r", b"")


@st.composite
def reads(draw: st.DrawFn) -> list[bytes]:
    """Alice's input: mostly MESGs and BCSTs, in one read or one read a line."""
    lines = draw(st.lists(mesg_lines() | BCST_LINES | OTHER_LINES, max_size=10))
    lines = [line + b"\r\n" for line in draw(st.lists(mesg_lines(), min_size=1)) + lines]
    return [b"".join(lines)] if draw(st.booleans()) else lines


@dataclass(frozen=True)
class Scene:
    """How things stand when alice sends: her flood control, who is not reading."""

    burst: int  # 0: no flood control
    bob_blocked: bool  # a message past 40 bytes while blocked drops the reader
    alice_blocked: bool = False

    def limits(self) -> Limits:
        return Limits(
            rate=self.burst and 1.0,
            burst=self.burst,
            max_line=200,
            max_outbound=40,
            join_timeout=0,
            grace=60,
        )

    def setup(self, alice: Client, bob: Client) -> None:
        if self.bob_blocked:
            pause(bob)
        if self.alice_blocked:
            pause(alice)


scenes = st.builds(Scene, st.sampled_from([0, 2, 5]), st.booleans(), st.booleans())


@settings(max_examples=500, deadline=None)
@given(reads(), scenes)
@example([b"MESG alice 1\r\nMESG bob 2\r\nMESG alice 3\r\n"], Scene(0, False))
@example([b"MESG bob 1\r\nMESG dave 2\r\nmesg BOB 3 \r\n"], Scene(2, False))
@example([b"BCST 1\r\nBCST 2\r\nbcst 3\r\nBCST 4\r\n"], Scene(3, True))
@example([b"MESG bob 1\r\nMESG bob 2\r\nMESG bob 3\r\n"], Scene(0, False, alice_blocked=True))
@example([b"BCST 1\r\nBCST 2\r\n"], Scene(0, False, alice_blocked=True))
@example([b"MESG bob 0\r\nSTATUS\r\nLIST\r\nLIST\r\n"], Scene(5, False))
@example([b"MESG bob 0\r\nLIST\r\nSTATUS\r\nLIST\r\n"], Scene(2, False))
def test_a_read_of_n_lines_answers_as_n_reads_of_one(data: list[bytes], scene: Scene) -> None:
    assert_same(scene.limits(), data, scene.setup)


def test_a_run_of_receipts_reaching_flush_at_meets_flow_control_as_line_by_line() -> None:
    """3,000 receipts pass FLUSH_AT: alice's transport, full, pauses her mid-run."""
    data = [b"MESG bob x\r\n" * 3000 + b"STATUS\r\n"]
    assert_same(Limits(rate=0, join_timeout=0), data, lambda alice, bob: pause_on_write(alice))
    assert_same(
        Limits(rate=0, max_outbound=2000, join_timeout=0),  # dropped a little past FLUSH_AT
        data,
        lambda alice, bob: pause_on_write(alice),
    )


def test_a_reader_whose_output_reaches_flush_at_mid_run_gets_it_line_by_line() -> None:
    """Twenty 4,000-byte BCSTs: bob's output passes FLUSH_AT, he is paused and dropped."""
    data = [b"".join(b"BCST %d" % i + b"x" * 4000 + b"\r\n" for i in range(20))]
    limits = Limits(rate=0, max_line=8192, max_outbound=1000, join_timeout=0)
    assert_same(limits, data, lambda alice, bob: pause_on_write(bob))


def test_a_run_of_bcst_replies_reaching_flush_at_meets_flow_control_as_line_by_line() -> None:
    """Alice's replies pass FLUSH_AT: paused, then dropped; bob gets no more than line by line."""
    data = [b"BCST x\r\n" * 2000 + b"STATUS\r\n"]
    for max_outbound in (1 << 20, 2000):
        limits = Limits(rate=0, max_outbound=max_outbound, join_timeout=0)
        assert_same(limits, data, lambda alice, bob: pause_on_write(alice))


def test_a_long_read_of_bcsts_is_answered_in_several_runs_as_line_by_line() -> None:
    """400 BCSTs of 160 bytes in one read: runs end at BCST_RUN_SIZE."""
    data = [b"".join(b"BCST %03d" % i + b"y" * 150 + b"\r\n" for i in range(400))]
    limits = Limits(rate=0, max_line=8192, join_timeout=0)
    assert_same(limits, data, lambda alice, bob: None)
    assert_same(limits, data, lambda alice, bob: pause_on_write(bob))
