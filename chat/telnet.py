# -*- test-case-name: tests.test_telnet -*-
"""
Removal of telnet commands from an inbound byte stream (RFC 854, sans I/O).

A real C{telnet} client sends C{IAC} sequences: option negotiation
(C{IAC DO x}), commands (C{IAC IP} on Ctrl-C, C{IAC AYT}), subnegotiations
(C{IAC SB ... IAC SE}), and C{CR NUL} for a bare carriage return. None of
that is chat text, so it is removed here before lines are split.

C{twisted.conch.telnet.Telnet} does the same job, but it walks the input one
byte at a time in Python and is a C{Protocol} rather than a filter in front of
a C{LineReceiver}. This filter uses C{bytes.find} and C{bytes.replace}, so the
common case (no C{IAC} in a read) costs one C-level scan, and it keeps at
most a few bytes of state between reads, whatever the peer sends.
"""

from __future__ import annotations

IAC = 255
DONT = 254
DO = 253
WONT = 252
WILL = 251
SB = 250
SE = 240

_IAC_BYTE = b"\xff"
_DATA, _COMMAND, _OPTION, _SUBNEGOTIATION, _SUBNEGOTIATION_IAC = range(5)


class TelnetInput:
    """
    A stateful filter: feed it the bytes of each read, get back chat bytes.

    Option negotiation is refused, as RFC 854 allows: C{DO x} is answered with
    C{WONT x} and C{WILL x} with C{DONT x}. Refusals from the peer get no
    answer, so two refusing ends can never loop. Answering C{DO TIMING-MARK}
    matters: after Ctrl-C a telnet client discards everything it receives
    until the mark is acknowledged.

    C{CR NUL} becomes C{LF}, so that a client whose Enter key sends C{CR NUL}
    still ends its lines; C{CR LF} is left for the line splitter.
    """

    __slots__ = ("_pending_cr", "_state", "_verb")

    def __init__(self) -> None:
        self._state = _DATA
        self._verb = 0
        self._pending_cr = False

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """
        Filter one read.

        @param data: bytes as received from the peer, in any segmentation.
        @return: C{(chat_bytes, replies)}: the input with every telnet command
            removed, and the negotiation answers to send back (often empty).
        """
        if self._pending_cr:
            data = b"\r" + data
            self._pending_cr = False
        replies = b""
        if self._state != _DATA or _IAC_BYTE in data:
            data, replies = self._strip(data)
        if data.endswith(b"\r"):
            # CR NUL may be split across reads: hold the CR back until the
            # next byte says whether it ends a line.
            data = data[:-1]
            self._pending_cr = True
        if b"\r\x00" in data:
            data = data.replace(b"\r\x00", b"\n")
        return data, replies

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
                else:
                    # NOP, IP, AO, AYT, EC, EL, GA, BRK, DM, stray SE: no data.
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
