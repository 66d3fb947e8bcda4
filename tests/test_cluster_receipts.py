"""
The rules that keep a cluster's BCST receipt and presence notices true,
without Redis: a node hands a broadcast from another node only to its users
who were registered at the registry version the sender counted at, and a
notice to those registered before its event (the race it settles, a
node registering its users again while others broadcast, is exercised for
real in tests/test_cluster_lease.py, but cannot be timed there at will).
"""

from __future__ import annotations

from twisted.internet.task import Clock

from chat.cluster.room import ClusterRoom
from chat.cluster.scripts import BROADCASTS, EVENTS, PRESENCE
from chat.core import presence


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


class Listener(Reader):
    """A local user who wants presence notices in the human format."""

    notices = presence.HUMAN


def test_a_join_notice_is_published_even_when_no_one_elsewhere_is_known_yet() -> None:
    """
    ann has just joined on node0, her event not yet at node1, when bob
    joins on node1: node1 must still publish "bob joined" (it did not: it
    knew of no one elsewhere, and ann was never told).
    """
    room = ClusterRoom(10, "redis://127.0.0.1:1/0", "node1", Clock())
    room.available = True
    bob = Listener("bob")
    room._local, room._replica, room._since = {"bob": bob}, {"bob": ("node1", "bob")}, {bob: 2}
    room.announce(presence.notice(presence.Kind.JOIN, "bob"), bob)
    assert room._outbox[PRESENCE] == ["node1 2\nINFO bob joined\r\nPRESENCE JOIN bob\r\n"]


def test_a_notice_reaches_the_users_registered_before_its_event() -> None:
    room = ClusterRoom(10, "redis://127.0.0.1:1/0", "node1", Clock())
    early, late = Listener("early"), Listener("late")
    room._local = {"early": early, "late": late}
    room._since = {early: 1, late: 3}
    # ann joined at version 2: late, who joined after her, is not told.
    room.received(PRESENCE, "node0 2\nINFO ann joined\r\nPRESENCE JOIN ann\r\n")
    room.received(PRESENCE, "node0 9\nINFO ann left\r\nPRESENCE QUIT ann\r\n")
    assert early.got == [b"INFO ann joined\r\n", b"INFO ann left\r\n"]
    assert late.got == [b"INFO ann left\r\n"]
