# -*- test-case-name: tests.test_presence -*-
"""
What a user says about themselves to the room: an away message (C{AWAY}),
and the users they ignore (C{IGNORE}).

Most members have neither: their L{Member.prefs} is C{None}, and the
message paths check only that. A member with an away message or an ignore
list has a L{Prefs}, consulted on the slower paths (a MESG receipt that
says the user is away, a delivery that is skipped for an ignorer).
"""

from __future__ import annotations

from typing import Final

from chat.core.text import fold

MAX_AWAY: Final = 120
"""Characters of an away message kept; the rest is cut off (and the reply says so)."""
MAX_IGNORED: Final = 50
"""Names one connection may ignore at once: every store is bounded."""


def away_message(text: str) -> tuple[str, bool]:
    """
    An away message from cleaned text (L{chat.core.text.decode}): at most
    L{MAX_AWAY} characters, inner runs of blanks as one space (a tab would
    end the message's field in a machine line). Whether it was cut.
    """
    words = " ".join(text.split())
    return words[:MAX_AWAY].rstrip(), len(words) > MAX_AWAY


class Prefs:
    """
    One user's away message and ignore list.

    @ivar away: the away message, or C{None} when present.
    @ivar ignored: folded name -> the name as the user typed it.
    """

    __slots__ = ("away", "ignored")

    def __init__(self) -> None:
        self.away: str | None = None
        self.ignored: dict[str, str] = {}

    def accepts(self, sender: str) -> bool:
        """Whether what C{sender} writes reaches this user."""
        return not self.ignored or fold(sender) not in self.ignored

    def empty(self) -> bool:
        """Nothing set: the member can go back to C{prefs = None}."""
        return self.away is None and not self.ignored
