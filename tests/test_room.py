"""Tests for L{chat.core.room.LocalRoom}, the room of one process."""

from __future__ import annotations

from chat.core.room import Admission, Delivery, LocalRoom


class Mailbox:
    away = False
    notices = 0
    prefs = None
    lastInput = None
    blocked = False  # a reader that stopped reading takes no run in one piece

    def __init__(self) -> None:
        self.name: str | None = None
        self.received: list[bytes] = []

    def deliver(self, data: bytes) -> Delivery:
        self.received.append(data)
        return Delivery.DELIVERED

    def ready(self, size: int) -> bool:
        return not self.blocked

    def bye(self, reason: str, details: str) -> None:
        raise AssertionError("the room never closes a member")


def test_capacity_and_case_insensitive_names() -> None:
    room = LocalRoom(2)
    bob, other_bob, carol, dave = Mailbox(), Mailbox(), Mailbox(), Mailbox()
    assert room.join("Bob", bob) is Admission.JOINED
    assert room.join("bOB", other_bob) is Admission.TAKEN
    assert room.join("carol", carol) is Admission.JOINED
    assert room.join("dave", dave) is Admission.FULL
    assert room.names() == [("Bob", False, None, None), ("carol", False, None, None)]
    assert room.find("BOB") is bob


def test_leave_frees_the_name_and_the_seat() -> None:
    room = LocalRoom(1)
    bob, again = Mailbox(), Mailbox()
    room.join("bob", bob)
    assert room.leave(bob)
    assert not room.leave(bob)
    assert room.join("BOB", again) is Admission.JOINED


def test_leave_of_a_stranger_with_a_taken_name_changes_nothing() -> None:
    room = LocalRoom(2)
    bob, impostor = Mailbox(), Mailbox()
    room.join("bob", bob)
    impostor.name = "bob"
    assert not room.leave(impostor)
    assert room.find("bob") is bob


def test_broadcast_skips_the_sender_and_shares_the_bytes() -> None:
    room = LocalRoom(3)
    a, b, c = Mailbox(), Mailbox(), Mailbox()
    for name, box in (("a", a), ("b", b), ("c", c)):
        room.join(name, box)
    data = b"BCST a: hi\r\n"
    assert list(room.broadcast([data], a)) == [(2, 0)]
    assert a.received == []
    assert b.received[0] is data and c.received[0] is data


def test_a_run_goes_in_one_piece_to_readers_and_a_line_at_a_time_to_the_others() -> None:
    from chat.core.away import AwaySession

    room = LocalRoom(4)
    talker, reader, stuck = Mailbox(), Mailbox(), Mailbox()
    for name, box in (
        ("talker", talker),
        ("reader", reader),
        ("stuck", stuck),
        ("gone", Mailbox()),
    ):
        room.join(name, box)
    away = AwaySession("gone", "t" * 12, limit=5, expires=60.0)
    room.replace(room.find("gone"), away)
    stuck.blocked = True
    run = room.broadcast([b"1\r\n", b"2\r\n"], talker)
    assert next(run) == (3, 1)
    assert reader.received == [b"1\r\n2\r\n"]  # before the first line's answer
    assert stuck.received == [b"1\r\n"] and list(away.held) == [b"1\r\n"]
    assert list(run) == [(3, 1)]
    assert stuck.received == [b"1\r\n", b"2\r\n"] and list(away.held) == [b"1\r\n", b"2\r\n"]
    assert talker.received == []


def test_look_alike_names_are_the_same_name() -> None:
    room = LocalRoom(5)
    alice = Mailbox()
    room.join("alice", alice)
    for impostor in ("A1ice", "ALICE", "aIice", "al1ce"):
        assert room.join(impostor, Mailbox()) is Admission.TAKEN
    bob = Mailbox()
    room.join("B0b", bob)
    assert room.find("bob") is bob
    assert room.find("BOB") is bob


def test_away_members_hold_and_are_counted() -> None:
    from chat.core.away import AwaySession

    room = LocalRoom(2)
    bob, talker = Mailbox(), Mailbox()
    room.join("bob", bob)
    room.join("talker", talker)
    away = AwaySession("bob", "t" * 12, limit=2, expires=60.0)
    room.replace(bob, away)
    assert room.names() == [("bob", True, None, None), ("talker", False, None, None)]
    assert list(room.broadcast([b"1"], talker)) == [(1, 1)]
    assert list(room.broadcast([b"2"], talker)) == [(1, 1)]
    assert list(room.broadcast([b"3"], talker)) == [(1, 1)]
    assert list(away.held) == [b"2", b"3"] and away.dropped == 1
    assert room.join("carol", Mailbox()) is Admission.FULL  # away still counts
    back = Mailbox()
    room.replace(away, back)
    assert room.find("bob") is back and back.name == "bob"
