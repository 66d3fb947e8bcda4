# -*- test-case-name: tests.test_motd -*-
"""
Reading the message of the day from its file, at startup and again on
SIGHUP (L{chat.tap.ChatService}), without dropping anyone: new connections
get the new text, a file that cannot be read keeps the old one.
"""

from __future__ import annotations

from twisted.logger import Logger

from chat.core.motd import MAX_BYTES, motd_lines
from chat.server.factory import ChatFactory


def read_motd(path: str) -> bytes:
    """
    The INFO lines of the message of the day in the file at C{path}; at
    most L{MAX_BYTES} + 1 bytes are read, however large the file.

    @raise OSError: if the file cannot be read.
    @raise ValueError: if it is too large (L{chat.core.motd.MotdTooLarge}).
    """
    with open(path, "rb") as motd:
        return motd_lines(motd.read(MAX_BYTES + 1))


class MessageOfTheDay:
    """The file of C{--motd}, which a server reads again on request."""

    log = Logger()

    def __init__(self, path: str, factory: ChatFactory) -> None:
        self.path = path
        self.factory = factory

    def reload(self) -> None:
        """Read the file again; keep the old message if it cannot be read or is too large."""
        try:
            lines = read_motd(self.path)
        except (OSError, ValueError) as error:
            self.log.warn(
                "could not reload the message of the day from {path}: {why}; the old one is kept",
                path=self.path,
                why=error,
            )
            return
        self.factory.setMotd(lines)
        self.log.info(
            "reloaded the message of the day from {path}: {count} lines",
            path=self.path,
            count=lines.count(b"\r\n"),
        )
