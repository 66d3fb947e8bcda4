# -*- test-case-name: tests.test_telnet -*-
"""
Removal of telnet commands from an inbound byte stream (RFC 854, sans I/O).

A real C{telnet} client sends C{IAC} sequences: option negotiation
(C{IAC DO x}), commands (C{IAC IP} on Ctrl-C, C{IAC AYT}), subnegotiations
(C{IAC SB ... IAC SE}). None of that is chat text, so it is removed here before
lines are split. Line ends, C{CR NUL} included, are left to the line splitter
(L{chat.core.framing}), which knows them all.

C{twisted.conch.telnet.Telnet} does the same job, but it walks the input one
byte at a time in Python and is a C{Protocol} rather than a filter in front of
a C{LineReceiver}. This filter looks for C{IAC} with one C-level scan of each
read, and walks only the reads that have one (or that start inside a
command); it keeps a state and one byte between reads, whatever the peer
sends.

L{NegotiatingTelnet} is the filter of a connection in edit mode
(L{chat.core.editmode}): it accepts the options that mode asks for (the
server's ECHO and SUPPRESS-GO-AHEAD, the client's NAWS), reads the window
size, and refuses every other option as this filter does.
"""

from __future__ import annotations

from typing import Final, Protocol

IAC = 255
DONT = 254
DO = 253
WONT = 252
WILL = 251
SB = 250
EC = 247
SE = 240

ECHO: Final = 1
SGA: Final = 3
"""SUPPRESS-GO-AHEAD (RFC 858): with ECHO, the client sends each key as it is pressed."""
NAWS: Final = 31
"""Negotiate About Window Size (RFC 1073): the client tells its width and height."""
MAX_SUBNEGOTIATION: Final = 16
"""The bytes of a subnegotiation kept (NAWS needs 5); the rest of a longer one is skipped."""

_IAC_BYTE = b"\xff"
_BS_BYTE = b"\x08"
_DATA, _COMMAND, _OPTION, _SUBNEGOTIATION, _SUBNEGOTIATION_IAC = range(5)


class TelnetInput:
    """
    A stateful filter: feed it the bytes of each read, get back chat bytes.

    Option negotiation is refused, as RFC 854 allows: C{DO x} is answered with
    C{WONT x} and C{WILL x} with C{DONT x}. Refusals from the peer get no
    answer, so two refusing ends can never loop. Answering C{DO TIMING-MARK}
    matters: after Ctrl-C a telnet client discards everything it receives
    until the mark is acknowledged.

    C{IAC EC} (erase character) becomes a BS byte, which the line splitter
    applies as it does a BS typed in the line. Every other command is
    removed; data bytes, line ends included, pass as they are.
    """

    __slots__ = ("_state", "_verb")

    def __init__(self) -> None:
        self._state = _DATA
        self._verb = 0

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """
        Filter one read.

        @param data: bytes as received from the peer, in any segmentation.
        @return: C{(chat_bytes, replies)}: the input with every telnet command
            removed, and the negotiation answers to send back (often empty).
        """
        # IAC as an int: C{bytes.__contains__} takes the memchr path at once,
        # where a bytes argument first fails as an int, at the cost of an
        # exception set and cleared.
        if self._state != _DATA or IAC in data:
            return self._strip(data)
        return data, b""

    def _strip(self, data: bytes) -> tuple[bytes, bytes]:
        """Walk C{data} through the command state machine (slow path)."""
        kept: list[bytes] = []
        replies = bytearray()
        state = self._state
        i, end = 0, len(data)
        while i < end:
            if state == _DATA:
                j = data.find(_IAC_BYTE, i)
                if j < 0:
                    kept.append(data[i:])
                    break
                kept.append(data[i:j])
                i = j + 1
                state = _COMMAND
                continue
            if state == _SUBNEGOTIATION:
                j = data.find(_IAC_BYTE, i)
                if j < 0:
                    self._subnegotiation(data[i:])
                    break
                self._subnegotiation(data[i:j])
                i = j + 1
                state = _SUBNEGOTIATION_IAC
                continue
            byte = data[i]
            i += 1
            if state == _COMMAND:
                if byte == IAC:
                    kept.append(_IAC_BYTE)
                    state = _DATA
                elif byte in (WILL, WONT, DO, DONT):
                    self._verb = byte
                    state = _OPTION
                elif byte == SB:
                    self._subnegotiationStarted()
                    state = _SUBNEGOTIATION
                elif byte == EC:
                    kept.append(_BS_BYTE)
                    state = _DATA
                else:
                    # NOP, IP, AO, AYT, EL, GA, BRK, DM, stray SE: no data.
                    state = _DATA
            elif state == _OPTION:
                replies += self._option(self._verb, byte)
                state = _DATA
            elif byte == SE:  # _SUBNEGOTIATION_IAC
                self._subnegotiated()
                state = _DATA
            else:
                if byte == IAC:  # IAC IAC: a value byte of 255
                    self._subnegotiation(_IAC_BYTE)
                state = _SUBNEGOTIATION
        self._state = state
        return b"".join(kept), bytes(replies)

    def _option(self, verb: int, option: int) -> bytes:
        """The answer to C{IAC verb option}: a refusal of a request, nothing to a refusal."""
        if verb == DO:
            return bytes((IAC, WONT, option))
        if verb == WILL:
            return bytes((IAC, DONT, option))
        return b""

    def _subnegotiationStarted(self) -> None:
        """C{IAC SB}: a subnegotiation starts."""

    def _subnegotiation(self, data: bytes) -> None:
        """Bytes of a subnegotiation: this filter skips them."""

    def _subnegotiated(self) -> None:
        """The end of a subnegotiation (C{IAC SE})."""


class Negotiation(Protocol):
    """What L{NegotiatingTelnet} tells of the client's answers (L{chat.core.editmode})."""

    def agreed(self) -> None:
        """The client lets the server echo (C{DO ECHO})."""

    def refused(self) -> None:
        """The client echoes itself (C{DONT ECHO})."""

    def resized(self, width: int, height: int) -> None:
        """The client's window size (NAWS)."""


class NegotiatingTelnet(TelnetInput):
    """
    The filter of a connection that asked for edit mode: the server offered
    C{WILL ECHO}, C{WILL SGA} and C{DO NAWS}, so the client's answers to
    those are acknowledgements, told to C{negotiation} and never answered
    (answering an acknowledgement could loop). Every other option is
    refused as L{TelnetInput} refuses it. C{IAC SB NAWS w w h h IAC SE} is
    read (a value byte of 255 comes doubled, C{IAC IAC}), in any
    segmentation; at most L{MAX_SUBNEGOTIATION} bytes of one are kept.
    """

    __slots__ = ("_negotiation", "_sub")

    def __init__(self, negotiation: Negotiation) -> None:
        super().__init__()
        self._negotiation = negotiation
        self._sub: bytearray | None = None

    def _option(self, verb: int, option: int) -> bytes:
        if option == ECHO and verb in (DO, DONT):
            if verb == DO:
                self._negotiation.agreed()
            else:
                self._negotiation.refused()
            return b""
        if (option == SGA and verb in (DO, DONT)) or (option == NAWS and verb in (WILL, WONT)):
            return b""
        return super()._option(verb, option)

    def _subnegotiationStarted(self) -> None:
        self._sub = bytearray()

    def _subnegotiation(self, data: bytes) -> None:
        sub = self._sub
        if sub is not None:
            if len(sub) + len(data) <= MAX_SUBNEGOTIATION:
                sub += data
            else:
                self._sub = None  # too long to be one this filter reads: skipped

    def _subnegotiated(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None and len(sub) == 5 and sub[0] == NAWS:
            self._negotiation.resized(sub[1] << 8 | sub[2], sub[3] << 8 | sub[4])
