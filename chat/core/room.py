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
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Final, Generic, Protocol, TypeVar

from chat.core.personal import Prefs
from chat.core.presence import Notice
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
    """
    What the room needs of a user: a display name and a mailbox.

    @ivar away: whether the user is held for a resume (their connection
        dropped, C{--grace}); not the away message of C{AWAY}, in L{prefs}.
    @ivar notices: which presence notices the user gets (L{chat.core.presence}).
    @ivar prefs: the away message and ignore list, or C{None} (most users).
    """

    name: str | None
    away: bool
    notices: int
    prefs: Prefs | None

    @property
    def lastInput(self) -> float | None:
        """When the user last sent a command (clock seconds), or C{None}."""

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

    def bye(self, reason: str, details: str, *fields: object) -> None:
        """
        Tell the user why the server closes their connection (C{fields}: in
        the machine format), and close it.
        """


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


Listed = tuple[str, bool, float | None, str | None]
"""One line of LIST: the name; whether the user is held for a resume (the
grace period); when it last sent a command (C{None}: not known on this node);
its away message. A plain tuple: LIST makes one per user."""


def listed(member: Member) -> Listed:
    """What LIST shows of a member this node serves."""
    prefs = member.prefs
    return (
        str(member.name),
        member.away,
        member.lastInput,
        None if prefs is None else prefs.away,
    )


def audience(members: Collection[Member], sender: Member) -> tuple[list[Member], int, int]:
    """
    Who of C{members} gets what C{sender} writes: all but the sender and
    those who ignore it, and how many ignore it (and of those, how many are
    held for a resume), so that the sender's count is what it would be
    without them (an ignored sender is not told). Members without
    preferences, nearly all, cost one check.
    """
    plain = [m for m in members if m.prefs is None and m is not sender]
    if len(plain) >= len(members) - 1:
        return plain, 0, 0
    name = str(sender.name)
    ignoring = held = 0
    for member in members:
        prefs = member.prefs
        if prefs is None or member is sender:
            continue
        if prefs.accepts(name):
            plain.append(member)
        else:
            ignoring += 1
            held += member.away
    return plain, ignoring, held


def announce(members: Collection[Member], lines: Notice, sender: Member | None) -> int:
    """
    Hand a presence notice to each of C{members} who wants it, but the
    C{sender}: the bytes are shared, a member who turned notices off costs
    a flag check. C{members} is a copy: a delivery may drop a member.

    @return: how many were handed one.
    """
    count = 0
    for member in members:
        level = member.notices
        if level and member is not sender:
            member.deliver(lines[level])
            count += 1
    return count


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

    def names(self) -> list[Listed] | Later[list[Listed]]:
        """Registered users, in order of joining, with what LIST shows of them."""

    def known(self) -> Iterable[str]:
        """
        The names this process knows now, without asking anyone (Tab
        completion in edit mode): every registered name in a local room, the
        replica's in a cluster.
        """

    def broadcast(
        self, lines: list[bytes], sender: Member, machine: list[bytes] | None = None
    ) -> Iterator[tuple[int, int]]:
        """
        Deliver each line to every member but C{sender}: C{(reached, held)}
        per line. With C{machine}, the lines of members who read the machine
        format (an action's).
        """

    def announce(self, lines: Notice, sender: Member | None) -> int:
        """Hand a presence notice to every member who wants it but C{sender}; how many."""


class LocalRoom:
    """
    One chat room in memory: at most C{capacity} members, names unique
    ignoring case.

    @ivar capacity: the most members registered at once.
    """

    __slots__ = ("_arrived", "_counted", "_later", "_members", "_notices", "_spelled", "capacity")

    def __init__(
        self,
        capacity: int,
        later: Callable[[LocalRoom], None] | None = None,
        counted: Callable[[int], None] | None = None,
    ) -> None:
        """
        @param later: makes presence notices wait: called with the room when
            the first notice waits, so that L{flush} is called a little later
            (L{chat.server.outbox.Outbox.later}); without it each notice is
            handed on at once.
        @param counted: told how many notices were handed on, at L{flush}.
        """
        self.capacity = capacity
        self._members: dict[str, Member] = {}
        # The same members by their names as registered: most lookups use
        # that spelling and are spared the folding.
        self._spelled: dict[str, Member] = {}
        self._later = later
        self._counted = counted
        self._notices: list[tuple[Notice, Member | None]] = []
        # Members who arrived while notices wait: the first they may get.
        self._arrived: dict[Member, int] = {}

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
        if self._later is not None:  # notices that wait are not for it, nor its own
            self._arrived[member] = len(self._notices)
        return Admission.JOINED

    def leave(self, member: Member) -> bool:
        """
        Remove C{member}; its name is free again at once.

        @return: whether it was registered.
        """
        if member.name is None or self._members.get(fold(member.name)) is not member:
            return False
        del self._members[fold(member.name)], self._spelled[member.name]
        self._arrived.pop(member, None)
        return True

    def find(self, name: str) -> Member | None:
        """
        The member registered as C{name}, in any case, or C{None}, to relay
        a message to: the notices that wait go first.
        """
        if self._notices:
            self.flush()
        return self.findLocal(name)

    def findLocal(self, name: str) -> Member | None:
        """The member registered as C{name} (every member of this room is local)."""
        member = self._spelled.get(name)
        return member if member is not None else self._members.get(fold(name))

    def replace(self, old: Member, new: Member) -> None:
        """Put C{new} in C{old}'s place under the same name (away and back)."""
        new.name = old.name
        self._members[fold(str(old.name))] = self._spelled[str(old.name)] = new
        if self._later is not None:
            self._arrived[new] = len(self._notices)

    def known(self) -> Iterable[str]:
        return self._spelled.keys()

    def names(self) -> list[Listed]:
        """
        Registered users, names as they were registered, in order of joining,
        with their away state and the time of their last command.
        """
        return [
            (name, m.away, m.lastInput, None if m.prefs is None else m.prefs.away)
            for name, m in self._spelled.items()
        ]

    def announce(self, lines: Notice, sender: Member | None) -> int:
        """
        Hand a presence notice to every member who wants it but C{sender},
        at once (and say to how many), or, with C{later}, at L{flush}
        (and say 0: the count goes to C{counted} then).

        Waiting is what keeps a busy room cheap: with 1,000 users present,
        each join or leave is 1,000 deliveries and, at the end of the
        reactor turn, 1,000 writes; a tenth of a second of them goes to each
        user in one piece instead. The notices of that time are joined once
        for all who were there before it; only who arrived meanwhile gets
        its own part (what came after it, not about itself). A message
        relayed meanwhile (L{find}, L{broadcast}) first hands on what waits,
        so that nothing overtakes a notice: "alice joined" comes before
        alice's first message.
        """
        if self._later is None:
            return announce(list(self._members.values()), lines, sender)
        if not self._notices:
            self._later(self)
        self._notices.append((lines, sender))
        return 0

    def flush(self) -> None:
        """Hand on the notices that wait, to every member who wants them."""
        notices, self._notices = self._notices, []
        arrived, self._arrived = self._arrived, {}
        if not notices:
            return
        joined: dict[int, bytes] = {}  # by level: all the notices, for who was there
        count = 0
        for member in list(self._members.values()):  # a delivery may drop a member
            level = member.notices
            if not level:
                continue
            start = arrived.get(member)
            if start is None:  # there before them all: none is about it
                data = joined.get(level)
                if data is None:
                    data = joined[level] = b"".join(lines[level] for lines, _ in notices)
                count += len(notices)
            else:
                mine = [lines[level] for lines, about in notices[start:] if about is not member]
                data = b"".join(mine)
                count += len(mine)
            if data:
                member.deliver(data)
        if self._counted is not None:
            self._counted(count)

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
        if self._notices:  # they go before the broadcast
            self.flush()
        # Copied first: a delivery may drop a member, who leaves the room.
        members, ignoring, ignoringHeld = audience(self._members.values(), sender)
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
        reached = len(outcomes) - outcomes.count(Delivery.DROPPED) + ignoring
        held = outcomes.count(Delivery.HELD) + ignoringHeld
        for index, line in enumerate(lines):
            if machine is None:
                each = [member.deliver(line) for member in apart]
            else:
                form = machine[index]
                each = [member.deliver(form if member.machine else line) for member in apart]
            if self._notices:  # a delivery dropped someone: told before the reply
                self.flush()
            yield (
                reached + len(each) - each.count(Delivery.DROPPED),
                held + each.count(Delivery.HELD),
            )
