# -*- test-case-name: tests.test_framing -*-
"""
What a terminal puts in a line besides its text: escape sequences, and the
erasures of Backspace and Delete (sans I/O).

A line-mode client (a telnet client by default, C{nc} on a cooked terminal)
edits the line itself and sends the result. A character-at-a-time client
(C{socat STDIO,raw}, a terminal emulator's raw mode) sends the bytes of the
keys as they are pressed: an arrow key is an escape sequence (C{ESC [ D}, or
C{ESC O D} in application mode), Backspace is BS or DEL. Left as they were,
others would see C{hello[D}, and C{ESC [ A list} (up arrow, then a command)
would be an unknown command, since L{chat.core.text.decode} removes only the
ESC byte.

L{edit} takes one complete line and gives the line the user meant: escape
sequences are removed whole, then each BS or DEL erases the character before
it. A sequence is removed, not acted on: after a left arrow the next
characters are still added at the end. Working on whole lines, never on a
stream, means how the bytes were split into reads can never change a line,
and no state crosses reads.
"""

from __future__ import annotations

import re
from typing import Final

ESC: Final = 0x1B
BS: Final = 0x08
DEL: Final = 0x7F

EDITING_BYTES: Final = b"\x1b\x08\x7f"
"""The bytes L{edit} acts on: a line without any of them is left as it is."""

# ECMA-48's forms, as xterm reads them. Each alternative takes what is there
# of its form: a sequence cut short by the end of the line, or by a byte that
# cannot continue it, is removed up to there, and that byte stays.
_ESCAPE_SEQUENCE: Final = re.compile(
    rb"\x1b(?:"
    # CSI: parameter bytes, intermediate bytes, one final byte.
    rb"\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    # OSC, DCS, SOS, PM, APC: a string up to BEL or ST (ESC \). Another ESC
    # ends the string and starts a sequence of its own.
    rb"|[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"
    # SS3: one more character (the keypad and F1-F4 in application mode).
    rb"|O[\x20-\x7e]?"
    # nF (intermediate bytes, then a final byte) and the two-byte forms;
    # also a lone ESC, at the end of the line or before a byte that no
    # sequence starts with.
    rb"|[\x20-\x2f]*[\x30-\x7e]?"
    rb")"
)


def edit(line: bytes) -> bytes:
    """
    The line as the user saw it on the terminal when pressing Enter.

    @param line: one complete line, without its line end.
    @return: C{line} without its escape sequences, with each BS (0x08) or
        DEL (0x7F) applied, in that order. Other bytes are left for
        L{chat.core.text.decode}.
    """
    if ESC in line:
        line = remove_escape_sequences(line)
    if BS in line or DEL in line:
        line = apply_erasures(line)
    return line


def remove_escape_sequences(line: bytes) -> bytes:
    """
    Remove every terminal escape sequence from C{line}, whole.

    CSI (C{ESC [}), SS3 (C{ESC O}), the string sequences (C{ESC ]}, C{ESC P},
    C{ESC X}, C{ESC ^}, C{ESC _}, up to BEL, C{ESC \\} or the end of the
    line), and the other forms (C{ESC}, intermediate bytes, a final byte).
    """
    return _ESCAPE_SEQUENCE.sub(b"", line)


def apply_erasures(line: bytes) -> bytes:
    """
    Let each BS or DEL erase the character before it, as a terminal does.

    A character is a UTF-8 character: with the last byte go the continuation
    bytes before it and their lead byte, so that erasing C{\\xc3\\xa9}
    (C{e} with an acute accent) leaves no half of it. At the start of the
    line there is nothing to erase.
    """
    pieces = line.replace(b"\x7f", b"\x08").split(b"\x08")
    kept = bytearray(pieces[0])
    for piece in pieces[1:]:
        _erase_last_character(kept)
        kept += piece
    return bytes(kept)


def _erase_last_character(kept: bytearray) -> None:
    """Remove the last UTF-8 character of C{kept}, if any."""
    end = start = len(kept)
    while start and 0x80 <= kept[start - 1] <= 0xBF:
        start -= 1
    if start == end:
        start = max(end - 1, 0)
    elif start and kept[start - 1] >= 0xC0:
        start -= 1
    del kept[start:]
