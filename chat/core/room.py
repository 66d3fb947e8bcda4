# -*- test-case-name: tests.test_room -*-
"""
The registry of users: capacity, case-insensitive names, and fan-out.

L{Room} is the interface that a session talks to, and L{LocalRoom} the room
of one process; a cluster's room (L{chat.cluster.room}) answers some calls
later, with a L{Later}. The room knows members only through L{Member}, so it
can be tested without a network, and a session never touches the registry's
dictionary.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from typing import Final, Generic, Protocol, TypeVar

from chat.core.text import fold

FLUSH_AT: Final = 64 * 1024
"""Bytes gathered for one connection that are handed on at once, mid-turn,
so that a burst meets the transport's flow control (C{pauseProducing}) as
soon as it would have without gathering."""


class Delivery(enum.Enum):
    """What became of a message handed to a member: the sender's receipt."""

    DELIVERED = "delivered"  # queued on the recipient's connection
    HELD = "held"  # kept for a user whose connection dropped (grace period)
    SENT = "sent"  # handed to the node of a user on another node
    DROPPED = "dropped"  # the recipient was just disconnected for not reading


class Member(Protocol):
    """What the room needs of a user: a display name and a mailbox."""

    name: str | None
    away: bool

    @property
    def machine(self) -> bool:
        """Whether the user reads the machine format (an action's line differs)."""

    def deliver(self, data: bytes) -> Delivery:
        """Queue C{data} for the user; must never raise."""

    def ready(self, size: int) -> bool:
        """
        Whether C{size} bytes would be queued now with no other effect
        (L{Delivery.DELIVERED}, nothing handed on, nobody dropped), so that
        several lines may go to this member in one piece.
        """

    def bye(self, reason: str, details: str) -> None:
        """Tell the user why the server closes their connection, and close it."""


class RoomUnavailable(Exception):
    """
    The room cannot answer now (a cluster room whose Redis is away); the
    protocol tells the user to try again.
    """


T = TypeVar("T")


class Later(Generic[T]):
    """
    An answer that a room gives later (a cluster room asks Redis): what a
    Deferred is to Twisted, without Twisted. The session that asked waits
    for it, and handles no more input before it is settled.
    """

    __slots__ = ("_error", "_settled", "_then", "_value")

    def __init__(self) -> None:
        self._settled = False
        self._value: T | None = None
        self._error: Exception | None = None
        self._then: tuple[Callable[[T], None], Callable[[Exception], None]] | None = None

    def then(self, callback: Callable[[T], None], errback: Callable[[Exception], None]) -> None:
        """Call C{callback} with the answer, or C{errback} with the error, once settled."""
        self._then = (callback, errback)
        if self._settled:
            self._call()

    def resolve(self, value: T) -> None:
        self._value, self._settled = value, True
        self._call()

    def fail(self, error: Exception) -> None:
        self._error, self._settled = error, True
        self._call()

    def _call(self) -> None:
        if self._then is None:
            return
        (callback, errback), self._then = self._then, None
        if self._error is not None:
            errback(self._error)
        else:
            callback(self._value)  # type: ignore[arg-type]  # settled: a T


class Admission(enum.Enum):
    """The outcome of L{Room.join}."""

    JOINED = "joined"
    FULL = "full"
    TAKEN = "taken"


class Room(Protocol):
    """
    What a session needs of a room. L{LocalRoom} answers at once; a
    cluster's room answers L{join}, L{find} and L{names} with a L{Later}
    when it must ask Redis, and raises L{RoomUnavailable} while it cannot.
    """

    capacity: int

    def __len__(self) -> int: ...

    def join(self, name: str, member: Member) -> Admission | Later[Admission]:
        """Register C{member} as C{name} if there is room and the name is free."""

    def leave(self, member: Member) -> bool:
        """Remove C{member}, freeing its name at once; whether it was registered."""

    def find(self, name: str) -> Member | None | Later[Member | None]:
        """The recipient of a MESG to C{name} (in any case), or C{None}."""

    def findLocal(self, name: str) -> Member | None:
        """The member of this process registered as C{name}, or C{None}."""

    def replace(self, old: Member, new: Member) -> None:
        """Put C{new} in C{old}'s place under the same name (away and back)."""

    def names(self) -> list[tuple[str, bool]] | Later[list[tuple[str, bool]]]:
        """Registered names, in order of joining, each with whether it is away."""

    def broadcast(
        self, lines: list[bytes], sender: Member, machine: list[bytes] | None = None
    ) -> Iterator[tuple[int, int]]:
        """
        Deliver each line to every member but C{sender}: C{(reached, held)}
        per line. With C{machine}, the lines of members who read the machine
        format (an action's).
        """


class LocalRoom:
    """
    One chat room in memory: at most C{capacity} members, names unique
    ignoring case.

    @ivar capacity: the most members registered at once.
    """

    __slots__ = ("_members", "_spelled", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._members: dict[str, Member] = {}
        # The same members by their names as registered: most lookups use
        # that spelling and are spared the folding.
        self._spelled: dict[str, Member] = {}

    def __len__(self) -> int:
        return len(self._members)

    def join(self, name: str, member: Member) -> Admission:
        """
        Register C{member} as C{name} if there is room and the name is free.

        """
        if len(self._members) >= self.capacity:
            return Admission.FULL
        key = fold(name)
        if key in self._members:
            return Admission.TAKEN
        self._members[key] = self._spelled[name] = member
        member.name = name
        return Admission.JOINED

    def leave(self, member: Member) -> bool:
        """
        Remove C{member}; its name is free again at once.

        @return: whether it was registered.
        """
        if member.name is None or self._members.get(fold(member.name)) is not member:
            return False
        del self._members[fold(member.name)], self._spelled[member.name]
        return True

    def find(self, name: str) -> Member | None:
        """The member registered as C{name}, in any case, or C{None}."""
        member = self._spelled.get(name)
        return member if member is not None else self._members.get(fold(name))

    findLocal = find  # every member of a single room is local

    def replace(self, old: Member, new: Member) -> None:
        """Put C{new} in C{old}'s place under the same name (away and back)."""
        new.name = old.name
        self._members[fold(str(old.name))] = self._spelled[str(old.name)] = new

    def names(self) -> list[tuple[str, bool]]:
        """
        Registered names as they were registered, in order of joining, each
        with whether the user is away.
        """
        return [(str(member.name), member.away) for member in self._members.values()]

    def broadcast(
        self, lines: list[bytes], sender: Member, machine: list[bytes] | None = None
    ) -> Iterator[tuple[int, int]]:
        """
        Deliver each of C{lines} (or of C{machine}, to a member who reads
        the machine format, when given) to every member but C{sender}, yielding
        C{(reached, held)} once each line is delivered: how many members it
        reached, and how many of those hold it until they are back.

        Several lines (a run of broadcasts in one read) go in one piece to
        each member who is present and reading, before the first yield: one
        delivery instead of one a line. The others (away, or not reading, a
        delivery to whom may drop them, or about to hand a burst on at
        L{FLUSH_AT}) get each line in turn, so that what it causes is in
        order with the caller's work between yields.
        """
        # Copied first: a delivery may drop a member, who leaves the room.
        members = [m for m in self._members.values() if m is not sender]
        data = b"".join(lines)
        together = members
        apart: list[Member] = []
        if len(lines) > 1:
            # Apart: a member for whom the run would not just be queued (away,
            # not reading, or about to hand a burst on at FLUSH_AT).
            size = len(data)
            together = [member for member in members if member.ready(size)]
            if len(together) < len(members):
                apart = [member for member in members if not member.ready(size)]
        if machine is None:
            outcomes = [member.deliver(data) for member in together]
        else:
            forms = b"".join(machine)
            outcomes = [member.deliver(forms if member.machine else data) for member in together]
        reached = len(outcomes) - outcomes.count(Delivery.DROPPED)
        held = outcomes.count(Delivery.HELD)
        for index, line in enumerate(lines):
            if machine is None:
                each = [member.deliver(line) for member in apart]
            else:
                form = machine[index]
                each = [member.deliver(form if member.machine else line) for member in apart]
            yield (
                reached + len(each) - each.count(Delivery.DROPPED),
                held + each.count(Delivery.HELD),
            )
