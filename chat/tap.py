# -*- test-case-name: tests.test_tap -*-
"""
The C{twistd chat} command line: options and the service they build.
"""

from __future__ import annotations

from typing import ClassVar

from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred
from twisted.python import usage

from chat.protocol import ChatFactory


def positive_int(value: str) -> int:
    """Coerce an option to an integer of at least 1."""
    number = int(value)
    if number < 1:
        raise ValueError(f"{value} is not a positive integer")
    return number


positive_int.coerceDoc = "Must be a positive integer."  # type: ignore[attr-defined]


def endpoint_description(value: str) -> str:
    """A bare port number means TCP on every interface; anything else is kept."""
    return f"tcp:{value}" if value.isdigit() else value


class Options(usage.Options):
    """Options of C{twistd chat}."""

    synopsis = "[--port ENDPOINT]... [--max-users N] [--max-line BYTES] [--max-outbound BYTES]"
    longdesc = (
        "A chat server for telnet clients. --port takes a port number or any "
        "Twisted server endpoint description (tcp:8001:interface=127.0.0.1, "
        "tcp6:8001, ssl:8443:privateKey=key.pem:certKey=cert.pem, unix:/path) "
        "and may be given more than once; the default is 8001."
    )
    optParameters: ClassVar[list[list[object]]] = [
        ["max-users", "u", 10, "Most users registered at once.", positive_int],
        [
            "max-line",
            None,
            4096,
            "Longest input line in bytes; longer lines are refused.",
            positive_int,
        ],
        [
            "max-outbound",
            None,
            1 << 20,
            "Bytes queued for a client that stopped reading before it is dropped.",
            positive_int,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["port"] = []

    def opt_port(self, description: str) -> None:
        """Listen on this port or endpoint description (repeatable; default 8001)."""
        self["port"].append(endpoint_description(description))

    opt_p = opt_port

    def postOptions(self) -> None:
        if not self["port"]:
            self["port"] = ["tcp:8001"]


class ChatService(MultiService):
    """
    The listeners plus an orderly shutdown: on SIGTERM or SIGINT, stop
    accepting connections first, then tell every client and close it.
    """

    def __init__(self, factory: ChatFactory) -> None:
        super().__init__()
        self.factory = factory

    def stopService(self) -> Deferred[None]:
        stopped = super().stopService()
        stopped.addCallback(lambda _: self.factory.closeAll())
        return stopped


def makeService(config: Options) -> IService:
    factory = ChatFactory(
        max_users=config["max-users"],
        max_line=config["max-line"],
        max_outbound=config["max-outbound"],
    )
    service = ChatService(factory)
    for description in config["port"]:
        strports.service(description, factory).setServiceParent(service)
    return service
