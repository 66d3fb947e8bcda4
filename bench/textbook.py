"""
A textbook Twisted chat server, the baseline for the benchmark.

What a Twisted tutorial would write: one C{LineReceiver} per connection, a
dict of users, one C{transport.write} per message; no telnet filtering, no
flow control, no per-message log. It speaks the subset of the chat protocol
the load generator uses (JOIN, MESG, BCST, LIST, QUIT) with the same reply
lines, so the same generator drives both and the difference in CPU per
message is the price of everything the real server does on top.

    python bench/textbook.py PORT [MAX_USERS]

PORT 0 lets the kernel choose; the port is printed either way, as
C{textbook listening on 127.0.0.1:PORT}. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import sys

from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver

GREETING = (
    b"INFO Welcome to chat. Register with: JOIN <username>\r\n"
    b"INFO Usernames are 1 to 32 ASCII letters and digits. Type HELP for the commands.\r\n"
)


class ChatLine(LineReceiver):
    """One user: unregistered until JOIN, then in the factory's dict."""

    delimiter = b"\r\n"

    def __init__(self, factory: ChatFactory) -> None:
        self.factory = factory
        self.name: str | None = None

    def connectionMade(self) -> None:
        self.transport.write(GREETING)

    def connectionLost(self, reason: object = None) -> None:
        if self.name is not None and self.factory.users.get(self.name.lower()) is self:
            del self.factory.users[self.name.lower()]

    def reply(self, text: str) -> None:
        self.sendLine(text.encode("utf-8"))

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").strip()
        if not text:
            return
        verb, _, rest = text.partition(" ")
        verb, rest = verb.upper(), rest.strip()
        if verb == "QUIT":
            self.reply("OK QUIT Bye")
            self.transport.loseConnection()
        elif verb == "JOIN":
            self.join(rest)
        elif self.name is None:
            self.reply("ERR Unregistered User: register first with JOIN <username>")
        elif verb == "MESG":
            self.message(rest)
        elif verb == "BCST":
            self.broadcast(rest)
        elif verb == "LIST":
            users = self.factory.users
            lines = [f"USER {user.name}\r\n" for user in users.values()]
            self.transport.write(f"{''.join(lines)}OK LIST {len(users)}\r\n".encode())
        else:
            self.reply(f"ERR Unknown Message: {verb} is not a command")

    def join(self, name: str) -> None:
        users = self.factory.users
        if self.name is not None:
            self.reply(f"ERR Already Registered: you are {self.name}")
        elif not (name.isascii() and name.isalnum() and len(name) <= 32):
            self.reply("ERR Invalid Username: 1 to 32 ASCII letters and digits")
        elif len(users) >= self.factory.capacity:
            self.reply("ERR Too Many Users: try again later")
        elif name.lower() in users:
            self.reply(f"ERR Username Taken: {name} is already registered")
        else:
            users[name.lower()] = self
            self.name = name
            self.reply(f"OK JOIN {name} {len(users)}/{self.factory.capacity}")

    def message(self, rest: str) -> None:
        to, _, text = rest.partition(" ")
        if not text:
            self.reply("ERR Usage: MESG <username> <text>")
            return
        recipient = self.factory.users.get(to.lower())
        if recipient is None:
            self.reply(f"ERR Unknown Recipient: nobody named {to} is registered")
            return
        recipient.transport.write(f"MESG {self.name}: {text}\r\n".encode())
        self.reply(f"OK MESG {recipient.name}")

    def broadcast(self, text: str) -> None:
        if not text:
            self.reply("ERR Usage: BCST <text>")
            return
        data = f"BCST {self.name}: {text}\r\n".encode()
        count = 0
        for user in self.factory.users.values():
            if user is not self:
                user.transport.write(data)
                count += 1
        self.reply(f"OK BCST {count}")


class ChatFactory(Factory):
    """The shared dict of users, keyed by lower-cased name."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.users: dict[str, ChatLine] = {}

    def buildProtocol(self, addr: object) -> ChatLine:
        return ChatLine(self)


def main(argv: list[str]) -> int:
    if not 2 <= len(argv) <= 3:
        print(__doc__, file=sys.stderr)
        return 2
    capacity = int(argv[2]) if len(argv) == 3 else 100_000
    port = reactor.listenTCP(int(argv[1]), ChatFactory(capacity), interface="127.0.0.1")
    print(f"textbook listening on 127.0.0.1:{port.getHost().port}", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
