"""
The rule that keeps a cluster's BCST receipt true, without Redis: a node
hands a broadcast from another node only to its users who were registered
at the registry version the sender counted at (the race it settles, a
node registering its users again while others broadcast, is exercised for
real in tests/test_cluster_lease.py, but cannot be timed there at will).
"""

from __future__ import annotations

from twisted.internet.task import Clock

from chat.cluster.room import BROADCASTS, EVENTS, ClusterRoom


class Reader:
    """A local user of the node: what it was handed."""

    prefs = None
    machine = False

    def __init__(self, name: str) -> None:
        self.name: str | None = name
        self.got: list[bytes] = []

    def deliver(self, data: bytes) -> None:
        self.got.append(data)


def test_a_broadcast_reaches_the_users_its_sender_counted() -> None:
    room = ClusterRoom(10, "redis://127.0.0.1:1/0", "node1", Clock())
    early, late = Reader("early"), Reader("late")
    room._local = {"early": early, "late": late}  # registered at versions 3 and 7
    room._since = {early: 3, late: 7}
    room.received(BROADCASTS, "node0 5\nBCST ann: counted early only\0node0 7\nBCST ann: both")
    assert early.got == [b"BCST ann: counted early only", b"BCST ann: both"]
    assert late.got == [b"BCST ann: both"]


def test_what_arrives_while_resynchronising_waits_for_the_versions() -> None:
    room = ClusterRoom(10, "redis://127.0.0.1:1/0", "node1", Clock())
    reader = Reader("bob")
    room._local = {"bob": reader}
    room._buffered = []
    room.received(BROADCASTS, "node0 2\nBCST ann: before bob was registered again")
    room.received(EVENTS, "4 join node1 bob")
    room.received(BROADCASTS, "node0 4\nBCST ann: after")
    assert reader.got == []
    room._since[reader] = 4  # what the re-assertion answered
    buffered, room._buffered = room._buffered, None
    for channel, batch in buffered:
        room.received(channel, batch)
    assert reader.got == [b"BCST ann: after"]
    assert room._replica == {"bob": ("node1", "bob")}
