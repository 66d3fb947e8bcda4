"""Tests for L{chat.room.Room}."""

from __future__ import annotations

from chat.room import Admission, Room


class Mailbox:
    def __init__(self) -> None:
        self.name: str | None = None
        self.received: list[bytes] = []

    def deliver(self, data: bytes) -> None:
        self.received.append(data)


def test_capacity_and_case_insensitive_names() -> None:
    room = Room(2)
    bob, other_bob, carol, dave = Mailbox(), Mailbox(), Mailbox(), Mailbox()
    assert room.join("Bob", bob) is Admission.JOINED
    assert room.join("bOB", other_bob) is Admission.TAKEN
    assert room.join("carol", carol) is Admission.JOINED
    assert room.join("dave", dave) is Admission.FULL
    assert room.names() == ["Bob", "carol"]
    assert room.find("BOB") is bob


def test_leave_frees_the_name_and_the_seat() -> None:
    room = Room(1)
    bob, again = Mailbox(), Mailbox()
    room.join("bob", bob)
    assert room.leave(bob)
    assert not room.leave(bob)
    assert room.join("BOB", again) is Admission.JOINED


def test_leave_of_a_stranger_with_a_taken_name_changes_nothing() -> None:
    room = Room(2)
    bob, impostor = Mailbox(), Mailbox()
    room.join("bob", bob)
    impostor.name = "bob"
    assert not room.leave(impostor)
    assert room.find("bob") is bob


def test_broadcast_skips_the_sender_and_shares_the_bytes() -> None:
    room = Room(3)
    a, b, c = Mailbox(), Mailbox(), Mailbox()
    for name, box in (("a", a), ("b", b), ("c", c)):
        room.join(name, box)
    data = b"BCST a: hi\r\n"
    assert room.broadcast(data, a) == 2
    assert a.received == []
    assert b.received[0] is data and c.received[0] is data
