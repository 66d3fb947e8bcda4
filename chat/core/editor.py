# -*- test-case-name: tests.test_edit -*-
"""
The line editor of edit mode (sans I/O): keys in, the line being typed,
complete lines out, and the input row drawn.

In edit mode the client sends each key as it is pressed and the server
echoes (L{chat.core.editmode}), so the line is edited here: L{Editor} takes
the place of the L{chat.core.framing.LineSplitter} with the same interface
(C{feed} gives complete lines; C{end}, C{pending}, C{seen_line_end}), and
the session's input rules (flood control, the input meter, C{--max-line})
apply to its lines unchanged.

Twisted has a line editor with history, C{twisted.conch.recvline.
HistoricRecvLine}, on C{twisted.conch.insults}' key parser. It is not used:
C{chat.core} imports nothing from Twisted (tests/test_layout.py), and it is
a terminal protocol that draws by moving the cursor over what it printed,
for a line that may wrap over several rows; it knows no window width. Here
the input row is always one row, redrawn whole (L{Editor.row}): a line
wider than the terminal scrolls sideways, as irssi's does, so that lines
printed above it and a resize can never leave half of it on the screen.

Keys: printable characters are inserted at the cursor; Enter (CR, CR LF,
CR NUL or LF) sends the line; Backspace (BS or DEL) and Delete
(C{ESC [ 3 ~}, Ctrl-D) erase; Left/Right (and Ctrl-B/Ctrl-F), Home/End (the
xterm, VT and rxvt forms, Ctrl-A/Ctrl-E) move; Ctrl-U erases up to the
cursor, Ctrl-K from it, Ctrl-W the word before it, Ctrl-C the line; Up/Down
(Ctrl-P/Ctrl-N) recall the lines sent; Tab completes a name; Ctrl-L
redraws. Other control characters and escape sequences do nothing.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from chat.core.framing import Line
from chat.core.screen import BEL, cells, width
from chat.core.text import printable

HISTORY_SIZE: Final = 50
"""The lines sent that Up recalls, the newest kept."""
MAX_PENDING: Final = 32
"""The bytes of an unfinished escape sequence kept between reads; a longer one is dropped."""
MAX_SHOWN_NAMES: Final = 20
"""Candidates listed by a second Tab; the rest are counted."""
MIN_WIDTH: Final = 8
"""Narrower windows (or a NAWS of 0) are drawn as this wide."""
MAX_WIDTH: Final = 1000
"""Wider windows are drawn as this wide: the row redrawn after each change is bounded."""
ERASE_ROW: Final = "\r\x1b[K"
"""Back to the first column, and erase the row."""
SECRET_COMMANDS: Final = frozenset(("OPER",))
"""Commands whose arguments are not kept for Up nor shown after Enter (a password)."""

# An escape sequence: CSI (parameters, intermediates, final), SS3 and a key,
# or ESC and one byte. Matched at the start of what follows an ESC.
_SEQUENCE: Final = re.compile(rb"\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]|O.|[\x00-\xff]", re.DOTALL)
_UNFINISHED: Final = re.compile(rb"(\[[\x30-\x3f]*[\x20-\x2f]*|O)?\Z")
_KEYS: Final = {
    b"[A": "up",
    b"OA": "up",
    b"[B": "down",
    b"OB": "down",
    b"[C": "right",
    b"OC": "right",
    b"[D": "left",
    b"OD": "left",
    b"[H": "home",
    b"OH": "home",
    b"[1~": "home",
    b"[7~": "home",
    b"[F": "end",
    b"OF": "end",
    b"[4~": "end",
    b"[8~": "end",
    b"[3~": "delete",
}
_CONTROL_KEYS: Final = {
    0x01: "home",
    0x02: "left",
    0x03: "clear",
    0x04: "delete",
    0x05: "end",
    0x06: "right",
    0x08: "backspace",
    0x09: "tab",
    0x0B: "kill_end",
    0x0C: "redraw",
    0x0E: "down",
    0x10: "up",
    0x15: "kill_start",
    0x17: "kill_word",
    0x7F: "backspace",
}
# Bytes that end a run of text: C0 controls, DEL (UTF-8 text has none of them).
_TEXT_RUN: Final = re.compile(rb"[^\x00-\x1f\x7f]+")


class Owner(Protocol):
    """What the editor needs of its connection (L{chat.core.editmode.EditMode})."""

    def names(self) -> Iterable[str]:
        """The names Tab completes."""

    def typed(self, line: str) -> None:
        """Show a line just sent (with its prompt) above the input row."""

    def notice(self, text: str) -> None:
        """Show C{text} (the candidates of a Tab) above the input row."""

    def changed(self) -> None:
        """The input row must be drawn again, at the end of this turn."""


class Editor:
    """
    The line being typed, its cursor, the lines sent, and their keys.

    @ivar max_length: the longest line in bytes of UTF-8 (C{--max-line}):
        a character that would pass it is refused with a bell.
    """

    __slots__ = (
        "_after_cr",
        "_bell",
        "_decoder",
        "_draft",
        "_history",
        "_offset",
        "_owner",
        "_pending",
        "_recalled",
        "_tabbed",
        "column",
        "cursor",
        "max_length",
        "text",
    )

    def __init__(self, max_length: int, owner: Owner) -> None:
        self.max_length = max_length
        self._owner = owner
        self.text = ""
        self.cursor = 0  # in characters
        self._offset = 0  # the first character shown: the row scrolls sideways
        self._pending = b""  # an unfinished escape sequence
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._after_cr = False
        self._bell = False
        self._history: list[str] = []
        self._recalled: int | None = None  # the index in _history shown, if any
        self._draft = ""  # the line being typed when Up was pressed
        self._tabbed = False  # the last key was a Tab that completed nothing
        self.column = 0  # the cursor's column in the row last drawn

    # The interface of chat.core.framing.LineSplitter

    @property
    def pending(self) -> int:
        """The bytes of the line being typed."""
        return len(self.text.encode())

    @property
    def seen_line_end(self) -> bool:
        """
        Always: the hint about line ends is for clients that do not know how
        a command ends, and a person in edit mode sees the prompt.
        """
        return True

    def feed(self, data: bytes) -> list[Line]:
        """
        Apply the keys of one read, in any segmentation.

        @return: the lines sent (Enter) by this read, in UTF-8, in order.
        """
        if self._pending:
            data, self._pending = self._pending + data, b""
        lines: list[Line] = []  # the splitter's type: never too long here
        i, end = 0, len(data)
        while i < end:
            run = _TEXT_RUN.match(data, i)
            if run is not None:
                self._insert(self._decoder.decode(run.group()))
                self._after_cr = False
                i = run.end()
                continue
            byte = data[i]
            i += 1
            if self._after_cr and byte in (0x0A, 0x00):
                self._after_cr = False  # the LF or NUL of a CR LF or CR NUL
                continue
            self._after_cr = byte == 0x0D
            if byte in (0x0D, 0x0A):
                lines.append(self._enter())
            elif byte == 0x1B:
                sequence = _SEQUENCE.match(data, i)
                if sequence is None or (
                    _UNFINISHED.match(data, i) is not None and len(data) - i < MAX_PENDING
                ):
                    self._pending = data[i - 1 :]  # the rest comes with the next read
                    break
                i = sequence.end()
                self._key(_KEYS.get(sequence.group()))
            else:
                self._key(_CONTROL_KEYS.get(byte))
        self._owner.changed()
        return lines

    def end(self) -> list[bytes]:
        """
        The input ended: nothing more is sent. Unlike the splitter's (a
        script's last line without a line end), a line being typed was not
        sent: a person closing telnet halfway through a line did not press
        Enter.
        """
        self.text, self.cursor = "", 0
        return []

    # Drawing

    def row(self, prompt: str, columns: int) -> str:
        """
        The input row for a window C{columns} wide: erased, then the prompt
        and the part of the line around the cursor, the cursor placed. The
        last column stays empty, so the terminal never wraps the row.
        """
        columns = drawn_width(columns)
        if width(prompt) > columns // 2:
            prompt = ""
        room = columns - 1 - width(prompt)
        text, cursor = self.text, self.cursor
        if cursor < self._offset:
            self._offset = cursor
        elif width(text[self._offset : cursor]) >= room:
            # Scrolled so that the cursor is in the last column of the row.
            offset, used = cursor, 0
            while offset and used + cells(text[offset - 1]) < room:
                offset -= 1
                used += cells(text[offset])
            self._offset = offset
        shown, used = [], 0
        for char in text[self._offset :]:
            used += width(char)
            if used > room:
                break
            shown.append(char)
        bell, self._bell = (BEL if self._bell else ""), False
        column = width(prompt) + width(text[self._offset : cursor])
        self.column = column
        move = f"\r\x1b[{column}C" if column else "\r"
        return f"{bell}{ERASE_ROW}{prompt}{''.join(shown)}{move}"

    # Editing

    def _insert(self, chars: str) -> None:
        chars = printable(chars)
        if not chars:
            return
        room = self.max_length - self.pending
        encoded = chars.encode()
        if len(encoded) > room:
            self._bell = True
            chars = encoded[:room].decode("utf-8", "ignore")
        self.text = self.text[: self.cursor] + chars + self.text[self.cursor :]
        self.cursor += len(chars)
        self._tabbed = False

    def _enter(self) -> bytes:
        line, self.text, self.cursor, self._offset = self.text, "", 0, 0
        self._recalled, self._draft, self._tabbed = None, "", False
        shown = line
        words = line.split(None, 1)
        secret = bool(words) and words[0].upper() in SECRET_COMMANDS
        if secret:
            shown = words[0] + " ***"
        elif line.strip() and (not self._history or self._history[-1] != line):
            self._history.append(line)
            del self._history[:-HISTORY_SIZE]
        self._owner.typed(shown)
        return line.encode()

    def _key(self, key: str | None) -> None:
        if key != "tab":
            self._tabbed = False
        if key is None:
            return
        action: Callable[[], None] = getattr(self, "_" + key)
        action()

    def _set(self, text: str, cursor: int) -> None:
        self.text, self.cursor = text, cursor

    def _left(self) -> None:
        self.cursor = max(self.cursor - 1, 0)

    def _right(self) -> None:
        self.cursor = min(self.cursor + 1, len(self.text))

    def _home(self) -> None:
        self.cursor = 0

    def _end(self) -> None:
        self.cursor = len(self.text)

    def _backspace(self) -> None:
        if self.cursor:
            self._set(self.text[: self.cursor - 1] + self.text[self.cursor :], self.cursor - 1)

    def _delete(self) -> None:
        self._set(self.text[: self.cursor] + self.text[self.cursor + 1 :], self.cursor)

    def _kill_start(self) -> None:
        self._set(self.text[self.cursor :], 0)

    def _kill_end(self) -> None:
        self._set(self.text[: self.cursor], self.cursor)

    def _kill_word(self) -> None:
        before = self.text[: self.cursor].rstrip(" ")
        start = before.rfind(" ") + 1
        self._set(self.text[:start] + self.text[self.cursor :], start)

    def _clear(self) -> None:
        self._set("", 0)
        self._recalled = None

    def _redraw(self) -> None:
        """Nothing changes: the row is drawn again after every read anyway."""

    # History

    def _up(self) -> None:
        history = self._history
        if self._recalled == 0 or not history:
            self._bell = True
            return
        if self._recalled is None:
            self._draft = self.text
            self._recalled = len(history)
        self._recalled -= 1
        self._set(history[self._recalled], len(history[self._recalled]))

    def _down(self) -> None:
        if self._recalled is None:
            self._bell = True
            return
        self._recalled += 1
        if self._recalled >= len(self._history):
            self._recalled = None
            self._set(self._draft, len(self._draft))
        else:
            line = self._history[self._recalled]
            self._set(line, len(line))

    # Completion

    def _tab(self) -> None:
        """
        Complete the name before the cursor: any word but the first (the
        command), so the recipient of MESG and a name in a message. One
        candidate: the name and a space; several: their common beginning,
        and on a second Tab the list of them; none: a bell.
        """
        before = self.text[: self.cursor]
        start = before.rfind(" ") + 1
        if not before[:start].strip():
            self._bell = True
            return
        fragment = before[start:].casefold()
        candidates = sorted(
            {name for name in self._owner.names() if name.casefold().startswith(fragment)},
            key=str.casefold,
        )
        if not candidates:
            self._bell = True
            return
        if len(candidates) == 1:
            completed = candidates[0] + " "
        else:
            completed = candidates[0][: _common(candidates)]
        if len(completed) > len(fragment):
            rest = self.text[self.cursor :]
            if completed.endswith(" ") and rest.startswith(" "):
                completed = completed[:-1]
            self._set(self.text[:start] + completed + rest, start + len(completed))
            if self.pending > self.max_length:  # undone: too long
                self._set(before + rest, len(before))
                self._bell = True
            return
        if self._tabbed:
            shown = candidates[:MAX_SHOWN_NAMES]
            more = len(candidates) - len(shown)
            self._owner.notice("Names: " + ", ".join(shown) + (f" and {more} more" if more else ""))
            self._tabbed = False
        else:
            self._bell = True
            self._tabbed = True


def drawn_width(columns: int) -> int:
    """The width the row is drawn for in a window C{columns} wide (NAWS may say 0, or 65535)."""
    return min(max(columns, MIN_WIDTH), MAX_WIDTH)


def _common(names: list[str]) -> int:
    """The length of the beginning all C{names} share, ignoring case."""
    length = 0
    for chars in zip(*(name.casefold() for name in names)):
        if len(set(chars)) > 1:
            break
        length += 1
    return length
