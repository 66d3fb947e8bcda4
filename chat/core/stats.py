# -*- test-case-name: tests.test_metrics -*-
"""
Counters of what the server does, kept as plain integers.

The protocol bumps these on its hot path, where a C{prometheus_client}
counter would cost a lock and a label lookup per message; L{chat.server.metrics}
reads them only when Prometheus scrapes.
"""

from __future__ import annotations

from collections import Counter


class Stats:
    """
    @ivar commands: commands received, by verb (C{unknown} for the rest).
    @ivar relayed: messages delivered to users, by kind (C{mesg}, C{bcst}).
    @ivar errors: C{ERR} replies sent, by reason.
    @ivar limits: limits hit, by limit name.
    """

    __slots__ = ("commands", "errors", "limits", "relayed")

    def __init__(self) -> None:
        self.commands: Counter[str] = Counter()
        self.relayed: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.limits: Counter[str] = Counter()
