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

from typing import Final, cast


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
        if self._discarding:
            newline = data.find(b"\n")
            if newline < 0:
                return []
            data = data[newline + 1 :]
            self._discarding = False
        # Whole reads at the C level: when every LF follows a CR, as a telnet
        # client sends them, one split; else a split and a pass for the CRs.
        stripped: list[bytes]
        if data.count(b"\n") == data.count(b"\r\n"):
            *stripped, rest = data.split(b"\r\n")
        else:
            *lines, rest = data.split(b"\n")
            stripped = [line[:-1] if line.endswith(b"\r") else line for line in lines]
        limit = self.max_length
        found: list[bytes | _LineTooLong]
        if stripped and max(map(len, stripped)) > limit:
            found = [line if len(line) <= limit else LINE_TOO_LONG for line in stripped]
        else:
            found = cast("list[bytes | _LineTooLong]", stripped)
        if len(rest) > limit + 1:  # one extra byte: the CR of a CR LF may be pending
            found.append(LINE_TOO_LONG)
            self._discarding = True
        elif rest:
            self._buffer = rest
        return found
