# -*- test-case-name: tests.test_motd -*-
"""
The message of the day (C{--motd FILE}): the text of a file as the INFO
lines that follow the greeting.

Its text is cleaned as users' text is (no control characters, so no
terminal escape sequences from a file either), and bounded: the file is
sent to every connection, so its size is what each new connection costs.
"""

from __future__ import annotations

from typing import Final

from chat.core import grammar
from chat.core.text import decode

MAX_BYTES: Final = 4096
"""The largest message of the day, in bytes of the file."""


class MotdTooLarge(ValueError):
    """The file is larger than L{MAX_BYTES}."""


def motd_lines(data: bytes) -> bytes:
    """
    The INFO lines of a message of the day: one per line of C{data}, with
    the blank lines at its start and end left out (a blank line inside it
    is an C{INFO} line with no text).

    @raise MotdTooLarge: if C{data} is longer than L{MAX_BYTES}.
    """
    if len(data) > MAX_BYTES:
        raise MotdTooLarge(f"more than {MAX_BYTES} bytes; a message of the day is at most that")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a BOM, as some editors write
    lines = [decode(line) for line in data.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    start = 0
    while start < len(lines) and not lines[start]:
        start += 1
    return b"".join(grammar.info(line) for line in lines[start:])
