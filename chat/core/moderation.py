# -*- test-case-name: tests.test_moderation -*-
"""
Moderation: operators (C{OPER}), and what they may do to others (C{KICK},
C{MUTE}/C{UNMUTE}, C{BAN}/C{UNBAN}), sans I/O.

The server's L{Moderation} holds the operators' hashes, the bans and the
mutes, the wrong-password backoff, and the counters; a session's C{do_VERB}
methods hand it the command and deliver the L{Answer} it gives back (at
once, or later: a password check may run in a thread, and a wrong password
is answered only after a delay, during which that connection's input waits).
Everything done to a user is told to that user, logged, and counted.

Bans live in a L{Sanctions} store that is always checked here, without I/O;
a L{Keeper} makes them last (a file, or Redis in a cluster, whose other
nodes call L{Moderation.applied} and L{Moderation.lifted}). Mutes are the
node's own and last until they end or the node restarts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from typing import Final, NamedTuple, Protocol, TypeVar, cast

from chat.core import grammar
from chat.core.away import Timer
from chat.core.passwords import DUMMY, Failures, Hash, backoff, operator_key
from chat.core.room import Delivery, Later, Member, Room, RoomUnavailable
from chat.core.sanctions import (
    MAX_BANS,
    MAX_MINUTES,
    MAX_MUTES,
    MAX_REASON,
    Sanction,
    Sanctions,
    address_key,
    ban_key,
    mute_key,
    name_key,
)
from chat.core.text import is_valid_name

T = TypeVar("T")

MUTED_VERBS: Final = frozenset(("MESG", "BCST", "ME"))
"""What a muted user may not send: every command that relays their words."""


class Refusal(NamedTuple):
    """An C{ERR} answer: the session counts it and writes it in its format."""

    reason: str
    details: str
    fields: tuple[object, ...] = ()


Answer = bytes | Refusal
"""An C{OK} line, or a refusal."""


class Clock(Protocol):
    def seconds(self) -> float: ...

    def callLater(self, delay: float, callable: Callable[..., object], *args: object) -> Timer: ...


class Log(Protocol):
    def info(self, format: str, **kwargs: object) -> None: ...

    def warn(self, format: str, **kwargs: object) -> None: ...


class Actor(Protocol):
    """What moderation needs of a connection (L{chat.core.session.Session})."""

    name: str | None
    host: str
    peer: str
    format: grammar.Format
    operator: str | None
    muted: bool
    operFailures: int
    log: Log

    def deliver(self, data: bytes) -> Delivery: ...

    def bye(self, reason: str, details: str, *fields: object) -> None: ...


Verifier = Callable[[Hash, str], "bool | Later[bool]"]
"""Checks a password against a hash: at once, or later (in a thread)."""


class Keeper(Protocol):
    """Makes bans last beyond this process: a file, or a cluster's Redis."""

    def saved(self, bans: Sanctions, changed: Sanction, lifted: bool) -> bool | Later[bool]:
        """
        C{changed} was just put in force (or lifted) in C{bans}: keep it.

        @return: whether it was kept (not: the cluster holds its most bans),
            now or later; a L{Later} that fails undoes the change.
        @raise RoomUnavailable: if it cannot be kept now (the change is undone).
        """


def verify_here(hash: Hash, password: str) -> bool:
    """Check on the calling thread (protocol tests; the server uses a thread)."""
    return hash.matches(password)


def then(
    answer: T | Later[T],
    step: Callable[[T], Answer | Later[Answer]],
    undo: Callable[[], object] = lambda: None,
) -> Answer | Later[Answer]:
    """
    C{step(answer)}, now or once C{answer} is settled; if it fails,
    C{undo()}, and the failure is the answer's.
    """
    if not isinstance(answer, Later):
        return step(answer)
    result: Later[Answer] = Later()

    def settled(value: T) -> None:
        out = step(value)
        if isinstance(out, Later):
            out.then(result.resolve, result.fail)
        else:
            result.resolve(out)

    def failed(error: Exception) -> None:
        undo()
        result.fail(error)

    answer.then(settled, failed)
    return result


def duration(seconds: float) -> str:
    """People's words for a time left: seconds under two minutes, else minutes."""
    if seconds < 120:
        return f"{round(seconds)} seconds"
    return f"{-int(-seconds // 60)} minutes"


def because(reason: str) -> str:
    return f": {reason}" if reason else "; no reason given"


class Moderation:
    """
    The server's operators, bans and mutes (one per server, on the factory).

    Set up by C{makeService} from the options; until then it has no
    operators and keeps bans in memory.

    @ivar operators: operator name (lower case) -> password hash.
    @ivar keeper: what makes bans last (C{--bans}, a cluster), if anything.
    @ivar verify: how a password is checked (in a thread, in a server).
    @ivar bans: every ban in force (a replica in a cluster).
    @ivar mutes: every mute in force on this node.
    @ivar counts: operator actions and refusals, by action, for the metrics.
    @ivar connections: every connection of the server, to enforce a ban.
    """

    def __init__(
        self,
        clock: Clock,
        room: Room,
        connections: Collection[Actor],
        log: Log,
    ) -> None:
        self.clock = clock
        self.room = room
        self.connections = connections
        self.log = log
        self.operators: dict[str, Hash] = {}
        self.keeper: Keeper | None = None
        self.verify: Verifier = verify_here
        self.bans = Sanctions(MAX_BANS)
        self.mutes = Sanctions(MAX_MUTES)
        self._muteEnds: dict[str, Timer] = {}  # one per mute: as bounded as mutes
        self.failures = Failures()
        self.counts: Counter[str] = Counter()

    # What sessions ask without a command

    def help(self, actor: Actor) -> bytes:
        """The C{HELP} lines of moderation: OPER where there are operators, the rest to them."""
        lines: tuple[str, ...] = (grammar.OPER_HELP,) if self.operators else ()
        if actor.operator is not None:
            lines += grammar.OPERATOR_HELP
        return b"".join(map(grammar.info, lines))

    def addressRefusal(self, host: str) -> tuple[str, bytes] | None:
        """
        Why a new connection from C{host} is refused, and its C{BYE} line,
        if the address is banned.
        """
        if not self.bans:  # the common case: no parsing of the address
            return None
        key = address_key(host)
        ban = self.bans.get(key, self.clock.seconds()) if key is not None else None
        if ban is None:
            return None
        self.counts["refused_address"] += 1
        left = ban.left(self.clock.seconds())
        details = (
            f"connections from {host} are banned for {duration(left)} more by {ban.by}"
            + because(ban.reason)
        )
        why = f"banned address ({left}s left, by {ban.by})"
        return why, grammar.HUMAN.bye(grammar.BANNED, details)

    def joinRefusal(self, name: str) -> Refusal | None:
        """Why C{JOIN name} is refused, if the name is banned."""
        if not self.bans:
            return None
        now = self.clock.seconds()
        ban = self.bans.get(name_key(name), now)
        if ban is None:
            return None
        self.counts["refused_join"] += 1
        left = ban.left(now)
        return Refusal(
            grammar.BANNED,
            f"the name {ban.target} is banned for {duration(left)} more by {ban.by}"
            + because(ban.reason),
            (ban.target, ban.by, left, grammar.field(ban.reason)),
        )

    def isMuted(self, name: str) -> bool:
        """Whether C{name} is muted (at JOIN: a mute outlives a reconnection)."""
        return bool(self.mutes) and self.mutes.get(mute_key(name), self.clock.seconds()) is not None

    def silenced(self, actor: Actor, verb: str) -> Refusal | None:
        """
        Why a muted user's C{verb} (one of L{MUTED_VERBS}) is refused; C{None}
        once the mute has ended (and the user is no longer marked muted).
        """
        now = self.clock.seconds()
        mute = self.mutes.get(mute_key(str(actor.name)), now)
        if mute is None:
            actor.muted = False
            return None
        left = mute.left(now)
        self.counts["refused_muted"] += 1
        actor.log.info(
            "refused {verb} from {name}: muted by {by} ({left}s left)",
            verb=verb,
            name=actor.name,
            by=mute.by,
            left=left,
        )
        return Refusal(
            grammar.MUTED,
            f"{mute.by} muted you for {duration(left)} more{because(mute.reason)}; "
            f"your {verb} was not sent",
            (mute.by, left, grammar.field(mute.reason)),
        )

    # OPER

    def oper(self, actor: Actor, rest: str) -> Answer | Later[Answer]:
        """
        C{OPER name password}: check the password (perhaps in a thread), and
        answer a wrong one only after the backoff of this connection and
        its address.
        """
        args = rest.split(None, 1)
        if len(args) < 2:
            return Refusal(grammar.USAGE, "OPER <name> <password>")
        if not self.operators:
            return Refusal(grammar.NOT_OPERATOR, "this server has no operators", ("OPER",))
        name, password = args
        known = self.operators.get(operator_key(name)) if is_valid_name(name) else None
        checked = self.verify(known or DUMMY, password)
        return then(checked, lambda ok: self._operChecked(actor, name, known is not None and ok))

    def _operChecked(self, actor: Actor, name: str, ok: bool) -> Answer | Later[Answer]:
        if ok:
            actor.operator = operator_key(name)
            actor.operFailures = 0
            self.failures.succeeded(actor.host)
            self.counts["oper"] += 1
            actor.log.info(
                "{name} from {peer} is now operator {operator}",
                name=actor.name,
                peer=actor.peer,
                operator=actor.operator,
            )
            return actor.format.ok(
                "OPER",
                f"{actor.operator}: you are an operator now; HELP lists your commands",
                actor.operator,
            )
        now = self.clock.seconds()
        actor.operFailures += 1
        failures = max(actor.operFailures, self.failures.failed(actor.host, now))
        delay = backoff(failures)
        self.counts["oper_failed"] += 1
        actor.log.warn(
            "failed OPER as {operator!r} by {name} from {peer}: wrong name or password "
            "({failures} in a row); answered in {delay:g}s",
            operator=name,
            name=actor.name,
            peer=actor.peer,
            failures=failures,
            delay=delay,
        )
        later: Later[Answer] = Later()
        refusal = Refusal(
            grammar.WRONG_PASSWORD,
            f"that operator name and password do not match (answered after {delay:g} seconds; "
            "each wrong try doubles the wait)",
            (delay,),
        )
        self.clock.callLater(delay, later.resolve, refusal)
        return later

    # The operators' commands

    def _denied(self, actor: Actor, verb: str) -> Refusal | None:
        if actor.operator is not None:
            return None
        self.counts["denied"] += 1
        actor.log.info("{name} is no operator: {verb} refused", name=actor.name, verb=verb)
        return Refusal(
            grammar.NOT_OPERATOR,
            f"{verb} is for operators; OPER <name> <password> first",
            (verb,),
        )

    def _target(
        self, actor: Actor, name: str, verb: str, member: Member | None
    ) -> Member | Refusal:
        """C{member}, the registered user named C{name}, or why not."""
        if member is None:
            return Refusal(
                grammar.UNKNOWN_USER, f"nobody named {name} is registered on this server", (name,)
            )
        if member is cast(Member, actor):
            return Refusal(grammar.USAGE, f"you cannot {verb} yourself")
        return member

    def _done(self, actor: Actor, action: str, what: str, **fields: object) -> None:
        """Count and log an operator's action."""
        self.counts[action] += 1
        actor.log.info(
            "{by} (operator {operator}) " + what,
            by=actor.name,
            operator=actor.operator,
            **fields,
        )

    def kick(self, actor: Actor, rest: str) -> Answer | Later[Answer]:
        """
        C{KICK user [reason]}: the user is told who and why, then
        disconnected (by their node, in a cluster).
        """
        denied = self._denied(actor, "KICK")
        if denied is not None:
            return denied
        args = rest.split(None, 1)
        if not args:
            return Refusal(grammar.USAGE, "KICK <username> [<reason>]")
        if not is_valid_name(args[0]):
            return self._kick(actor, args, None)
        return then(self.room.find(args[0]), lambda member: self._kick(actor, args, member))

    def _kick(self, actor: Actor, args: list[str], member: Member | None) -> Answer:
        target = self._target(actor, args[0], "KICK", member)
        if isinstance(target, Refusal):
            return target
        name, reason = str(target.name), _reason(args[1:])
        self._remove(
            target,
            grammar.KICKED,
            f"{actor.name} disconnected you{because(reason)}",
            actor.name,
            grammar.field(reason),
        )
        self._done(actor, "kick", "kicked {name}: {reason}", name=name, reason=reason or "-")
        return actor.format.ok("KICK", f"{name} disconnected", name)

    def _remove(self, member: Member, reason: str, details: str, *fields: object) -> None:
        """
        Disconnect a member (on another node: by its node); one held for a
        resume (C{--grace}) loses its name at once, as it has no connection
        to tell.
        """
        if member.away:
            self.room.leave(member)
        member.bye(reason, details, *fields)

    def mute(self, actor: Actor, rest: str) -> Answer:
        """C{MUTE user minutes [reason]}."""
        denied = self._denied(actor, "MUTE")
        if denied is not None:
            return denied
        args = rest.split(None, 2)
        minutes = _minutes(args[1]) if len(args) >= 2 else None
        if minutes is None:
            return Refusal(
                grammar.USAGE,
                f"MUTE <username> <minutes> [<reason>]; minutes from 1 to {MAX_MINUTES}",
            )
        name = args[0]
        target = self._target(
            actor, name, "MUTE", self.room.findLocal(name) if is_valid_name(name) else None
        )
        if isinstance(target, Refusal):
            return target
        name, reason, now = str(target.name), _reason(args[2:]), self.clock.seconds()
        mute = Sanction(mute_key(name), name, now + minutes * 60, str(actor.name), reason)
        if not self.mutes.add(mute, now):
            return _full("mutes", self.mutes.capacity)
        self._cancelEnd(mute.key)
        self._muteEnds[mute.key] = self.clock.callLater(minutes * 60, self._muteEnded, mute)
        if not target.away:
            muted = cast(Actor, target)
            muted.muted = True
            muted.deliver(
                muted.format.notice(
                    "MOD",
                    f"{actor.name} muted you for {duration(minutes * 60)}{because(reason)}. "
                    "Your MESG, BCST and ME are refused until then.",
                    "MUTED",
                    actor.name,
                    minutes * 60,
                    grammar.field(reason),
                )
            )
        self._done(
            actor,
            "mute",
            "muted {name} for {minutes} minutes: {reason}",
            name=name,
            minutes=minutes,
            reason=reason or "-",
        )
        return actor.format.ok("MUTE", f"{name} for {duration(minutes * 60)}", name, minutes * 60)

    def unmute(self, actor: Actor, rest: str) -> Answer:
        """C{UNMUTE user}: the user, if online, is told."""
        denied = self._denied(actor, "UNMUTE")
        if denied is not None:
            return denied
        args = rest.split()
        if len(args) != 1:
            return Refusal(grammar.USAGE, "UNMUTE <username>")
        mute = self.mutes.remove(mute_key(args[0]), self.clock.seconds())
        if mute is None:
            return Refusal(grammar.NOT_MUTED, f"{args[0]} is not muted", (args[0],))
        self._cancelEnd(mute.key)
        self._unmuted(mute, f"{actor.name} unmuted you", "UNMUTED", actor.name)
        self._done(actor, "unmute", "unmuted {name}", name=mute.target)
        return actor.format.ok("UNMUTE", mute.target, mute.target)

    def _muteEnded(self, mute: Sanction) -> None:
        """A mute's time is up: the user is told (and need not try to find out)."""
        del self._muteEnds[mute.key]
        self.mutes.remove(mute.key, self.clock.seconds())
        self.log.info("the mute of {name} by {by} ended", name=mute.target, by=mute.by)
        self._unmuted(mute, f"your mute by {mute.by} has ended", "MUTE_ENDED", mute.by)

    def _cancelEnd(self, key: str) -> None:
        timer = self._muteEnds.pop(key, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _unmuted(self, mute: Sanction, human: str, *fields: object) -> None:
        """Tell the user of C{mute}, if here, that it is lifted."""
        member = self.room.findLocal(mute.target)
        if member is not None and not member.away:
            unmuted = cast(Actor, member)
            unmuted.muted = False
            unmuted.deliver(
                unmuted.format.notice("MOD", f"{human}: you may send messages again", *fields)
            )

    def _keep(self, ban: Sanction, lifted: bool, undo: Callable[[], object]) -> bool | Later[bool]:
        """Have the keeper keep a change of the bans; C{undo} it if that fails now."""
        try:
            return True if self.keeper is None else self.keeper.saved(self.bans, ban, lifted)
        except RoomUnavailable:
            undo()
            raise

    def ban(self, actor: Actor, rest: str) -> Answer | Later[Answer]:
        """
        C{BAN user-or-address minutes [reason]}: refused at JOIN (a name) or at
        connect (an address) until then; who is online under it is disconnected.
        """
        denied = self._denied(actor, "BAN")
        if denied is not None:
            return denied
        args = rest.split(None, 2)
        minutes = _minutes(args[1]) if len(args) >= 2 else None
        key = ban_key(args[0]) if args else None
        if minutes is None or key is None:
            return Refusal(
                grammar.USAGE,
                "BAN <username or IP address> <minutes> [<reason>]; "
                f"minutes from 1 to {MAX_MINUTES}",
            )
        target = args[0]
        if key == name_key(str(actor.name)) or key == address_key(actor.host):
            return Refusal(grammar.USAGE, "you cannot BAN yourself")
        reason, now = _reason(args[2:]), self.clock.seconds()
        ban = Sanction(key, target, now + minutes * 60, str(actor.name), reason)
        previous = self.bans.get(key, now)
        if not self.bans.add(ban, now):
            return _full("bans", self.bans.capacity)

        def undo() -> None:
            self.bans.remove(key, now)
            if previous is not None:
                self.bans.add(previous, now)

        def kept(ok: bool) -> Answer:
            if not ok:
                undo()
                return _full("bans", self.bans.capacity)
            return self._banned(actor, ban, minutes)

        return then(self._keep(ban, False, undo), kept, undo)

    def _banned(self, actor: Actor, ban: Sanction, minutes: int) -> Answer:
        """A ban is in force, and kept: enforce it, and say so."""
        target, reason = ban.target, ban.reason
        closed = self.enforce(ban)
        self._done(
            actor,
            "ban",
            "banned {target} for {minutes} minutes: {reason} ({closed} connections closed)",
            target=target,
            minutes=minutes,
            reason=reason or "-",
            closed=closed,
        )
        return actor.format.ok(
            "BAN",
            f"{target} for {duration(minutes * 60)} ({closed} connections closed)",
            target,
            minutes * 60,
            closed,
        )

    def unban(self, actor: Actor, rest: str) -> Answer | Later[Answer]:
        """C{UNBAN user-or-address}."""
        denied = self._denied(actor, "UNBAN")
        if denied is not None:
            return denied
        args = rest.split()
        key = ban_key(args[0]) if len(args) == 1 else None
        if key is None:
            return Refusal(grammar.USAGE, "UNBAN <username or IP address>")
        now = self.clock.seconds()
        ban = self.bans.remove(key, now)
        if ban is None:
            return Refusal(grammar.NOT_BANNED, f"{args[0]} is not banned", (args[0],))

        def undo() -> None:
            self.bans.add(ban, now)

        def kept(ok: bool) -> Answer:
            self._done(actor, "unban", "unbanned {target}", target=ban.target)
            return actor.format.ok("UNBAN", ban.target, ban.target)

        return then(self._keep(ban, True, undo), kept, undo)

    # Bans decided elsewhere (another node of a cluster)

    def enforce(self, ban: Sanction) -> int:
        """
        Disconnect who is online under C{ban} on this server; how many
        connections were closed.
        """
        if ban.key.startswith("name:"):
            member = self.room.findLocal(ban.target)
            if member is None:
                return 0
            self._remove(member, grammar.BANNED, *self._bye(ban))
            return 0 if member.away else 1
        return self._enforceAddresses({ban.key: ban})

    def _enforceAddresses(self, bans: dict[str, Sanction]) -> int:
        """Disconnect the connections from the addresses of C{bans} (by key)."""
        closed = 0
        for actor in list(self.connections):
            ban = bans.get(address_key(actor.host) or "")
            if ban is not None:
                actor.bye(grammar.BANNED, *self._bye(ban))
                closed += 1
        return closed

    def _bye(self, ban: Sanction) -> tuple[str, str, str, int, str]:
        """The details and fields of the C{BYE Banned} of C{ban}."""
        left = ban.left(self.clock.seconds())
        details = f"{ban.by} banned you for {duration(left)}{because(ban.reason)}"
        return details, ban.target, ban.by, left, grammar.field(ban.reason)

    def applied(self, ban: Sanction) -> None:
        """A ban decided on another node: keep it and enforce it here."""
        now = self.clock.seconds()
        if ban.until > now and self.bans.add(ban, now):
            closed = self.enforce(ban)
            self.log.info(
                "ban of {target} by {by} from another node ({closed} connections closed here)",
                target=ban.target,
                by=ban.by,
                closed=closed,
            )

    def loaded(self, bans: list[Sanction]) -> None:
        """
        Every ban, as the cluster holds them (after a (re)connection): the
        replica is replaced, and who is online under one is disconnected.
        """
        now = self.clock.seconds()
        self.bans.replace(ban for ban in bans if ban.until > now)
        addresses = {}
        for ban in self.bans:
            if ban.key.startswith("name:"):
                self.enforce(ban)
            else:
                addresses[ban.key] = ban
        if addresses:  # one pass over the connections for all of them
            self._enforceAddresses(addresses)

    def lifted(self, key: str) -> None:
        """A ban lifted on another node."""
        self.bans.remove(key, self.clock.seconds())


def _reason(words: list[str]) -> str:
    """An operator's reason, bounded (it was cleaned as any text a user sends)."""
    return words[0][:MAX_REASON] if words else ""


def _minutes(text: str) -> int | None:
    """A count of minutes from 1 to L{MAX_MINUTES}, or C{None}."""
    if not (text.isascii() and text.isdigit()) or len(text) > 7:
        return None
    minutes = int(text)
    return minutes if 1 <= minutes <= MAX_MINUTES else None


def _full(what: str, capacity: int) -> Refusal:
    return Refusal(
        grammar.STORE_FULL,
        f"{capacity} {what} are in force, the most this server keeps; lift one or wait",
        (capacity,),
    )
