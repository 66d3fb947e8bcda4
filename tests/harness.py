"""A simulated connection for protocol tests: bytes in, lines out, no network."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.logger import LogEvent, formatEvent

from chat.server.factory import ChatFactory
from chat.server.protocol import ChatProtocol

GREETING = [
    "INFO Welcome to chat. Register with: JOIN <username>",
    (
        "INFO Usernames are 1 to 32 ASCII letters and digits. Type HELP for the commands, "
        "HISTORY for the last 50 broadcasts."
    ),
]


TOKEN = re.compile(r"\(resume token: ([\w-]{12})\)")

PRESENCE_NOTICE = re.compile(
    r"INFO [A-Za-z0-9]+ (joined|left|lost the connection|is back, resuming|did not come back"
    r"|was disconnected by the server)|PRESENCE "
)
"""A presence notice (chat.core.presence). The tests of other features leave
them out of what they compare (L{Client.presence}); tests/test_presence.py
checks them."""


class Client:
    """One simulated connection: bytes in with L{send}, lines out with L{lines}."""

    presence = False
    """Whether L{lines} keeps presence notices: only the tests of presence want them."""

    def __init__(self, factory: ChatFactory, port: int, host: str = "10.0.0.1") -> None:
        self.protocol: ChatProtocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        self.transport = StringTransportWithDisconnection()
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)
        self.token: str | None = None

    def send(self, data: bytes | str) -> list[str]:
        """Send raw bytes (a str gets CRLF) and return the lines written back."""
        if isinstance(data, str):
            data = data.encode() + b"\r\n"
        self.protocol.dataReceived(data)
        return self.lines()

    def raw(self) -> bytes:
        """The bytes written since the last call, at the end of the reactor turn."""
        outbox = self.protocol.server.outbox
        outbox.flushLater()  # presence notices: as if LATER had passed
        outbox.flush()
        out = self.transport.value()
        self.transport.clear()
        return out

    def lines(self) -> list[str]:
        """
        The lines written since the last call. A resume token is random: it
        is kept in L{token} and shown as C{T} in the lines.
        """
        out = self.raw()
        assert out == b"" or out.endswith(b"\r\n"), out
        lines = out.decode("utf-8").split("\r\n")[:-1]
        if not self.presence:
            lines = [line for line in lines if not PRESENCE_NOTICE.match(line)]
        for i, line in enumerate(lines):
            if match := TOKEN.search(line):
                self.token = match.group(1)
                lines[i] = line.replace(self.token, "T")
        return lines

    @property
    def closed(self) -> bool:
        return not self.transport.connected


def logged(events: Sequence[LogEvent], *fragments: str) -> bool:
    """Whether one status line contains every fragment."""
    return any(all(f in formatEvent(event) for f in fragments) for event in events)


def connector(factory: ChatFactory) -> Callable[..., Client]:
    """
    C{connect(name=None, host=...)}: a new client on C{factory}, greeted,
    and registered as C{name} if one is given.
    """
    ports = iter(range(1000, 60000))

    def connect(name: str | None = None, host: str = "10.0.0.1") -> Client:
        client = Client(factory, next(ports), host)
        assert client.lines() == GREETING
        if name is not None:
            assert client.send(f"JOIN {name}")[0].startswith(f"OK JOIN {name} ")
        return client

    return connect
