# -*- test-case-name: tests.test_framing -*-
"""
Splitting an inbound byte stream into lines, with a hard length limit.

C{LineReceiver.dataReceived} is not used for this because it does not fit the
rules: it splits on one fixed delimiter (an LF-only client would never end a
line), it hands the whole buffer, pipelined lines included, to
C{lineLengthExceeded}, and after an overlong line it starts parsing the rest of
that same line as if it were a new command.
"""

from __future__ import annotations

from typing import Final


class _LineTooLong:
    """Marker for a line that passed the limit and was discarded."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "LINE_TOO_LONG"


LINE_TOO_LONG: Final = _LineTooLong()


class LineSplitter:
    """
    Turns reads into complete lines; lines end in LF, with an optional CR.

    At most C{max_length + 1} bytes of an unfinished line are kept between
    reads. A line longer than C{max_length} is reported once, as
    L{LINE_TOO_LONG}, as soon as the limit is passed, and the rest of it is
    skipped up to its end; the lines after it are delivered as usual.
    """

    __slots__ = ("_buffer", "_discarding", "max_length")

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._buffer = b""
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes | _LineTooLong]:
        """
        Add one read.

        @return: the lines completed by this read, in order, without their
            terminators; L{LINE_TOO_LONG} in place of each overlong line.
        """
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        lines: list[bytes | _LineTooLong] = []
        start = 0
        if self._discarding:
            newline = data.find(b"\n")
            if newline < 0:
                return lines
            start = newline + 1
            self._discarding = False
        limit = self.max_length
        find = data.find
        while (newline := find(b"\n", start)) >= 0:
            stop = newline - 1 if newline > start and data[newline - 1] == 13 else newline
            lines.append(data[start:stop] if stop - start <= limit else LINE_TOO_LONG)
            start = newline + 1
        rest = len(data) - start
        if rest > limit + 1:  # one extra byte: the CR of a CR LF may be pending
            lines.append(LINE_TOO_LONG)
            self._discarding = True
        elif rest:
            self._buffer = data[start:]
        return lines
