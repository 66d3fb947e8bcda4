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
"""

from __future__ import annotations

IAC = 255
DONT = 254
DO = 253
WONT = 252
WILL = 251
SB = 250
EC = 247
SE = 240

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
                    break
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
                    state = _SUBNEGOTIATION
                elif byte == EC:
                    kept.append(_BS_BYTE)
                    state = _DATA
                else:
                    # NOP, IP, AO, AYT, EL, GA, BRK, DM, stray SE: no data.
                    state = _DATA
            elif state == _OPTION:
                if self._verb == DO:
                    replies += bytes((IAC, WONT, byte))
                elif self._verb == WILL:
                    replies += bytes((IAC, DONT, byte))
                state = _DATA
            else:  # _SUBNEGOTIATION_IAC
                state = _DATA if byte == SE else _SUBNEGOTIATION
        self._state = state
        return b"".join(kept), bytes(replies)
