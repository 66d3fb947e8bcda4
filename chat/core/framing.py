# -*- test-case-name: tests.test_framing -*-
"""
Splitting an inbound byte stream into lines, with a hard length limit.

Lines end the ways terminals end them: CR LF (telnet and most clients), LF
(C{nc} and other Unix tools), CR NUL (telnet's bare carriage return) and a
bare CR (C{socat STDIO,raw} and other character-at-a-time clients, on Enter).
A line is given out as soon as its CR arrives, since a client that sends a
bare CR then waits for the answer; an LF or NUL right after a CR, in the same
read or the next, belongs to that line end and is skipped. A UTF-8 byte order
mark at the very start of the stream (Windows tools send one) is removed.

Each complete line then goes through L{chat.core.terminal.edit}: escape sequences
removed, BS and DEL applied. That is done per complete line, so how the bytes
were split into reads never changes a line, and no escape state crosses reads.

This is the hottest path of the server. A read of whole CR LF lines with none
of the bytes L{chat.core.terminal.edit} acts on, the common case, costs one split
and one C-level pass over the read; only other reads take the general path.

C{LineReceiver.dataReceived} is not used for this because it does not fit the
rules: it splits on one fixed delimiter (an LF-only client would never end a
line), it hands the whole buffer, pipelined lines included, to
C{lineLengthExceeded}, and after an overlong line it starts parsing the rest of
that same line as if it were a new command.
"""

from __future__ import annotations

import enum
import re
from typing import Final, cast

from chat.core.terminal import BS, DEL, EDITING_BYTES, ESC, edit


class _LineTooLong(enum.Enum):
    """
    Marker for a line that passed the limit and was discarded. An enum of
    one member, so that type checkers narrow C{line is LINE_TOO_LONG}.
    """

    LINE_TOO_LONG = enum.auto()

    def __repr__(self) -> str:
        return "LINE_TOO_LONG"

    __str__ = __repr__


LINE_TOO_LONG: Final = _LineTooLong.LINE_TOO_LONG

Line = bytes | _LineTooLong
"""What splitting gives: a complete line, or L{LINE_TOO_LONG} in its place."""

BYTE_ORDER_MARK: Final = b"\xef\xbb\xbf"

# Every line end: CR LF, CR NUL, a bare CR, LF.
_LINE_END: Final = re.compile(rb"\r[\n\x00]?|\n")

# A read in which these are all CR LF pairs can take the fast path.
_SPECIAL_BYTES: Final = b"\r\n" + EDITING_BYTES
# Bytes as ints: C{int in bytes} is a plain memchr, where C{bytes in bytes}
# first fails as an int, at the cost of an exception set and cleared.
_CR: Final = 0x0D


class LineSplitter:
    """
    Turns reads into complete lines: lines end in CR LF, CR NUL, CR or LF.

    At most C{max_length} bytes of an unfinished line are kept between reads
    (the CR of a CR LF is never held back: a CR ends its line at once). A
    line longer than C{max_length} bytes as sent (before its escape sequences
    and erasures are taken out) is reported once, as L{LINE_TOO_LONG}, as soon
    as the limit is passed, and the rest of it is skipped up to its CR or LF;
    the lines after it are delivered as usual.
    """

    __slots__ = (
        "_after_cr",
        "_buffer",
        "_discarding",
        "_fresh",
        "_seen_line_end",
        "max_length",
    )

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._buffer = b""
        self._discarding = False
        # The last byte taken was a CR: an LF or NUL next is part of its line end.
        self._after_cr = False
        # Nothing of the stream taken yet but a part of a byte order mark.
        self._fresh = True
        self._seen_line_end = False

    @property
    def pending(self) -> int:
        """
        The number of bytes of the unfinished line held (0 if none): bytes
        a client sent without a line end yet. An overlong line being skipped
        holds none.
        """
        return len(self._buffer)

    @property
    def seen_line_end(self) -> bool:
        """Whether any line end has been received on this stream."""
        return self._seen_line_end

    def feed(self, data: bytes) -> list[Line]:
        """
        Add one read.

        @return: the lines completed by this read, in order, without their
            terminators and edited (L{chat.core.terminal.edit}); L{LINE_TOO_LONG}
            in place of each overlong line.
        """
        if self._after_cr and data:
            self._after_cr = False
            if data[:1] in (b"\n", b"\x00"):
                data = data[1:]
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        if self._fresh:
            if len(data) < len(BYTE_ORDER_MARK) and BYTE_ORDER_MARK.startswith(data):
                self._buffer = data  # maybe a byte order mark, maybe not: wait
                return []
            self._fresh = False
            data = data.removeprefix(BYTE_ORDER_MARK)
        if self._discarding:
            end = _LINE_END.search(data)
            if end is None:
                return []
            self._discarding = self._after_cr = False
            self._seen_line_end = True
            data = data[end.end() :]
            if not data and end.group() == b"\r":
                self._after_cr = True
                return []
        lines = data.split(b"\r\n")
        # Whole reads at the C level. When every CR, LF, ESC, BS and DEL of
        # the read is in one of its CR LF pairs, the split is the answer.
        if len(data) - len(data.translate(None, _SPECIAL_BYTES)) == 2 * len(lines) - 2:
            editing = False
        else:
            # Other line ends: LF alone (still C-level), or any mix of them.
            lines = _LINE_END.split(data) if _CR in data else data.split(b"\n")
            # A CR last: the LF or NUL of a CR LF or CR NUL may come next.
            self._after_cr = data.endswith(b"\r")
            editing = ESC in data or BS in data or DEL in data
        rest = lines.pop()
        limit = self.max_length
        found: list[Line]
        if not lines:
            found = []
        else:
            self._seen_line_end = True
            if editing:
                found = [edit(line) if len(line) <= limit else LINE_TOO_LONG for line in lines]
            elif max(map(len, lines)) > limit:
                found = [line if len(line) <= limit else LINE_TOO_LONG for line in lines]
            else:
                found = cast("list[Line]", lines)
        if len(rest) > limit:
            found.append(LINE_TOO_LONG)
            self._discarding = True
        elif rest:
            self._buffer = rest
        return found

    def end(self) -> list[bytes]:
        """
        The stream has ended (the client closed its sending side): take the
        unfinished line as the last one.

        @return: C{[line]}, the unfinished line edited like any other line;
            C{[]} if there is none, or if it was an overlong line being
            skipped (already reported). The splitter is empty afterwards.
        """
        line, discarding = self._buffer, self._discarding
        self._buffer = b""
        self._discarding = self._after_cr = self._fresh = False
        if discarding or not line:
            return []
        return [edit(line)]
