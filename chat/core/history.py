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
from itertools import repeat
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
        """Keep C{texts}, broadcast in this order by C{sender} at C{when}."""

    def recent(self, count: int) -> list[Entry] | Later[list[Entry]]:
        """The last C{count} broadcasts kept (or fewer), oldest first."""


class LocalHistory:
    """The broadcasts of one process, in a deque bounded by L{size}."""

    __slots__ = ("_kept", "size")

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._kept: deque[Entry] = deque(maxlen=size)

    def keep(self, when: float, verb: str, sender: str, texts: list[str]) -> None:
        # The common row of one, and a longer row in a loop at C speed.
        if len(texts) == 1:
            self._kept.append((when, verb, sender, texts[0]))
        else:
            self._kept.extend(zip(repeat(when), repeat(verb), repeat(sender), texts))

    def recent(self, count: int) -> list[Entry]:
        kept = self._kept
        return list(kept)[len(kept) - count :] if count < len(kept) else list(kept)


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
