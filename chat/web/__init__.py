# -*- test-case-name: tests.test_web -*-
"""
The browser client, for C{--web ENDPOINT}: one static page and a WebSocket
endpoint at C{/ws}, served by twisted.web from the chat process itself, so
browser users are in the same room as telnet users.

The page (C{static/}) is plain HTML, CSS and one script; it speaks the same
line protocol as telnet clients, one line per WebSocket message (see
L{chat.web.socket}).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from autobahn.twisted.resource import WebSocketResource
from twisted.application import strports
from twisted.application.service import IService
from twisted.web.server import Request, Site
from twisted.web.static import File

from chat.server.factory import ChatFactory
from chat.server.site import CappedChannel, CappedSite
from chat.web.socket import ChatWebSocketFactory

STATIC: Final = Path(__file__).resolve().parent / "static"
"""The page's files, installed with the package (setup.cfg package_data)."""

HEADERS: Final = {
    # Defence in depth behind the script's rule of rendering all text as
    # text: no inline script or handler could run even if markup got in.
    b"Content-Security-Policy": (
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    # Revalidate (Last-Modified) so an upgraded server never runs an old script.
    b"Cache-Control": b"no-cache",
}


class StaticFiles(File):
    """L{File} that adds the page's security and caching headers."""

    def render(self, request: Request) -> bytes | int:
        for name, value in HEADERS.items():
            request.setHeader(name, value)
        body: bytes | int = super().render(request)  # File.render is not annotated
        return body


class ChatWebSocketResource(WebSocketResource):
    """
    autobahn's resource, which takes the connection over from twisted.web:
    the HTTP channel first hands its place in the connection count over to
    the chat protocol, which counts it from the end of the handshake on
    (L{chat.server.site}).
    """

    def render(self, request: Request) -> bytes | int:
        if isinstance(request.channel, CappedChannel):
            request.channel.handOver()
        body: bytes | int = super().render(request)  # not annotated
        return body


def web_site(factory: ChatFactory, hosts: frozenset[str] = frozenset()) -> Site:
    """
    The page at C{/} and the chat over WebSocket at C{/ws}, on one site;
    with C{hosts}, WebSockets only under those names (C{--web-hosts}).
    """
    root = StaticFiles(str(STATIC))
    root.putChild(b"ws", ChatWebSocketResource(ChatWebSocketFactory(factory, hosts)))
    return CappedSite(root, factory)


def web_service(
    description: str, factory: ChatFactory, hosts: frozenset[str] = frozenset()
) -> IService:
    """A service serving L{web_site} on the endpoint C{description}."""
    return strports.service(description, web_site(factory, hosts))
