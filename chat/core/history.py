# -*- test-case-name: tests.test_history -*-
"""
The broadcasts a server keeps for C{HISTORY}: the last C{--history} BCST
and ME lines, never a private message.

A session hands a row of broadcasts to L{History.keep} once the room has
delivered them: one bounded append per broadcast, never per recipient, so
the broadcast path pays nothing for its fan-out. L{LocalHistory} keeps them
in memory; a cluster keeps them in Redis (L{chat.cluster.room.ClusterRoom}),
so that every node replays the same ones, and answers with a L{Later}.
"""

from __future__ import annotations

from collections import deque
from typing import Final, Protocol

from chat.core.room import Later

Entry = tuple[float, str, str, str]
"""One kept broadcast: when (the clock's seconds), verb (C{BCST} or C{ME}),
sender, text."""

DEFAULT_SIZE: Final = 50
MAX_COUNT_DIGITS: Final = 9
"""A HISTORY count longer than this is refused before it is converted:
C{int()} of thousands of digits costs time, and no server keeps that many."""


class History(Protocol):
    """Where a server's broadcasts are kept, and read back."""

    @property
    def size(self) -> int:
        """The most broadcasts kept (C{--history}); 0 keeps none."""

    def keep(self, when: float, verb: str, sender: str, texts: list[str]) -> None:
        """
        Keep C{texts}, broadcast in this order by C{sender} at C{when}. The
        list may be kept as it is: the caller leaves it unchanged.
        """

    def recent(self, count: int) -> list[Entry] | Later[list[Entry]]:
        """The last C{count} broadcasts kept (or fewer), oldest first."""


class LocalHistory:
    """
    The broadcasts of one process, oldest first, at most L{size} of them
    (plus, for a moment, the rest of the oldest row).

    A session's row of broadcasts (the BCSTs of one read) is kept as one
    item with the list of its texts: one small allocation a row rather
    than one a broadcast, which the collector of cycles would count too.
    """

    __slots__ = ("_count", "_rows", "size")

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._rows: deque[tuple[float, str, str, list[str]]] = deque()
        self._count = 0  # the texts in _rows

    def keep(self, when: float, verb: str, sender: str, texts: list[str]) -> None:
        """Keep C{texts}; the caller does not change the list afterwards."""
        if not self.size:
            return
        rows = self._rows
        rows.append((when, verb, sender, texts))
        self._count += len(texts)
        # Drop the oldest rows whose texts are no longer among the last size.
        while self._count - len(rows[0][3]) >= self.size:
            self._count -= len(rows.popleft()[3])

    def recent(self, count: int) -> list[Entry]:
        entries: list[Entry] = []
        for when, verb, sender, texts in reversed(self._rows):
            entries.extend((when, verb, sender, text) for text in reversed(texts))
            if len(entries) >= count:
                break
        del entries[count:]
        entries.reverse()
        return entries


def wanted(rest: str, size: int) -> int:
    """
    How many broadcasts C{HISTORY rest} asks for: all that are kept when
    C{rest} is empty, else a whole number from 1 to C{size}.

    @raise ValueError: for anything else (0, a sign, not a number, more than
        the server keeps), with the reason for the user.
    """
    if not rest:
        return size
    if not size:
        raise ValueError("HISTORY: this server keeps no broadcasts")
    if not (rest.isascii() and rest.isdigit()) or len(rest) > MAX_COUNT_DIGITS:
        raise ValueError(f"HISTORY [<count>], a whole number from 1 to {size}")
    count = int(rest)
    if not 1 <= count <= size:
        raise ValueError(
            f"HISTORY [<count>], a whole number from 1 to {size}: "
            f"the server keeps the last {size} broadcasts"
        )
    return count


def encode_entry(entry: Entry) -> str:
    """An entry as one string (for Redis): its fields, space-separated, the text last."""
    when, verb, sender, text = entry
    return f"{when!r} {verb} {sender} {text}"


def decode_entry(kept: str) -> Entry:
    """
    The entry L{encode_entry} made.

    @raise ValueError: if C{kept} is not one.
    """
    when, verb, sender, text = kept.split(" ", 3)
    return float(when), verb, sender, text
