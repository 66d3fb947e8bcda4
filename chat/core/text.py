# -*- test-case-name: tests.test_commands -*-
"""
The input rules of the protocol: decoding, sanitising, command words, names.

Everything here is pure and Twisted-free.
"""

from __future__ import annotations

import re
from typing import Final

MAX_NAME_LENGTH: Final = 32
NAME_RULE: Final = f"1 to {MAX_NAME_LENGTH} ASCII letters and digits"

_NAME = re.compile(rf"[A-Za-z0-9]{{1,{MAX_NAME_LENGTH}}}")

# C0 controls but TAB, DEL, and the C1 controls: the code points a terminal
# may act on (ESC starts an escape sequence, CR and LF start a fake line).
# ... and the Unicode line and paragraph separators: some clients break lines there.
_CONTROLS: Final = dict.fromkeys(
    [c for c in range(0x20) if c != 0x09]
    + list(range(0x7F, 0xA0))
    + [0x2028, 0x2029]
    # Bidi controls (embeddings, overrides, isolates, marks): they reorder
    # what follows on the reader's screen, so "evil.exe" can show as
    # "exe.live" and a message can seem to say what it does not (the
    # "Trojan Source" trick).
    + [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]
    # Invisible characters that hide inside words: zero width space,
    # word joiner, and the byte order mark as zero width no-break space.
    # The zero width joiner and non-joiner stay: emoji sequences and the
    # spelling of Persian and Indic scripts need them, and they reorder
    # nothing.
    + [0x200B, 0x2060, 0xFEFF]
)


# The same for ASCII bytes, which have no C1 controls and no separators.
CONTROL_BYTES: Final = bytes(c for c in range(0x20) if c != 0x09) + b"\x7f"


def decode(line: bytes) -> str:
    """
    Turn a raw line into text that is safe to show on anyone's terminal.

    Invalid UTF-8 is replaced with U+FFFD, control characters, bidi
    controls and invisible characters are removed, and surrounding
    whitespace is stripped. Most lines are ASCII: they are
    cleaned as bytes, five times faster than as text.
    """
    if line.isascii():
        return line.translate(None, CONTROL_BYTES).decode("ascii").strip()
    return line.decode("utf-8", "replace").translate(_CONTROLS).strip()


def printable(text: str) -> str:
    """
    C{text} without the characters L{decode} removes (controls, bidi
    controls, invisible ones), and nothing else changed: spaces stay.
    """
    return text.translate(_CONTROLS)


def split_command(text: str) -> tuple[str, str]:
    """
    Split a decoded line into its command word and the rest.

    @return: C{(VERB, rest)}: the word upper-cased when it is purely ASCII
        letters (so that it can be dispatched on), else as typed; C{rest}
        has no surrounding whitespace.
    """
    parts = text.split(None, 1)
    verb = parts[0]
    if verb.isascii() and verb.isalpha():
        verb = verb.upper()
    return verb, parts[1] if len(parts) > 1 else ""


def is_valid_name(name: str) -> bool:
    """Whether C{name} follows L{NAME_RULE}."""
    return _NAME.fullmatch(name) is not None


def fold(name: str) -> str:
    """
    The registry key of a name. Names are unique ignoring case and the
    common look-alikes (C{l}/C{1}/C{I}, C{O}/C{0}), so nobody can register
    C{A1ice} next to C{alice}.
    """
    # After lower-casing, i, l and 1 look alike, and so do o and 0. Three
    # replaces beat one translate for names this short.
    return name.lower().replace("i", "l").replace("1", "l").replace("0", "o")
