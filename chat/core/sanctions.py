# -*- test-case-name: tests.test_moderation -*-
"""
Bans and mutes: who, until when, by whom, and why, in a bounded store.

A sanction is keyed by what it applies to: C{name:FOLDED} (a username,
look-alikes included), C{address:IP} (connections from that address) or
C{mute:FOLDED}. Expired sanctions are dropped whenever they are looked at,
and a store never holds more than its capacity: a new sanction past it is
refused (the operator is told), never an old one silently dropped.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Final

from chat.core.text import fold, is_valid_name

MAX_BANS: Final = 1000
MAX_MUTES: Final = 1000
MAX_MINUTES: Final = 525_600
"""A year: the longest ban or mute."""
MAX_REASON: Final = 200
"""Characters of an operator's reason that are kept."""
FILE_VERSION: Final = 1


@dataclass(frozen=True)
class Sanction:
    """
    @ivar key: what it applies to (see the module docstring).
    @ivar target: the name or address as the operator wrote it.
    @ivar until: when it ends, in the clock's seconds (the epoch, in a server).
    @ivar by: the username of the operator who decided it.
    @ivar reason: the operator's words, or C{""}.
    """

    key: str
    target: str
    until: float
    by: str
    reason: str

    def left(self, now: float) -> int:
        """Whole seconds left at C{now}, at least 1 while in force."""
        return max(1, int(self.until - now + 0.999))


def address_key(text: str) -> str | None:
    """The key of an IP address in its canonical form, or C{None} if not one."""
    try:
        return "address:" + str(ipaddress.ip_address(text))
    except ValueError:
        return None


def ban_key(target: str) -> str | None:
    """
    The key of a C{BAN} target: an IP address (v4 or v6), else a username;
    C{None} if it is neither.
    """
    key = address_key(target)
    if key is not None:
        return key
    return "name:" + fold(target) if is_valid_name(target) else None


def name_key(name: str) -> str:
    return "name:" + fold(name)


def mute_key(name: str) -> str:
    return "mute:" + fold(name)


class Sanctions:
    """At most C{capacity} sanctions in force, by key."""

    __slots__ = ("_by_key", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._by_key: dict[str, Sanction] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Sanction]:
        return iter(list(self._by_key.values()))

    def get(self, key: str, now: float) -> Sanction | None:
        """The sanction in force on C{key} at C{now}, if any (an expired one is dropped)."""
        sanction = self._by_key.get(key)
        if sanction is not None and sanction.until <= now:
            del self._by_key[key]
            return None
        return sanction

    def add(self, sanction: Sanction, now: float) -> bool:
        """
        Put C{sanction} in force, replacing one on the same key.

        @return: C{False} if the store is full of sanctions still in force.
        """
        if sanction.key not in self._by_key and len(self._by_key) >= self.capacity:
            self.prune(now)
            if len(self._by_key) >= self.capacity:
                return False
        self._by_key[sanction.key] = sanction
        return True

    def remove(self, key: str, now: float) -> Sanction | None:
        """Lift the sanction on C{key}; the one in force, if there was one."""
        sanction = self.get(key, now)
        self._by_key.pop(key, None)
        return sanction

    def prune(self, now: float) -> None:
        """Drop every expired sanction."""
        for key in [k for k, s in self._by_key.items() if s.until <= now]:
            del self._by_key[key]

    def replace(self, sanctions: Iterable[Sanction]) -> None:
        """Hold exactly C{sanctions} (as loaded), as many as fit."""
        self._by_key = {}
        for sanction in sanctions:
            if len(self._by_key) >= self.capacity:
                break
            self._by_key[sanction.key] = sanction


def dumps(sanction: Sanction) -> str:
    """One sanction as JSON (one line): the file's entries and Redis's values."""
    return json.dumps(asdict(sanction), ensure_ascii=False, separators=(",", ":"))


def loads(text: str) -> Sanction:
    """
    Read L{dumps}' output.

    @raise ValueError: if it is not a sanction.
    """
    data = json.loads(text)
    if not isinstance(data, dict) or set(data) != {"key", "target", "until", "by", "reason"}:
        raise ValueError(f"not a sanction: {text[:80]!r}")
    sanction = Sanction(**data)
    if not all(isinstance(getattr(sanction, f), str) for f in ("key", "target", "by", "reason")):
        raise ValueError(f"not a sanction: {text[:80]!r}")
    if not isinstance(sanction.until, int | float):
        raise TypeError(f"not a sanction: {text[:80]!r}")
    return sanction


def file_text(sanctions: Iterable[Sanction]) -> str:
    """The bans file: a version line, then one JSON sanction per line."""
    return "".join([f"chat-bans {FILE_VERSION}\n", *(dumps(s) + "\n" for s in sanctions)])


def read_file_text(text: str) -> list[Sanction]:
    """
    Read L{file_text}'s output.

    @raise ValueError: naming the first bad line.
    """
    lines = text.splitlines()
    if not lines or lines[0] != f"chat-bans {FILE_VERSION}":
        raise ValueError(f"the first line is not 'chat-bans {FILE_VERSION}'")
    sanctions = []
    for number, line in enumerate(lines[1:], 2):
        try:
            sanctions.append(loads(line))
        except (ValueError, TypeError) as error:
            raise ValueError(f"line {number}: {error}") from None
    return sanctions
