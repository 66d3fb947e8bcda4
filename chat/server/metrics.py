# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics for C{--metrics ENDPOINT}, served by prometheus_client's
Twisted resource at C{/metrics}.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from twisted.application import strports
from twisted.application.service import IService
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Request

from chat.server.factory import ChatFactory
from chat.server.site import CappedSite


class ChatCollector(Collector):
    """Turns the factory's plain counters into metric families at scrape time."""

    def __init__(self, factory: ChatFactory) -> None:
        self.factory = factory

    def collect(self) -> Iterator[Metric]:
        factory, stats = self.factory, self.factory.stats
        chat = len(factory.connections)
        yield GaugeMetricFamily("chat_connections", "Open chat connections.", chat)
        # The caps count both (chat.server.site); this scrape is one of these.
        yield GaugeMetricFamily(
            "chat_http_connections",
            "Open HTTP connections to --web and --metrics (not WebSockets).",
            factory.peers.total - chat,
        )
        yield GaugeMetricFamily("chat_users", "Registered users.", len(factory.room))
        yield GaugeMetricFamily("chat_capacity", "Most registered users.", factory.room.capacity)
        for name, doc, label, counts in (
            ("chat_commands", "Commands received, by verb.", "verb", stats.commands),
            ("chat_relayed", "Messages delivered to users, by kind.", "kind", stats.relayed),
            ("chat_errors", "ERR replies sent, by reason.", "reason", stats.errors),
            ("chat_limits", "Limits hit, by limit.", "limit", stats.limits),
            (
                "chat_moderation",
                "Operators' actions and what moderation refused, by action.",
                "action",
                factory.moderation.counts,
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=[label])
            for value, count in counts.items():
                family.add_metric([value], count)
            yield family


FRESH: Final = 1.0
"""Seconds a rendered page of metrics is served again before it is made anew."""


class MetricsPage(Resource):
    """
    C{/metrics}, rendered at most once a L{FRESH} second and served from
    that copy meanwhile. prometheus_client's own Twisted resource renders
    every request through WSGI in a thread: a client scraping in a loop (800
    scrapes a second) took 97% of the server's CPU. Prometheus scrapes every
    15 s or so, and a second-old page is as good to it.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry, clock: IReactorTime) -> None:
        super().__init__()
        self._registry = registry
        self._clock = clock
        self._page = b""
        self._madeAt = float("-inf")

    def render_GET(self, request: Request) -> bytes:
        now = self._clock.seconds()
        if now - self._madeAt >= FRESH:
            self._page, self._madeAt = generate_latest(self._registry), now
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        return self._page


def metrics_service(description: str, factory: ChatFactory) -> IService:
    """A web service on C{description} that serves C{/metrics}."""
    registry = CollectorRegistry()
    registry.register(ChatCollector(factory))
    root = Resource()
    root.putChild(b"metrics", MetricsPage(registry, factory.clock))
    return strports.service(description, CappedSite(root, factory))
