# -*- test-case-name: tests.test_edit -*-
"""
What a terminal in edit mode shows of the server's lines (sans I/O): the
look a user chose with C{MODE EDIT TIME BELL COLOR}, and the width of text
in terminal cells.

Only this module writes escape sequences into chat lines, and only its own
(SGR colours, BEL): the lines it decorates are the server's, whose user text
L{chat.core.text.decode} already cleaned; they are cleaned again here
(L{printable}), so that nothing but these sequences can reach the screen
whatever a line holds. The decoration goes before the tag or around the
sender's name, never inside the text, so user text still never looks like
a server line.
"""

from __future__ import annotations

import re
import time
import unicodedata
import zlib
from dataclasses import dataclass
from typing import Final

from chat.core.text import fold, printable

BEL: Final = "\x07"
RESET: Final = "\x1b[0m"
DIM: Final = "\x1b[2m"

KIND_COLOURS: Final = {
    "INFO": "\x1b[36m",  # cyan
    "ERR": "\x1b[31m",  # red
    "BYE": "\x1b[1;31m",  # bold red
    "MESG": "\x1b[1;35m",  # bold magenta
    "BCST": "\x1b[1m",  # bold
    "*": "\x1b[1m",  # an action: bold, as a broadcast
}
"""One fixed colour per kind of line; other lines (OK, USER, HIST) are plain."""

SENDER_PALETTE: Final = (
    "\x1b[32m",
    "\x1b[33m",
    "\x1b[34m",
    "\x1b[35m",
    "\x1b[36m",
    "\x1b[92m",
    "\x1b[93m",
    "\x1b[94m",
    "\x1b[95m",
    "\x1b[96m",
)
"""The colours of senders' names; red is left to errors."""

OPTIONS: Final = ("TIME", "BELL", "COLOR")
"""The words after C{MODE EDIT}, in any order."""

# A relayed line: MESG or BCST, the sender, the text; or an action.
_RELAYED: Final = re.compile(r"(MESG|BCST) ([A-Za-z0-9]+): (.*)|(\*) ([A-Za-z0-9]+) (.*)")


@dataclass
class Look:
    """
    How lines are shown: C{time}, a C{HH:MM} stamp (UTC, the server's
    clock) before each; C{bell}, a BEL on a private message and on one's
    name in a broadcast or an action; C{color}, colours by kind of line and
    by sender. All off: the lines as line mode shows them.
    """

    time: bool = False
    bell: bool = False
    color: bool = False

    @classmethod
    def parse(cls, words: list[str]) -> Look:
        """
        The look named by C{words} (upper-case, any order).

        @raise ValueError: a word that is not one of L{OPTIONS}.
        """
        unknown = [word for word in words if word not in OPTIONS]
        if unknown:
            raise ValueError(unknown[0])
        return cls("TIME" in words, "BELL" in words, "COLOR" in words)

    def words(self) -> list[str]:
        return [word for word, on in zip(OPTIONS, (self.time, self.bell, self.color)) if on]


def mentions(text: str, name: str) -> bool:
    """Whether C{text} holds C{name} as a whole word, in any case."""
    return (
        re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", text, re.IGNORECASE)
        is not None
    )


def sender_colour(name: str) -> str:
    """A colour of L{SENDER_PALETTE} for C{name}: the same on every line and every server."""
    return SENDER_PALETTE[zlib.crc32(fold(name).encode()) % len(SENDER_PALETTE)]


def decorate(line: str, look: Look, now: float, me: str | None) -> str:
    """
    One server line as C{look} shows it to C{me}, without its line end.

    @param line: a line the server sends, without CRLF.
    @param now: the time, for the stamp.
    @param me: the user's name (for the bell on a mention), if registered.
    """
    line = printable(line)
    bell = ""
    shown = line
    match = _RELAYED.fullmatch(line)
    if match is not None:
        found = match.group(1, 2, 3) if match.group(1) else match.group(4, 5, 6)
        tag, sender, text = map(str, found)
        if look.bell and (tag == "MESG" or (me is not None and mentions(text, me))):
            bell = BEL
        if look.color:
            colour = KIND_COLOURS[tag]
            name = f"{sender_colour(sender)}{sender}{RESET}"
            if tag == "*":
                shown = f"{colour}*{RESET} {name} {text}"
            else:
                shown = f"{colour}{tag}{RESET} {name}: {text}"
    elif look.color:
        kind = KIND_COLOURS.get(line.split(" ", 1)[0])
        if kind is not None:
            shown = f"{kind}{line}{RESET}"
    if look.time:
        stamp = time.strftime("%H:%M", time.gmtime(now))
        shown = f"{DIM}{stamp}{RESET} {shown}" if look.color else f"{stamp} {shown}"
    return bell + shown


def cells(char: str) -> int:
    """The terminal cells C{char} takes: 2 for wide (East Asian) ones, 0 for combining ones."""
    if char < "\u0300":  # Latin and the like: the common case
        return 1
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def width(text: str) -> int:
    """The terminal cells C{text} takes."""
    return len(text) if text.isascii() else sum(map(cells, text))
