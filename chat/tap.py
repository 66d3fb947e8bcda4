# -*- test-case-name: tests.test_tap -*-
"""
The C{twistd chat} command line: options and the service they build.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING, Any, ClassVar, Final

from twisted.application import strports
from twisted.application.internet import TimerService
from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import ILogObserver, Logger, jsonFileLogObserver
from twisted.python import usage

from chat.core.history import DEFAULT_SIZE, History, LocalHistory
from chat.core.limits import Limits
from chat.server.factory import ChatFactory
from chat.server.logs import DirectRelayLog, RelayLog, TextLogObserver
from chat.server.moderation import BanFile, read_bans, read_operators, verify_in_thread
from chat.server.motd import MessageOfTheDay, read_motd
from chat.server.protocol import ChatProtocol

if TYPE_CHECKING:
    from chat.cluster.room import ClusterRoom


def positive_int(value: str) -> int:
    """Coerce an option to an integer of at least 1."""
    number = int(value)
    if number < 1:
        raise ValueError(f"{value} is not a positive integer")
    return number


positive_int.coerceDoc = "Must be a positive integer."  # type: ignore[attr-defined]


def limit(value: str) -> float:
    """Coerce an option to a number of at least 0 (0 switches a limit off)."""
    number = float(value)
    if not number >= 0:
        raise ValueError(f"{value} is not a number of at least 0")
    return number


limit.coerceDoc = "0 switches it off."  # type: ignore[attr-defined]


def seconds(value: str) -> float:
    """Coerce an option to a number of seconds greater than 0."""
    number = float(value)
    if not number > 0:
        raise ValueError(f"{value} is not a number of seconds greater than 0")
    return number


seconds.coerceDoc = "Must be greater than 0."  # type: ignore[attr-defined]


def count_limit(value: str) -> int:
    """Coerce an option to a whole number of at least 0 (0 switches a limit off)."""
    return int(limit(value))


count_limit.coerceDoc = limit.coerceDoc  # type: ignore[attr-defined]


def endpoint_description(value: str) -> str:
    """A bare port number means TCP on every interface; anything else is kept."""
    return f"tcp:{value}" if value.isdigit() else value


def loopback_endpoint_description(value: str) -> str:
    """
    A bare port number means TCP on the loopback interface only; anything
    else is kept. For the metrics: what they tell (users, connections,
    limits hit) is for the host's own scraper, and exposing them further
    should be a choice spelled out (C{tcp:9100:interface=0.0.0.0}).
    """
    return f"tcp:{value}:interface=127.0.0.1" if value.isdigit() else value


DEFAULTS: Final = Limits()
"""The limits that no option changes (not C{Options.defaults}: usage.Options has its own)."""


class Options(usage.Options):
    """Options of C{twistd chat}."""

    synopsis = "[--port ENDPOINT]... [--max-users N] [options]"
    longdesc = (
        "A chat server for telnet clients. --port takes a port number or any "
        "Twisted server endpoint description (tcp:8001:interface=127.0.0.1, "
        "tcp6:8001, ssl:8443:privateKey=key.pem:certKey=cert.pem, unix:/path) "
        "and may be given more than once; the default is 8001."
    )
    optParameters: ClassVar[list[list[Any]]] = [
        ["max-users", "u", 10, "Most users registered at once.", positive_int],
        ["max-line", None, DEFAULTS.max_line, "Longest input line in bytes.", positive_int],
        [
            "max-outbound",
            None,
            DEFAULTS.max_outbound,
            "Bytes queued for a client that stopped reading before it is dropped.",
            positive_int,
        ],
        [
            "max-connections",
            None,
            DEFAULTS.max_connections,
            "Open connections at once, registered or not.",
            count_limit,
        ],
        [
            "max-per-ip",
            None,
            DEFAULTS.max_per_peer,
            "Open connections at once from one IP address.",
            count_limit,
        ],
        [
            "join-timeout",
            None,
            DEFAULTS.join_timeout,
            "Seconds an unregistered connection may stay open.",
            limit,
        ],
        [
            "idle-timeout",
            None,
            DEFAULTS.idle_timeout,
            "Seconds a registered user may stay silent.",
            limit,
        ],
        [
            "rate-limit",
            None,
            DEFAULTS.rate,
            "Lines per second per client after the burst; more are delayed.",
            limit,
        ],
        ["rate-burst", None, DEFAULTS.burst, "Lines a client may send at once.", positive_int],
        [
            "max-backlog",
            None,
            DEFAULTS.max_backlog,
            "Bytes of delayed input a client may have before it is disconnected.",
            positive_int,
        ],
        [
            "grace",
            None,
            DEFAULTS.grace,
            "Seconds a dropped user's name and messages are kept for a resume (0: off).",
            limit,
        ],
        [
            "max-held",
            None,
            DEFAULTS.max_held,
            "Messages kept for a dropped user during the grace period.",
            positive_int,
        ],
        [
            "close-timeout",
            None,
            DEFAULTS.close_timeout,
            "Seconds a client gets to read its last lines once closed, then it is aborted.",
            seconds,
        ],
        [
            "handshake-timeout",
            None,
            DEFAULTS.handshake_timeout,
            (
                "Seconds a TLS client gets to finish its handshake, and an HTTP client "
                "a request, then it is aborted."
            ),
            seconds,
        ],
        [
            "max-buffered",
            None,
            DEFAULTS.max_buffered,
            "Bytes all clients may have waiting in all; past it the largest is dropped.",
            count_limit,
        ],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics at /metrics on this endpoint (9100: on 127.0.0.1 only).",
        ],
        [
            "web",
            None,
            None,
            "Serve the browser client (and its WebSocket at /ws) on this endpoint (e.g. 8080).",
        ],
        [
            "web-hosts",
            None,
            "",
            "Names the web client is reached under, e.g. chat.example.org,localhost (any).",
        ],
        [
            "history",
            None,
            DEFAULT_SIZE,
            "Broadcasts kept for HISTORY (0: none; private messages never are).",
            count_limit,
        ],
        [
            "motd",
            None,
            None,
            "Send the text of this file after the greeting (read again on SIGHUP).",
        ],
        ["log-format", None, "text", "Log as 'text' or 'json' (one JSON event per line)."],
        [
            "redis",
            None,
            None,
            "Join a cluster of nodes sharing one room through Redis (redis://HOST:PORT/DB).",
        ],
        ["node-id", None, None, "This node's id in the cluster (default: HOST:PID)."],
        [
            "operators",
            None,
            None,
            "File of operators, one 'name hash' a line (make one with python -m chat.passwd).",
        ],
        [
            "bans",
            None,
            None,
            "Keep bans in this file, so that they survive a restart (a cluster keeps them in Redis).",
        ],
    ]

    optFlags: ClassVar[list[list[str | None]]] = [
        [
            "quiet-relays",
            None,
            (
                "No status line per MESG and BCST (the metrics still count them): "
                "the logging costs more CPU than relaying the message."
            ),
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
        if self["log-format"] not in ("text", "json"):
            raise usage.UsageError("--log-format must be 'text' or 'json'")
        if self["redis"] and not self["redis"].startswith("redis://"):
            raise usage.UsageError("--redis takes a URL: redis://HOST:PORT/DB")
        if self["node-id"] and not self["node-id"].isprintable() or " " in (self["node-id"] or ""):
            raise usage.UsageError("--node-id must be printable and without spaces")
        if self["bans"] and self["redis"]:
            raise usage.UsageError("--bans is for one server: a cluster keeps its bans in Redis")
        try:
            self["operator-hashes"] = read_operators(self["operators"]) if self["operators"] else {}
            self["banned"] = read_bans(self["bans"]) if self["bans"] else []
        except ValueError as error:
            raise usage.UsageError(str(error)) from None
        self["motd-lines"] = b""
        if self["motd"] is not None:
            try:
                self["motd-lines"] = read_motd(self["motd"])
            except (OSError, ValueError) as error:
                raise usage.UsageError(f"--motd {self['motd']}: {error}") from None
        self["limits"] = Limits(
            max_line=self["max-line"],
            max_outbound=self["max-outbound"],
            max_connections=self["max-connections"],
            max_per_peer=self["max-per-ip"],
            join_timeout=self["join-timeout"],
            idle_timeout=self["idle-timeout"],
            rate=self["rate-limit"],
            burst=self["rate-burst"],
            max_backlog=self["max-backlog"],
            grace=self["grace"],
            max_held=self["max-held"],
            close_timeout=self["close-timeout"],
            handshake_timeout=self["handshake-timeout"],
            max_buffered=self["max-buffered"],
        )


class ChatService(MultiService):
    """
    The listeners plus an orderly shutdown: on SIGTERM or SIGINT, stop
    accepting connections first, then tell every client and close it. With
    a message of the day, SIGHUP reads its file again.

    @ivar log_observer: what twistd should log to instead of its own text
        observer, or C{None}.
    """

    log = Logger()

    def __init__(
        self,
        factory: ChatFactory,
        log_observer: ILogObserver | None = None,
        cluster: ClusterRoom | None = None,
        motd: MessageOfTheDay | None = None,
    ) -> None:
        super().__init__()
        self.factory = factory
        self.log_observer = log_observer
        self.cluster = cluster
        self.motd = motd
        self._stopping = False

    def setServiceParent(self, parent: Any) -> None:
        # twistd creates the application, adds this service, and only then
        # starts logging, using the application's ILogObserver if it has one.
        super().setServiceParent(parent)
        if self.log_observer is not None and hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, self.log_observer)

    def startService(self) -> None:
        from twisted.internet import reactor

        if self.cluster is not None:
            self.cluster.startService()
        super().startService()
        reactor.callWhenRunning(self._handleSignals)

    def _handleSignals(self) -> None:
        # Called once the reactor has installed its own handlers, which make
        # twistd kill itself with the signal after the reactor stops, so the
        # exit status reads "killed". A stop on request that ends in an
        # orderly shutdown is a success: exit 0.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stopOnSignal)
        if self.motd is not None:
            signal.signal(signal.SIGHUP, self._reloadOnSignal)

    def _reloadOnSignal(self, signum: int, frame: FrameType | None) -> None:
        from twisted.internet import reactor

        if self.motd is not None:
            self.log.info("received SIGHUP, reloading the message of the day")
            # Read on the reactor's thread, between two events: never in
            # the middle of a greeting.
            IReactorFromThreads(reactor).callFromThread(self.motd.reload)

    def _stopOnSignal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._stopping:
            # Ctrl-C twice, or a supervisor's signal and a kill: the stop is
            # on its way; a second reactor.stop would fail (ReactorNotRunning).
            self.log.info("received {signal}, already shutting down", signal=name)
            return
        self._stopping = True
        self.log.info("received {signal}, shutting down", signal=name)
        self._stopReactor()

    def _stopReactor(self) -> None:
        from twisted.internet import reactor

        # The reactor's declared type omits the optional interfaces: adapt to one.
        IReactorFromThreads(reactor).callFromThread(reactor.stop)

    def stopService(self) -> Deferred[None]:
        stopped: Deferred[object] = super().stopService()  # not annotated: a DeferredList
        closed = stopped.addCallback(lambda _: self.factory.closeAll())
        cluster = self.cluster
        if cluster is not None:
            closed.addCallback(lambda _: cluster.stopService())
        return closed


def log_observer(config: Options) -> ILogObserver | None:
    """
    JSON lines on standard output for C{--log-format json}; for text on
    standard output (C{twistd -n} without C{--logfile}), the same lines as
    twistd's but fast (L{chat.server.logs}). Anything else (a log file, syslog,
    C{--logger}) is left to twistd.
    """
    if config["log-format"] == "json":
        # One JSON object per line, without the RFC 7464 record separator.
        return jsonFileLogObserver(sys.stdout, "")
    twistd = getattr(config, "parent", None) or {}
    logfile = twistd.get("logfile")
    to_stdout = logfile == "-" or (twistd.get("nodaemon") and not logfile)
    if not to_stdout or twistd.get("logger") or twistd.get("syslog"):
        return None
    return TextLogObserver(sys.stdout)


def relay_log(config: Options, observer: ILogObserver | None) -> RelayLog | None:
    """
    Where the status lines of MESG and BCST go: none with C{--quiet-relays},
    straight into the fast text observer when it is the one in use.
    """
    if config["quiet-relays"]:
        return None
    if isinstance(observer, TextLogObserver):
        return DirectRelayLog(ChatProtocol.log, observer)
    return RelayLog(ChatProtocol.log)


def makeService(config: Options) -> IService:
    from twisted.internet import reactor

    limits: Limits = config["limits"]
    cluster = None
    history: History = LocalHistory(config["history"])
    if config["redis"]:
        from chat.cluster.room import ClusterRoom, default_node_id

        node = config["node-id"] or default_node_id()
        cluster = ClusterRoom(
            config["max-users"], config["redis"], node, reactor, history=config["history"]
        )
        history = cluster
    observer = log_observer(config)
    factory = ChatFactory(
        max_users=config["max-users"],
        limits=limits,
        room=cluster,
        relay_log=relay_log(config, observer),
        history=history,
        motd=config["motd-lines"],
    )
    moderation = factory.moderation
    moderation.operators = config["operator-hashes"]
    moderation.verify = verify_in_thread
    now = reactor.seconds()
    moderation.bans.replace(ban for ban in config["banned"] if ban.until > now)
    if config["bans"]:
        moderation.keeper = BanFile(config["bans"])
    if cluster is not None:
        moderation.keeper, cluster.moderation = cluster, moderation
    motd = MessageOfTheDay(config["motd"], factory) if config["motd"] is not None else None
    service = ChatService(factory, log_observer=observer, cluster=cluster, motd=motd)
    for description in config["port"]:
        strports.service(description, factory).setServiceParent(service)
    if limits.idle_timeout:
        TimerService(min(limits.idle_timeout / 4, 5.0), factory.checkIdle).setServiceParent(service)
    if config["metrics"]:
        from chat.server.metrics import metrics_service

        metrics_service(loopback_endpoint_description(config["metrics"]), factory).setServiceParent(
            service
        )
    if config["web"]:
        from chat.web import web_service

        hosts = frozenset(
            name.strip().lower() for name in config["web-hosts"].split(",") if name.strip()
        )
        web_service(endpoint_description(config["web"]), factory, hosts).setServiceParent(service)
    return service
