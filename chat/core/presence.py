# -*- test-case-name: tests.test_presence -*-
"""
Presence notices: who joined, left, lost the connection or was removed.

A notice is made once per event, in both formats (L{Notice}), and every
member who wants notices is handed the one of its format: a recipient costs
one delivery of shared bytes, and one that turned them off a flag check
(L{Member.notices} is C{OFF}, C{HUMAN} or C{MACHINE}, an index into the
L{Notice}). Human connections get them unless they say C{NOTICES OFF};
machine connections only after C{NOTICES ON}, as C{PRESENCE} lines.
"""

from __future__ import annotations

import enum
from typing import Final

from chat.core.grammar import CRLF, code

OFF: Final = 0
HUMAN: Final = 1
MACHINE: Final = 2

Notice = tuple[bytes, bytes, bytes]
"""C{(b"", human line, machine line)}: indexed by a member's L{notices} level."""


class Kind(enum.Enum):
    """What happened to a user: the machine word, and the human phrase."""

    JOIN = "joined"
    QUIT = "left"
    LOST = "lost the connection"
    HELD = "lost the connection; the name is held for a resume for {0} seconds"
    RESUMED = "is back, resuming the session"
    EXPIRED = "did not come back; the name is free"
    REMOVED = "was disconnected by the server: {0}"


def notice(kind: Kind, name: str, *fields: str) -> Notice:
    """
    The lines of one event, made once for every recipient: C{INFO name
    phrase} and C{PRESENCE KIND name [fields]} (a reason as its code).
    """
    human = f"INFO {name} {kind.value.format(*fields)}".encode() + CRLF
    words = (code(field) if kind is Kind.REMOVED else field for field in fields)
    machine = " ".join(("PRESENCE", kind.name, name, *words)).encode() + CRLF
    return b"", human, machine


def is_join(lines: Notice) -> bool:
    """Whether C{lines} tell that a user joined (L{Kind.JOIN})."""
    return lines[2].startswith(b"PRESENCE JOIN ")


def level(machine: bool, chosen: bool | None) -> int:
    """
    The notices a connection gets: as chosen with C{NOTICES ON|OFF}, else
    the default of its format (human: on; machine: off until asked).
    """
    wanted = not machine if chosen is None else chosen
    if not wanted:
        return OFF
    return MACHINE if machine else HUMAN


def split(both: str) -> Notice:
    """A notice from its two lines as they travel between nodes (L{joined})."""
    human, _, machine = both.partition("\r\n")
    return b"", (human + "\r\n").encode(), machine.encode()


def joined(lines: Notice) -> str:
    """The two lines of a notice as one string, for another node (L{split})."""
    return (lines[1] + lines[2]).decode()
