# -*- test-case-name: tests.test_edit -*-
"""
Edit mode (C{MODE EDIT}), sans I/O: a person at a real terminal (C{telnet
HOST PORT}) gets a chat that behaves like a client. The server takes over
echo and line editing (telnet ECHO and SUPPRESS-GO-AHEAD, so the telnet
program sends each key as it is pressed), keeps the input row at the
bottom, prints incoming lines above it and redraws the half-typed line
after them.

L{EditMode} is made only when a client asks (a line-mode session carries
none of it) and takes the place of three objects of its session:

  - its L{chat.core.session.Link}: L{EditMode.write} wraps what the session
    flushes in a turn (the input row erased, the lines as the user chose
    to see them, the row drawn again), so every byte still goes through
    C{Session.deliver} and C{flush}, where flow control counts it;
  - its telnet filter: a L{NegotiatingTelnet} that accepts the options;
  - its line splitter, once the client agreed: an L{Editor}.

A client that does not agree within L{NEGOTIATION_TIMEOUT} (C{nc}, a
script) or refuses gets an error and keeps line mode: it saw the nine bytes
of the offer, nothing more. L{Editor} says why the line editor is not
Twisted's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from chat.core import grammar
from chat.core.away import Timer
from chat.core.editor import ERASE_ROW, Editor, drawn_width
from chat.core.room import Delivery, Later
from chat.core.screen import Look, decorate
from chat.core.telnet import DO, ECHO, IAC, NAWS, SGA, WILL, WONT, NegotiatingTelnet

OFFER: Final = bytes((IAC, WILL, ECHO, IAC, WILL, SGA, IAC, DO, NAWS))
"""What MODE EDIT sends: the server will echo, will not wait for go-aheads, and
asks for the window size."""
GIVE_BACK: Final = bytes((IAC, WONT, ECHO, IAC, WONT, SGA))
"""What leaving edit mode sends: the client echoes and edits its lines again."""
NEGOTIATION_TIMEOUT: Final = 2.0
"""Seconds a client has to agree (C{DO ECHO}) before line mode is kept."""
DEFAULT_COLUMNS: Final = 80
"""The window width until the client tells it (NAWS), or if it never does."""
TYPED: Final = b"\x1e"
"""Marks a line the user sent, delivered to be shown above the input row as
typed: no server line starts with a control character."""
CRLF: Final = b"\r\n"

# A telnet answer among the lines of a turn (UTF-8 text never holds 0xFF).
_ANSWER: Final = re.compile(rb"\xff[\xfb-\xfe].", re.DOTALL)


class Link(Protocol):
    """The connection edit mode wraps (L{chat.core.session.Link})."""

    @property
    def terminal(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def pauseReading(self) -> None: ...

    def resumeReading(self) -> None: ...


class Clock(Protocol):
    def seconds(self) -> float: ...

    def callLater(self, delay: float, callable: Callable[..., object], *args: object) -> Timer: ...


class Host(Protocol):
    """What edit mode needs of its session (L{chat.core.session.Session})."""

    name: str | None
    blocked: bool

    def deliver(self, data: bytes) -> Delivery: ...

    def editEnded(self) -> None:
        """The client took the echo back (C{DONT ECHO}): line mode again."""


class EditMode:
    """
    One connection in edit mode, from the offer on: the link the session
    writes to, the listener of the negotiation, and the owner of the
    editor.

    @ivar answer: settled with whether the client agreed (C{DO ECHO}), or
        C{False} when it refused or did not answer in time (L{why}).
    @ivar look: timestamps, bell, colours (L{chat.core.screen.Look}).
    @ivar columns: the window's width (NAWS).
    """

    terminal = True

    def __init__(
        self,
        host: Host,
        inner: Link,
        clock: Clock,
        look: Look,
        names: Callable[[], Iterable[str]],
        max_line: int,
    ) -> None:
        self.host = host
        self.inner = inner
        self.look = look
        self.clock = clock
        self._names = names
        self.telnet = NegotiatingTelnet(self)
        self.editor = Editor(max_line, self)
        self.answer: Later[bool] = Later()
        self.active = False
        self.decided = False
        self.why = ""
        self.columns = DEFAULT_COLUMNS
        self._reflowed = 0  # rows the input row took above the cursor after a resize
        self._timer: Timer | None = clock.callLater(NEGOTIATION_TIMEOUT, self._timedOut)

    # The negotiation (chat.core.telnet.Negotiation)

    def agreed(self) -> None:
        if not self.decided:
            self.active = True
            self._decide(True, "")

    def refused(self) -> None:
        if not self.decided:
            self._decide(False, "refused")
        elif self.active:
            self.host.editEnded()

    def resized(self, width: int, height: int) -> None:
        """
        A narrower window: terminals that reflow (tmux, VTE, kitty) have
        wrapped the input row over rows of the new width, the cursor on the
        last of them: the next row drawn starts from the first, erasing
        down (L{_reflowed}). A window that is not narrower needs a redraw only.
        """
        if not width:
            return
        if self.active and drawn_width(width) < drawn_width(self.columns):
            self._reflowed = self.editor.column // drawn_width(width)
        self.columns = width
        if self.active:
            self.changed()

    def _timedOut(self) -> None:
        self._timer = None
        if not self.decided:
            self._decide(False, "timeout")

    def _decide(self, agreed: bool, why: str) -> None:
        self.decided, self.why = True, why
        self.cancel()
        self.answer.resolve(agreed)

    def cancel(self) -> None:
        """Nothing more will be decided: the connection is closing, or it was."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def confirmation(self) -> str:
        """The details of C{OK MODE EDIT}: the look chosen, and the way back."""
        chosen = " ".join(self.look.words()) or "plain"
        return f"EDIT {chosen}: the server echoes and edits your line; MODE LINE goes back"

    def refusal(self) -> str:
        """The details of C{ERR Not A Terminal}: what the client did, and that nothing changed."""
        what = (
            f"did not answer the telnet negotiation within {NEGOTIATION_TIMEOUT:g} seconds"
            if self.why == "timeout"
            else "refused to let the server echo (DONT ECHO)"
        )
        return (
            f"your client {what}; MODE EDIT needs a telnet program (telnet HOST PORT); "
            "still in line mode"
        )

    def end(self) -> bytes:
        """
        Leave edit mode: the bytes that erase the input row and give the
        echo back to the client.
        """
        self.active = False
        return ERASE_ROW.encode() + GIVE_BACK

    # The editor's owner (chat.core.editor.Owner)

    def names(self) -> Iterable[str]:
        return self._names()

    def typed(self, line: str) -> None:
        self.host.deliver(TYPED + (self.prompt() + line).encode() + CRLF)

    def notice(self, text: str) -> None:
        self.host.deliver(grammar.info(text))

    def changed(self) -> None:
        self.host.deliver(b"")  # the row is drawn when the turn's output is

    def prompt(self) -> str:
        """The user's name, or C{> } before JOIN."""
        name = self.host.name
        return f"{name}> " if name is not None else "> "

    # The link (chat.core.session.Link)

    def write(self, data: bytes) -> None:
        """
        Hand on what the session flushed: before the client agreed, as it
        is; then the input row erased, the turn's lines as the user's
        L{look} shows them (telnet answers first, as they are), and the row
        drawn again, unless the client is not reading (L{Host.blocked}):
        nothing is drawn for a screen nobody sees, and the next write draws
        it. What is added to the lines is bounded per line (a stamp, two
        colours, a bell), so C{--max-outbound} still bounds what waits.
        """
        if not self.active:
            self.inner.write(data)
            return
        answers = b""
        if IAC in data:
            answers = b"".join(_ANSWER.findall(data))
            data = _ANSWER.sub(b"", data)
        lines = data.split(CRLF)
        if not lines[-1]:
            lines.pop()
        shown: list[str] = [ERASE_ROW] if lines else []
        if self._reflowed:
            shown.insert(0, f"\r\x1b[{self._reflowed}A\x1b[J")
            self._reflowed = 0
        if lines:
            now, me, look = self.clock.seconds(), self.host.name, self.look
            for line in lines:
                if line.startswith(TYPED):
                    shown.append(line[1:].decode())
                else:
                    shown.append(decorate(line.decode("utf-8", "replace"), look, now, me))
                shown.append("\r\n")
        if not self.host.blocked:
            shown.append(self.editor.row(self.prompt(), self.columns))
        self.inner.write(answers + "".join(shown).encode())

    def close(self) -> None:
        if self.active:
            self.inner.write(self.end())
        self.cancel()
        self.inner.close()

    def abort(self) -> None:
        self.cancel()
        self.inner.abort()

    def pauseReading(self) -> None:
        self.inner.pauseReading()

    def resumeReading(self) -> None:
        self.inner.resumeReading()
