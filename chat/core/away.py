# -*- test-case-name: tests.test_resume -*-
"""
What keeps a user's place while their connection is down: resume tokens and
the away session that holds their name and messages during the grace period.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections import deque
from typing import Final, Protocol

from chat.core.personal import Prefs
from chat.core.room import Delivery

_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{12}")


def is_token(text: str) -> bool:
    """Whether C{text} has the shape of a resume token."""
    return _TOKEN.fullmatch(text) is not None


def new_token() -> str:
    """
    A resume token: 72 random bits, 12 URL-safe characters. With flood
    control at its default, guessing one within a grace period would take
    on the order of 10**19 tries per second of it.
    """
    return secrets.token_urlsafe(9)


class Timer(Protocol):
    """A call scheduled by the caller's clock (Twisted's C{IDelayedCall} is one)."""

    def active(self) -> bool: ...

    def cancel(self) -> None: ...

    def reset(self, secondsLater: float) -> None: ...


class AwaySession:
    """
    A registered user whose connection dropped without QUIT. It stays in the
    room under the user's name (counting against the capacity) and holds
    what is sent to them, at most C{limit} lines, the oldest dropped first.

    @ivar expires: when the grace period ends, in the clock's seconds.
    @ivar dropped: how many held lines were dropped for room.
    @ivar timer: the call that ends the grace period.
    @ivar prefs: the user's away message and ignore list, kept for the resume.
    @ivar lastInput: when the user last sent a command, for LIST's idle time.
    """

    away = True
    notices = 0  # nobody is connected to read them
    machine = False
    """Whether the user read the machine format: what is held is in it."""

    def __init__(self, name: str, token: str, limit: int, expires: float) -> None:
        self.name: str | None = name
        self.token = token
        self.expires = expires
        self.held: deque[bytes] = deque(maxlen=limit)
        self.dropped = 0
        self.timer: Timer | None = None
        self.prefs: Prefs | None = None
        self.lastInput: float | None = None

    def deliver(self, data: bytes) -> Delivery:
        if len(self.held) == self.held.maxlen:
            self.dropped += 1
        self.held.append(data)
        return Delivery.HELD

    def ready(self, size: int) -> bool:
        """Never: each line is held on its own, and counts against the limit."""
        return False

    def matches(self, token: str) -> bool:
        """Compare in constant time: the comparison leaks nothing of the token."""
        return hmac.compare_digest(self.token.encode(), token.encode())

    def bye(self, reason: str, details: str, *fields: object) -> None:
        """Nobody is connected to tell; the grace period simply ends."""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
