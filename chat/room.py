# -*- test-case-name: tests.test_room -*-
"""
The registry of users: capacity, case-insensitive names, and fan-out.

The room knows members only through L{Member}, so it can be tested without
a network, and the protocol never touches the registry's dictionary.
"""

from __future__ import annotations

import enum
from typing import Protocol

from chat.commands import fold


class Member(Protocol):
    """What the room needs of a connection: a display name and a mailbox."""

    name: str | None

    def deliver(self, data: bytes) -> None:
        """Queue C{data} for the user; must never raise."""

    def close(self, data: bytes) -> None:
        """Send C{data}, then close the connection."""


class RoomUnavailable(Exception):
    """
    The room cannot answer now (a cluster room whose Redis is away); the
    protocol tells the user to try again.
    """


class Admission(enum.Enum):
    """The outcome of L{Room.join}."""

    JOINED = "joined"
    FULL = "full"
    TAKEN = "taken"


class Room:
    """
    One chat room: at most C{capacity} members, names unique ignoring case.

    @ivar capacity: the most members registered at once.
    """

    __slots__ = ("_members", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._members: dict[str, Member] = {}

    def __len__(self) -> int:
        return len(self._members)

    def join(self, name: str, member: Member) -> Admission:
        """
        Register C{member} as C{name} if there is room and the name is free.

        A cluster room answers with a L{Deferred} instead; see L{chat.cluster}.
        """
        if len(self._members) >= self.capacity:
            return Admission.FULL
        key = fold(name)
        if key in self._members:
            return Admission.TAKEN
        self._members[key] = member
        member.name = name
        return Admission.JOINED

    def leave(self, member: Member) -> bool:
        """
        Remove C{member}; its name is free again at once.

        @return: whether it was registered.
        """
        if member.name is None or self._members.get(fold(member.name)) is not member:
            return False
        del self._members[fold(member.name)]
        return True

    def find(self, name: str) -> Member | None:
        """The member registered as C{name}, in any case, or C{None}."""
        return self._members.get(fold(name))

    def names(self) -> list[str]:
        """Registered names as they were registered, in order of joining."""
        return [member.name for member in self._members.values() if member.name]

    def broadcast(self, data: bytes, sender: Member) -> int:
        """
        Deliver the same bytes to every member but C{sender}.

        @return: how many members it was delivered to.
        """
        recipients = [m for m in self._members.values() if m is not sender]
        for member in recipients:
            member.deliver(data)
        return len(recipients)
