# -*- test-case-name: tests.test_cluster -*-
"""
One room served by several nodes, shared through Redis.

Redis holds the registry (hash C{chat:users}: folded name -> C{"node name"}),
changed only by Lua scripts, so the capacity and uniqueness checks and the
change are one atomic step however many nodes JOIN at once. Every change
bumps C{chat:version} and is published on C{chat:events}; each node keeps a
replica of the registry from a snapshot plus those events, so LIST and the
recipient lookup of MESG never wait for Redis.

Messages travel as the bytes of the line the recipient will read: a MESG to
a user on another node is published on that node's channel, a BCST once on
C{chat:bcst} for every other node to fan out to its own users. Presence
notices travel the same way on C{chat:presence}, both formats made once by
the node where the event happened; the users of a dead node are announced
as lost by every node from the sweep's events.

The broadcasts kept for HISTORY are the cluster's: a list (C{chat:history},
newest first) that each node pushes the broadcasts of a reactor turn onto
and trims to its C{--history} in one script call.

Each node holds a lease (C{chat:node:ID:alive}, renewed every second, expiring
after L{LEASE} seconds); every node sweeps the registry of users whose node's
lease has expired, so a node killed with SIGKILL leaves no ghosts. After
Redis comes back, each node re-asserts its live users. So does a node that
was only paused past its lease (SIGSTOP, a VM migration, Redis itself
stopped): the renewal, or the sweep's events about its own users, tell it
that it was swept, and it registers its users again as far as their names
are still free and the room has seats, closing the others with a BYE.

A command whose client is told it failed (after L{COMMAND_TIMEOUT}) must not
take effect when Redis runs it later: JOIN, BAN, UNBAN and a node's
re-registration of its users carry a deadline in Redis's clock, checked
inside their script. The node knows Redis's clock
from the C{TIME} its renewals return, measured as NTP does (L{RedisClock}).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Generator, Iterable, Iterator
from typing import Any, Final, NoReturn, TypeVar
from urllib.parse import urlparse

import txredisapi
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.defer import TimeoutError as NoAnswer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from chat.cluster.clock import RedisClock
from chat.cluster.scripts import (
    BAN,
    BANS,
    BROADCASTS,
    EVENTS,
    HISTORY,
    JOIN,
    KEEP,
    LEAVE,
    MODERATION,
    NODE_PREFIX,
    NODES,
    PRESENCE,
    REASSERT,
    RENEW,
    SNAPSHOT,
    SWEEP,
    UNBAN,
    USERS,
    VERSION,
)
from chat.core import grammar, presence
from chat.core.away import AwaySession
from chat.core.history import DEFAULT_SIZE, Entry, decode_entry, encode_entry
from chat.core.moderation import Moderation
from chat.core.personal import Prefs
from chat.core.room import (
    Admission,
    Delivery,
    Later,
    Listed,
    Member,
    RoomUnavailable,
    announce,
    audience,
    listed,
)
from chat.core.sanctions import MAX_BANS, Sanction, Sanctions, dumps, loads
from chat.core.text import fold

LEASE: Final = 5.0
HEARTBEAT: Final = 1.0
COMMAND_TIMEOUT: Final = 3.0
MARGIN: Final = 0.5
"""How long before its client would be told it failed a command's deadline
passes in Redis: room for the reply's way back and for the error of the
node's reading of Redis's clock (at most half of L{SAMPLE_RTT})."""
SAMPLE_RTT: Final = 0.2
"""A reading of Redis's clock is used only from a round trip this short."""
_NEVER: Final = 2**63
"""Above any registry version (Redis's INCR stops at 2**63 - 1)."""

_T = TypeVar("_T")


def _sanctions(values: list[str]) -> list[Sanction]:
    """The bans read from Redis; one that cannot be read is skipped (and logged)."""
    sanctions = []
    for value in values:
        try:
            sanctions.append(loads(value))
        except (ValueError, TypeError) as error:
            ClusterRoom.log.warn("redis: skipped a ban that is not one: {why}", why=error)
    return sanctions


def default_node_id() -> str:
    """Host name and process id: unique on a network of nodes."""
    return f"{socket.gethostname()}:{os.getpid()}"


class _Remote:
    """A user on another node, as the protocol sees it: a name and a mailbox."""

    __slots__ = ("name", "node", "room")
    away = False
    notices = 0  # told by its own node
    prefs: Prefs | None = None  # known to its own node, which applies them
    lastInput: float | None = None  # known to its own node only
    machine = False  # its node writes the line in the user's format

    def __init__(self, room: ClusterRoom, node: str, name: str) -> None:
        self.room = room
        self.node = node
        self.name: str | None = name

    def ready(self, size: int) -> bool:
        """Never: a relay to another node is answered C{sent}, not C{delivered}."""
        return False

    def bye(self, reason: str, details: str, *fields: object) -> None:
        """Have the user's node close the connection (an operator's KICK)."""
        message = json.dumps([self.node, fold(str(self.name)), reason, details, list(fields)])
        self.room.publish(MODERATION, f"{self.room.node}\nbye\n{message}")

    def deliver(self, data: bytes) -> Delivery:
        self.room.publish(f"{NODE_PREFIX}{self.node}", f"{fold(str(self.name))}\n" + data.decode())
        return Delivery.SENT


def _sender(line: str) -> str:
    """
    The sender of a relayed line: C{MESG name: text}, C{BCST name: text} or
    an action, C{* name text}.
    """
    if line.startswith("* "):
        return line[2 : line.find(" ", 2)]
    return line[5 : line.find(":", 5)]


class _Commands(txredisapi.RedisProtocol):
    """The command connection, without Nagle's delay on small writes."""

    def connectionMade(self) -> Deferred[None]:
        # Each PUBLISH is a small write: with Nagle's algorithm it waits for
        # the ACK of the one before, which the peer delays by up to 40 ms.
        self.transport.setTcpNoDelay(True)
        connected: Deferred[None] = super().connectionMade()
        return connected


class _Subscriber(txredisapi.SubscriberProtocol):
    """The pub/sub connection: (re)subscribes and resynchronises on connect."""

    room: ClusterRoom

    def connectionMade(self) -> Deferred[None]:
        self.transport.setTcpNoDelay(True)
        connected: Deferred[None] = super().connectionMade()
        connected.addCallback(lambda _: self.room.subscribed(self))
        return connected

    def connectionLost(self, why: object) -> None:
        self.room.unsubscribed()
        super().connectionLost(why)

    def messageReceived(self, pattern: str | None, channel: str, message: str) -> None:
        self.room.received(channel, message)


class ClusterRoom(Service):
    """
    The room interface of L{chat.core.room.Room}, backed by Redis.

    While Redis is away, what needs the cluster raises L{RoomUnavailable}
    (the protocol answers C{ERR Cluster Unavailable}): JOIN, LIST, BCST and
    MESG to a user on another node. MESG between users of this node, HELP and
    QUIT keep working.

    It is also the L{chat.core.moderation.Keeper} of the bans: they are
    kept in Redis (hash C{chat:bans}, bounded), every change is published on
    C{chat:moderation}, and each node holds them all in its L{moderation}'s
    store, so a connection or a JOIN is checked without asking Redis.

    @ivar node: this node's id.
    @ivar available: whether Redis is connected and the replica is current.
    It is the cluster's L{chat.core.history.History} too.

    @ivar moderation: the node's moderation, told of bans decided elsewhere.
    @ivar size: the most broadcasts kept for HISTORY (every node should be
        given the same C{--history}: each trims the list to its own).
    """

    moderation: Moderation | None = None

    log = Logger()

    def __init__(
        self,
        capacity: int,
        url: str,
        node: str,
        clock: IReactorTime,
        history: int = DEFAULT_SIZE,
    ) -> None:
        if not node.isprintable() or " " in node:
            raise ValueError("a node id is printable and has no spaces")
        parsed = urlparse(url)
        if parsed.scheme != "redis":
            raise ValueError(f"not a redis:// URL: {url}")
        self.capacity = capacity
        self.size = history
        self.node = node
        self.clock = clock
        self.available = False
        self._host = parsed.hostname or "localhost"
        self._port = parsed.port or 6379
        self._db = int(parsed.path.lstrip("/") or 0)
        self._local: dict[str, Member] = {}
        self._replica: dict[str, tuple[str, str]] = {}  # folded -> (node, name)
        self._version = 0
        # What arrives while the node resynchronises, handed on after it.
        self._buffered: list[tuple[str, str]] | None = None
        # The registry's version at which each local member was registered:
        # a broadcast reaches those its sender counted (L{broadcast}).
        self._since: dict[Member, int] = {}
        # The gap in a local member's registration after a lapse: swept at
        # the first version, registered again at the second (L{_NEVER} while
        # not known): a broadcast counted in the gap, without it, is not its own.
        self._swept: dict[Member, tuple[int, int]] = {}
        self._pending: set[Deferred[object]] = set()
        self._outbox: dict[str, list[str]] = {}
        self._kept: list[str] = []  # broadcasts of this turn, for the history
        self._redisClock = RedisClock(SAMPLE_RTT)
        self._healing = False  # registering this node's users again, after a lapse
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = clock
        self._keys = f"{NODE_PREFIX}{node}:users", f"{NODE_PREFIX}{node}:alive"

    # Service

    def startService(self) -> None:
        from twisted.internet import reactor

        super().startService()
        endpoint = HostnameEndpoint(reactor, self._host, self._port, timeout=COMMAND_TIMEOUT)
        commands = txredisapi.RedisFactory(f"{self._host}:{self._port}", self._db, 1, isLazy=True)
        commands.protocol = _Commands
        subscriber = txredisapi.SubscriberFactory(isLazy=True)
        subscriber.protocol = type("Subscriber", (_Subscriber,), {"room": self})
        for factory in (commands, subscriber):
            factory.initialDelay, factory.maxDelay = 0.2, 2.0
            factory.startConnecting(endpoint)
        self._commands, self._subscriber = commands, subscriber
        self._redis = commands.handler
        self._heartbeat.start(HEARTBEAT, now=False)

    @inlineCallbacks
    def stopService(self) -> Generator[Deferred[Any], Any, None]:
        """Wait for the last leaves, give up the lease, disconnect."""
        super().stopService()
        if self._heartbeat.running:
            self._heartbeat.stop()
        self._flush()  # relays of this very turn, before waiting for the rest
        yield DeferredList(list(self._pending))
        if self.available:
            try:
                yield self._call(self._redis.delete(self._keys[1]))
                yield self._call(self._redis.eval(SWEEP, [USERS, NODES, VERSION]))
            except RoomUnavailable:
                pass
        yield self._commands.disconnect()
        yield self._subscriber.disconnect()

    # Redis plumbing

    def _call(self, command: Deferred[_T]) -> Deferred[_T]:
        """Bound a Redis command in time; any failure becomes L{RoomUnavailable}."""

        def unavailable(failure: Failure) -> NoReturn:
            if failure.check(NoAnswer):  # its text would be "(3.0, 'Deferred')"
                raise RoomUnavailable(f"no answer from Redis within {COMMAND_TIMEOUT:g} s")
            raise RoomUnavailable(str(failure.value))

        command.addTimeout(COMMAND_TIMEOUT, self.clock)
        return command.addErrback(unavailable)

    def _later(self, answer: Deferred[_T]) -> Later[_T]:
        """The room's answer as a session waits for it (sessions know no Deferreds)."""
        later: Later[_T] = Later()

        def failed(failure: Failure) -> None:
            if not failure.check(RoomUnavailable):
                self.log.failure("the cluster room failed", failure)
            later.fail(RoomUnavailable(str(failure.value)))

        answer.addCallbacks(later.resolve, failed)
        return later

    def _background(self, command: Deferred[object], what: str) -> None:
        """Run a command whose result nobody waits for; log if it fails."""
        self._pending.add(command)

        def done(result: object) -> None:
            self._pending.discard(command)
            if isinstance(result, Failure):
                self.log.warn("redis: {what} failed: {why}", what=what, why=result.value)

        self._call(command).addBoth(done)

    def publish(self, channel: str, message: str) -> None:
        """
        Queue C{message} for C{channel}. What is queued in one reactor turn
        goes out as one PUBLISH per channel, the messages joined by NUL (which
        no message holds: user text has no control characters): under load,
        the cost of a Redis round trip is shared by many messages.
        """
        if not self.available:
            raise RoomUnavailable("Redis is not connected")
        if not self._outbox and not self._kept:
            self.clock.callLater(0, self._flush)
        self._outbox.setdefault(channel, []).append(message)

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, {}
        kept, self._kept = self._kept, []
        if not outbox and not kept:
            return
        if not self.available:
            self.log.warn(
                "redis: lost before it could send {count} batches and {kept} broadcasts to keep",
                count=len(outbox),
                kept=len(kept),
            )
            return
        for channel, messages in outbox.items():
            self._background(self._redis.publish(channel, "\0".join(messages)), "publish")
        if kept:
            keep = self._redis.eval(KEEP, [HISTORY], [self.size, *kept[-self.size :]])
            self._background(keep, "keeping the history")

    def _beat(self) -> None:
        if not self.available:
            return
        sent = self.clock.seconds()
        renew = self._redis.eval(RENEW, [NODES, self._keys[1]], [self.node, int(LEASE * 1000)])
        renew.addCallback(self._renewed, sent)
        self._background(renew, "lease renewal")
        self._background(self._redis.eval(SWEEP, [USERS, NODES, VERSION]), "sweep")

    def _renewed(self, answer: tuple[int, list[str]], sent: float) -> None:
        kept, time = answer
        self._redisClock.read(sent, self.clock.seconds(), time)
        if not kept:
            self._lapsed("the lease expired and the users were swept")

    def _deadline(self) -> float:
        """
        The deadline of a command whose client is told it failed after
        L{COMMAND_TIMEOUT}, in Redis's clock (L{MARGIN} earlier, so that a
        command that ran in time is answered in time).
        """
        return self._redisClock.deadline(self.clock.seconds(), COMMAND_TIMEOUT - MARGIN)

    def _lapsed(self, why: str) -> None:
        """
        This node was swept while it lived (it, or Redis, was paused past
        the lease): register its users again, once at a time. Until that is
        done the renewals keep saying so, so a failed attempt is retried.
        """
        if self._healing or not self.available:
            return
        self._healing = True
        self.log.warn(
            "redis: the lease of node {node} lapsed ({why}); registering its {count} users again",
            node=self.node,
            why=why,
            count=len(self._local),
        )

        def healed(added: list[str]) -> None:
            self.log.info(
                "redis: {node} registered {added} of its {count} users again",
                node=self.node,
                added=len(added),
                count=count,
            )
            for folded in added:
                member = self._local.get(folded)
                if member is None or member.name is None:
                    continue
                # The other nodes told their users that this one was lost: it
                # is back, or still held for a resume (it is not back yet).
                if isinstance(member, AwaySession):
                    left = max(0, round(member.expires - self.clock.seconds()))
                    notice = presence.notice(presence.Kind.HELD, member.name, str(left))
                else:
                    notice = presence.notice(presence.Kind.RESUMED, member.name)
                self._publishNotice(notice, self._version + 1)

        def failed(failure: Failure) -> None:
            failure.trap(RoomUnavailable, txredisapi.RedisError)
            self.log.warn("redis: could not register the users again: {why}", why=failure.value)

        def done(result: None) -> None:
            self._healing = False

        count = len(self._local)
        self._reassert(resync=False).addCallbacks(healed, failed).addBoth(done)

    @inlineCallbacks
    def _reassert(self, resync: bool) -> Generator[Deferred[Any], Any, list[str]]:
        """
        Make the registry hold this node's live users, as far as their names
        are free and the room has seats; close the others with a BYE, and
        tell this node's users of it. The folded names registered again.
        """
        live = [item for key, m in self._local.items() for item in (key, str(m.name))]
        sent = self.clock.seconds()
        answer = yield self._call(
            self._redis.eval(
                REASSERT,
                [USERS, NODES, VERSION, *self._keys],
                [self.node, int(LEASE * 1000), self.capacity, self._deadline(), *live],
            )
        )
        if answer == "late":
            raise RoomUnavailable("Redis ran the re-assertion after its deadline")
        taken, full, added, versions, time = answer
        self._redisClock.read(sent, self.clock.seconds(), time)
        for folded, version in zip(added, versions, strict=True):
            member = self._local.get(folded)
            if member is None:  # left while the script was on its way
                self._unregister(folded)
            else:
                self._registered(member, version, resync)
        for names, reason, details in (
            (taken, grammar.USERNAME_TAKEN, "another user took your name"),
            (full, grammar.TOO_MANY_USERS, "the room filled up"),
        ):
            for folded in names:
                self._giveUp(folded, reason, f"while this server was cut off, {details}")
        return list(added)

    def _registered(self, member: Member, version: int, resync: bool) -> None:
        """
        C{member} is registered again, at C{version}: after a resync from
        scratch (the versions before may be another Redis's), or at the end
        of the gap that a sweep made (where it began may not be known yet:
        the sweep's event may come after this answer).
        """
        if resync:
            self._since[member] = version
            self._swept.pop(member, None)
        else:
            self._swept[member] = (self._swept.get(member, (_NEVER,))[0], version)

    def _giveUp(self, folded: str, reason: str, details: str) -> None:
        """A user of this node who could not be registered again is closed."""
        member = self._local.pop(folded, None)
        if member is None or member.name is None:
            return
        self._since.pop(member, None)
        self._swept.pop(member, None)
        if self._replica.get(folded, (None,))[0] == self.node:
            # Without a seat, or its name another's: not in the room, for this
            # node either (a MESG to it is unknown, a BCST does not count it).
            del self._replica[folded]
        name = member.name
        self.log.warn("redis: {name} closed: {reason}, {details}", name=name, reason=reason,
                      details=details)  # fmt: skip
        member.bye(reason, details)
        notice = presence.notice(presence.Kind.REMOVED, name, reason)
        announce(list(self._local.values()), notice, None)

    # Subscriber events

    @inlineCallbacks
    def subscribed(self, subscriber: _Subscriber) -> Generator[Deferred[Any], Any, None]:
        """(Re)connected: subscribe, re-assert our users, load the registry."""
        self._buffered = []
        try:
            yield subscriber.subscribe(
                [EVENTS, BROADCASTS, PRESENCE, f"{NODE_PREFIX}{self.node}", MODERATION]
            )
            yield self._reassert(resync=True)
            version, held = yield self._call(self._redis.eval(SNAPSHOT, [USERS, VERSION]))
            bans = yield self._call(self._redis.hvals(BANS))
        except (RoomUnavailable, txredisapi.RedisError) as error:  # lost again: retried
            self.log.warn("redis: could not resynchronise: {why}", why=error)
            subscriber.transport.loseConnection()
            return
        self._replica = {}
        for entry in held:
            node, name = entry.split(" ", 1)
            self._replica[fold(name)] = (node, name)
        self._version = int(version)
        buffered, self._buffered = self._buffered, None
        for channel, batch in buffered:
            self.received(channel, batch)
        self.available = True
        if self.moderation is not None:
            self.moderation.loaded(_sanctions(bans))
        self.log.info(
            "redis: node {node} in sync at version {version}, {count} users",
            node=self.node,
            version=self._version,
            count=len(self._replica),
        )

    def unsubscribed(self) -> None:
        if self.available:
            self.log.warn("redis: connection lost; cluster commands unavailable")
        self.available = False
        self._buffered = None

    def received(self, channel: str, batch: str) -> None:
        if channel == MODERATION:
            for message in batch.split("\0"):  # KICKs of one turn are batched
                self._moderated(message)
            return
        if self._buffered is not None:
            # Resynchronising: the replica and the versions of this node's
            # users are not known yet.
            self._buffered.append((channel, batch))
            return
        if channel == EVENTS:
            self._event(batch)
            return
        local, since, swept = self._local, self._since, self._swept
        for message in batch.split("\0"):
            if channel == BROADCASTS:
                header, line = message.split("\n", 1)
                origin, counted = header.split(" ")
                if origin != self.node:
                    data, sender, version = line.encode(), _sender(line), int(counted)
                    # An action's line is in each reader's format.
                    form = grammar.action_for_machine(data) if line[0] == "*" else data
                    for member in list(local.values()):
                        gap = swept.get(member) if swept else None
                        if (
                            since.get(member, 0) <= version
                            and (gap is None or not gap[0] <= version < gap[1])
                            and (member.prefs is None or member.prefs.accepts(sender))
                        ):
                            member.deliver(form if member.machine else data)
            elif channel == PRESENCE:
                header, both = message.split("\n", 1)
                origin, before = header.split(" ")
                if origin != self.node:
                    bound = int(before)
                    told = [member for member in local.values() if since.get(member, 0) < bound]
                    announce(told, presence.split(both), None)
            else:  # this node's channel: a private message
                folded, line = message.split("\n", 1)
                recipient = local.get(folded)
                if recipient is not None and (
                    recipient.prefs is None or recipient.prefs.accepts(_sender(line))
                ):
                    recipient.deliver(line.encode())

    def _moderated(self, message: str) -> None:
        """
        A ban put in force or lifted by a node (ours too: then already
        done), or a user of this node closed by an operator of another.
        """
        origin, kind, data = message.split("\n", 2)
        if origin == self.node or self.moderation is None:
            return
        if kind == "ban":
            (ban,) = _sanctions([data])
            self.moderation.applied(ban)
        elif kind == "unban":
            self.moderation.lifted(data)
        else:  # bye: an operator on another node closes a user of this one
            node, folded, reason, details, fields = json.loads(data)
            member = self._local.get(folded) if node == self.node else None
            if member is not None:
                self.log.info("{name} closed from another node: {reason}", name=member.name,
                              reason=reason)  # fmt: skip
                member.bye(reason, details, *fields)

    # The keeper of the bans

    def saved(self, bans: Sanctions, changed: Sanction, lifted: bool) -> Later[bool]:
        """
        Keep a ban in Redis (and tell every node), or lift it there; C{False}
        if Redis holds L{MAX_BANS} already.
        """
        if not self.available:
            raise RoomUnavailable("Redis is not connected")
        deadline = self._deadline()
        if lifted:
            command = self._redis.eval(UNBAN, [BANS], [self.node, changed.key, deadline])
        else:
            now = self.clock.seconds()
            command = self._redis.eval(
                BAN, [BANS], [self.node, changed.key, dumps(changed), now, MAX_BANS, deadline]
            )

        def outcome(answer: str) -> bool:
            if answer == "late":
                raise RoomUnavailable("Redis ran the command after its deadline")
            return answer == "ok"

        return self._later(self._call(command).addCallback(outcome))

    def _event(self, event: str) -> None:
        version, kind, node, name = event.split(" ", 3)
        if int(version) <= self._version:
            return  # already in the snapshot
        self._version = int(version)
        if kind == "join":
            self._replica[fold(name)] = (node, name)
        elif kind == "lost" and node == self.node:
            # This node's own user, swept: it was paused past its lease.
            member = self._local.get(fold(name))
            if member is None:
                self._replica.pop(fold(name), None)
            elif self._since.get(member, 0) > int(version):
                return  # a sweep of an older registration (before a resync)
            else:
                swept, again = self._swept.get(member, (_NEVER, 0))
                if again > int(version):  # registered again already, told first
                    self._swept[member] = (min(swept, int(version)), again)
                    return
                # Not registered until this node registers it again: the
                # broadcasts counted meanwhile, without it, are not its own.
                self._swept[member] = (int(version), _NEVER)
            self._lapsed("another node swept its users")
        elif self._replica.get(fold(name), (None,))[0] == node:
            del self._replica[fold(name)]
            if kind == "lost":  # swept: its node died, and told nobody
                self.log.info(
                    "redis: {name} removed: the lease of node {node} expired", name=name, node=node
                )
                notice = presence.notice(presence.Kind.LOST, name)
                announce(list(self._local.values()), notice, None)

    # The room interface

    def __len__(self) -> int:
        return len(self._replica)

    def join(self, name: str, member: Member) -> Later[Admission]:
        if not self.available:
            raise RoomUnavailable("Redis is not connected")
        key = fold(name)
        joined = self._call(
            self._redis.eval(
                JOIN,
                [USERS, VERSION, self._keys[0], NODES],
                [self.node, key, name, self.capacity, self._deadline()],
            )
        )

        def admitted(answer: str) -> Admission:
            if answer == "late":
                raise RoomUnavailable("Redis ran the JOIN after its deadline")
            if answer == "lapsed":
                self._lapsed("a JOIN found it out of the cluster")
                raise RoomUnavailable("this node was swept and is registering its users again")
            outcome, _, version = answer.partition(" ")
            admission = Admission(outcome)
            if admission is Admission.JOINED:
                self._since[member] = int(version)
                self._local[key] = member
                self._replica[key] = (self.node, name)
                member.name = name
            return admission

        return self._later(joined.addCallback(admitted))

    def leave(self, member: Member) -> bool:
        if member.name is None or self._local.get(fold(member.name)) is not member:
            return False
        key = fold(member.name)
        del self._local[key]
        self._since.pop(member, None)
        self._swept.pop(member, None)
        if self._replica.get(key, (None,))[0] == self.node:
            del self._replica[key]
        if self.available:  # else the re-assertion after reconnecting removes it
            self._unregister(key)
        return True

    def _unregister(self, folded: str) -> None:
        """Remove this node's user C{folded} from the registry in Redis."""
        leave = self._redis.eval(LEAVE, [USERS, VERSION, self._keys[0]], [self.node, folded])
        self._background(leave, "leave")

    def findLocal(self, name: str) -> Member | None:
        """The member on this node registered as C{name}, or C{None}."""
        return self._local.get(fold(name))

    def find(self, name: str) -> Member | None | Later[Member | None]:
        """
        The recipient of a MESG: from the replica when it knows the name;
        otherwise Redis is asked, so that a user who has just joined on
        another node is found even before its event arrives here.
        """
        key = fold(name)
        local = self._local.get(key)
        if local is not None:
            return local
        if not self.available:
            raise RoomUnavailable("Redis is not connected")
        held = self._replica.get(key)
        if held is not None:
            return _Remote(self, *held)

        def found(entry: str | None) -> Member | None:
            return None if entry is None else _Remote(self, *entry.split(" ", 1))

        return self._later(self._call(self._redis.hget(USERS, key)).addCallback(found))

    def known(self) -> Iterable[str]:
        """The names of the replica: every node's users as of the last event this node read."""
        return [name for _, name in self._replica.values()]

    def names(self) -> Later[list[Listed]]:
        """
        Every registered name, read from Redis itself: exact, never stale.
        Only this node knows which of its own users are held for a resume,
        away (AWAY) and idle: the users of other nodes are listed by name.
        """
        if not self.available:
            raise RoomUnavailable("Redis is not connected")

        def entries(held: list[str]) -> list[Listed]:
            names = []
            for entry in held:
                node, name = entry.split(" ", 1)
                local = self._local.get(fold(name)) if node == self.node else None
                names.append((name, False, None, None) if local is None else listed(local))
            return names

        return self._later(self._call(self._redis.hvals(USERS)).addCallback(entries))

    # The history

    def keep(self, when: float, verb: str, sender: str, texts: list[str]) -> None:
        """
        Keep broadcasts in Redis, with the others of this reactor turn: one
        script call a turn. While Redis is away they are not kept (they were
        not broadcast to the other nodes either).
        """
        if not self.size or not self.available:
            return
        if not self._outbox and not self._kept:
            self.clock.callLater(0, self._flush)
        self._kept += [encode_entry((when, verb, sender, text)) for text in texts]

    def recent(self, count: int) -> Later[list[Entry]]:
        """The last C{count} broadcasts kept in Redis, oldest first."""
        if not self.available:
            raise RoomUnavailable("Redis is not connected")
        if self._kept:
            self._flush()  # what this turn broadcast, then the read: in order

        def entries(kept: list[str]) -> list[Entry]:
            return [decode_entry(entry) for entry in reversed(kept)]

        read = self._call(self._redis.lrange(HISTORY, 0, count - 1))
        return self._later(read.addCallback(entries))

    def replace(self, old: Member, new: Member) -> None:
        """Put C{new} in C{old}'s place (away and back); Redis is unchanged."""
        new.name = old.name
        self._local[fold(str(old.name))] = new
        self._since[new] = self._since.pop(old, 0)
        if old in self._swept:
            self._swept[new] = self._swept.pop(old)

    def broadcast(
        self, lines: list[bytes], sender: Member, machine: list[bytes] | None = None
    ) -> Iterator[tuple[int, int]]:
        """
        L{Room.broadcast}, a line at a time: each is published to the other
        nodes (an action in the human format: each node writes it in its
        readers' formats).
        """
        if len(self._replica) == len(self._local) and not self.available:
            raise RoomUnavailable("Redis is not connected")
        for data, form in zip(lines, machine or lines, strict=True):
            # Each line as a broadcast of its own: a delivery may drop a member.
            remote = len(self._replica) - len(self._local)
            local, ignoring, held = audience(self._local.values(), sender)
            if remote:
                # The version the count is taken at: the other nodes hand it
                # only to the users registered by then (L{received}).
                self.publish(BROADCASTS, f"{self.node} {self._version}\n" + data.decode())
            outcomes = [member.deliver(form if member.machine else data) for member in local]
            reached = max(remote, 0) + len(outcomes) - outcomes.count(Delivery.DROPPED)
            yield reached + ignoring, outcomes.count(Delivery.HELD) + held

    def announce(self, lines: presence.Notice, sender: Member | None) -> int:
        """
        A presence notice to this node's users, and to the other nodes' while
        Redis is there (a notice is not worth refusing a QUIT for). How many
        of this node's users got it.

        It is published even when this node knows of no users elsewhere:
        one may have joined a moment ago, its event not here yet. The other
        nodes hand it to their users registered before the event: before
        the subject's own registration for a JOIN (who joins after alice is
        not told that she joined), else before the last version this node
        knows of.
        """
        if self.available:
            since = self._since.get(sender) if sender is not None else None
            if since is None or not presence.is_join(lines):
                since = self._version + 1
            self._publishNotice(lines, since)
        return announce(list(self._local.values()), lines, sender)

    def _publishNotice(self, lines: presence.Notice, before: int) -> None:
        """Publish a notice for the other nodes' users registered at a version under C{before}."""
        self.publish(PRESENCE, f"{self.node} {before}\n" + presence.joined(lines))
