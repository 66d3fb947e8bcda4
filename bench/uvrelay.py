"""
A minimal chat relay on asyncio with uvloop, a reference for the benchmark.

The least a Python server can do per message: one C{asyncio.Protocol} per
connection, lines split with C{bytes.split}, a dict of users, one
C{transport.write} per line sent, all in bytes (no decoding), on uvloop's
libuv event loop. No telnet filter, no flow control, no log. Whatever chat
spends beyond this is its protocol features and Twisted's per-read and
per-write work; this is the floor Python itself sets.

It speaks the subset of the chat protocol the load generator uses (JOIN,
MESG, BCST, LIST, QUIT) with the reply lines of C{bench/textbook.py}, so the
same generator drives it. Lines end at LF (a CR before it is stripped), and
message text is relayed as the bytes it came in.

    python bench/uvrelay.py PORT [MAX_USERS]

PORT 0 lets the kernel choose; the port is printed either way, as
C{uvrelay listening on 127.0.0.1:PORT}. Listens on 127.0.0.1 only. uvloop is
required: on the default asyncio loop this would be a different reference.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import Callable
from typing import cast

try:
    import uvloop
except ImportError:
    sys.exit("uvrelay needs uvloop (pip install uvloop): it is the reference on uvloop")

GREETING = (
    b"INFO Welcome to chat. Register with: JOIN <username>\r\n"
    b"INFO Usernames are 1 to 32 ASCII letters and digits. Type HELP for the commands.\r\n"
)
MAX_LINE = 4096
"""Bytes without a line end after which a client is dropped: memory stays bounded."""


class Relay(asyncio.Protocol):
    """
    One user: unregistered until JOIN (an empty C{name}), then in the shared
    dict of users, keyed by lower-cased name.
    """

    transport: asyncio.Transport
    write: Callable[[bytes], None]
    """C{transport.write}, looked up once: every line sent goes through it."""

    def __init__(self, users: dict[bytes, Relay], capacity: int) -> None:
        self.users = users
        self.capacity = capacity
        self.name = b""
        self.buffer = b""
        self.quitting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; same interface.
        self.transport = cast(asyncio.Transport, transport)
        self.write = self.transport.write
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # As chat does: a relayed line leaves now, not after Nagle's wait
            # (uvloop sets it too; said here, so as not to depend on that).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.write(GREETING)

    def connection_lost(self, exc: Exception | None) -> None:
        key = self.name.lower()
        if self.name and self.users.get(key) is self:
            del self.users[key]

    def data_received(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
        lines = data.split(b"\n")
        self.buffer = lines.pop()
        if len(self.buffer) > MAX_LINE:
            self.transport.abort()
            return
        for line in lines:
            if self.quitting:
                # After QUIT: the rest of the read is ignored, as in textbook.
                return
            self.line_received(line)

    def line_received(self, line: bytes) -> None:
        line = line.strip()
        if not line:
            return
        verb, _, rest = line.partition(b" ")
        verb, rest = verb.upper(), rest.strip()
        if verb == b"MESG" and self.name:
            self.message(rest)
        elif verb == b"BCST" and self.name:
            self.broadcast(rest)
        elif verb == b"QUIT":
            self.write(b"OK QUIT Bye\r\n")
            self.quitting = True
            # close() sends what is buffered first, then closes.
            self.transport.close()
        elif verb == b"JOIN":
            self.join(rest)
        elif not self.name:
            self.write(b"ERR Unregistered User: register first with JOIN <username>\r\n")
        elif verb == b"LIST":
            users = self.users
            lines = [b"USER %b\r\n" % user.name for user in users.values()]
            self.write(b"%bOK LIST %d\r\n" % (b"".join(lines), len(users)))
        else:
            self.write(b"ERR Unknown Message: %b is not a command\r\n" % verb)

    def join(self, name: bytes) -> None:
        users = self.users
        if self.name:
            self.write(b"ERR Already Registered: you are %b\r\n" % self.name)
        elif not (name.isalnum() and len(name) <= 32):
            # bytes.isalnum is ASCII letters and digits only.
            self.write(b"ERR Invalid Username: 1 to 32 ASCII letters and digits\r\n")
        elif len(users) >= self.capacity:
            self.write(b"ERR Too Many Users: try again later\r\n")
        elif name.lower() in users:
            self.write(b"ERR Username Taken: %b is already registered\r\n" % name)
        else:
            users[name.lower()] = self
            self.name = name
            self.write(b"OK JOIN %b %d/%d\r\n" % (name, len(users), self.capacity))

    def message(self, rest: bytes) -> None:
        to, _, text = rest.partition(b" ")
        if not text:
            self.write(b"ERR Usage: MESG <username> <text>\r\n")
            return
        recipient = self.users.get(to.lower())
        if recipient is None:
            self.write(b"ERR Unknown Recipient: nobody named %b is registered\r\n" % to)
            return
        recipient.write(b"MESG %b: %b\r\n" % (self.name, text))
        self.write(b"OK MESG %b\r\n" % recipient.name)

    def broadcast(self, text: bytes) -> None:
        if not text:
            self.write(b"ERR Usage: BCST <text>\r\n")
            return
        data = b"BCST %b: %b\r\n" % (self.name, text)
        count = 0
        for user in self.users.values():
            if user is not self:
                user.write(data)
                count += 1
        self.write(b"OK BCST %d\r\n" % count)


async def serve(port: int, capacity: int) -> None:
    users: dict[bytes, Relay] = {}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Relay(users, capacity), "127.0.0.1", port)
    # SIGTERM (how the benchmark stops a server) ends it cleanly, status 0.
    stopped = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stopped.set_result, None)
    bound = server.sockets[0].getsockname()[1]
    print(f"uvrelay listening on 127.0.0.1:{bound}", flush=True)
    await stopped
    server.close()


def main(argv: list[str]) -> int:
    if not 2 <= len(argv) <= 3:
        print(__doc__, file=sys.stderr)
        return 2
    capacity = int(argv[2]) if len(argv) == 3 else 100_000
    uvloop.run(serve(int(argv[1]), capacity))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
