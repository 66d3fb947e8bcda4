# -*- test-case-name: tests.test_protocol -*-
"""
The commands of the protocol: dispatch of a line to a C{do_VERB} method,
and every command's rules and replies. Mixed into L{chat.server.protocol.ChatProtocol},
which provides the connection (C{deliver}, C{close}, the room, the format).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from chat.core import grammar
from chat.core.away import AwaySession, is_token, new_token
from chat.core.room import Admission, Delivery, Member, RoomUnavailable
from chat.core.text import NAME_RULE, decode, is_valid_name, split_command

if TYPE_CHECKING:
    from chat.server.protocol import ChatProtocol

    _Base = ChatProtocol
else:
    _Base = object

_T = TypeVar("_T")


class Commands(_Base):
    """
    C{do_VERB(rest)} for each command. A handler returns a L{Deferred} when
    the room answers later (a cluster); no later input is processed before
    it fires.
    """

    def lineReceived(self, line: bytes) -> Deferred[None] | None:
        """
        Run one command.

        @return: a L{Deferred} if the command waits for the room; no later
            line is processed before it fires.
        """
        text = decode(line)
        if not text:
            return None
        verb, rest = split_command(text)
        handler: Callable[[str], Deferred[None] | None] | None = getattr(self, "do_" + verb, None)
        self.factory.stats.commands[verb if handler else "unknown"] += 1
        if handler is None:
            self.unknownCommand(verb)
        elif self.name is None and verb not in ("JOIN", "HELP", "QUIT", "MODE"):
            self.unregistered(verb)
        else:
            try:
                return handler(rest)
            except RoomUnavailable:
                self._unavailable()
        return None

    def _unavailable(self) -> None:
        self._error(grammar.CLUSTER_UNAVAILABLE, "the cluster cannot be reached; try again soon")

    def unknownCommand(self, verb: str) -> None:
        if self.name is None:
            self.unregistered(verb)
            return
        self.log.info("{name} sent an unknown command {verb!r}", name=self.name, verb=verb)
        self._error(grammar.UNKNOWN_MESSAGE, f"{verb} is not a command; HELP lists them", verb)

    def unregistered(self, verb: str) -> None:
        self.log.info("unregistered {peer} sent {verb!r}", peer=self.peer, verb=verb)
        self._error(grammar.UNREGISTERED_USER, grammar.HOW_TO_JOIN)

    def _error(self, reason: str, details: str, *fields: object) -> None:
        self.factory.stats.errors[reason] += 1
        self.deliver(self.format.error(reason, details, *fields))

    # Commands

    def do_JOIN(self, rest: str) -> Deferred[None] | None:
        if self.name is not None:
            self.log.info("{name} sent JOIN {rest!r} again; discarded", name=self.name, rest=rest)
            self._error(
                grammar.ALREADY_REGISTERED,
                f"you are {self.name}; this JOIN was discarded",
                self.name,
            )
            return None
        args = rest.split()
        if not 1 <= len(args) <= 2:
            self._error(grammar.USAGE, "JOIN <username> [<resume token>]")
            return None
        name, token = args[0], args[1] if len(args) == 2 else None
        if not is_valid_name(name) or (token is not None and not is_token(token)):
            # "JOIN Bob Smith" is a name with a space, not a resume.
            self._refuseJoin(rest, "invalid name", grammar.INVALID_USERNAME, NAME_RULE)
            return None
        held = self.room.findLocal(name)
        if isinstance(held, AwaySession):
            if token is not None and held.matches(token):
                self._resume(held)
            elif token is not None:
                self._refuseJoin(
                    name,
                    "wrong resume token",
                    grammar.INVALID_TOKEN,
                    f"that is not the resume token of {held.name}",
                )
            else:
                self._refuseTaken(name, held)
            return None
        if token is not None and held is None:
            self._refuseJoin(
                name,
                "nothing to resume",
                grammar.INVALID_TOKEN,
                f"no dropped session of {name} is waiting; JOIN {name} to start anew"
                if self.factory.limits.grace
                else f"this server keeps no session after a dropped connection; JOIN {name}",
            )
            return None
        return self._whenDecided(self.room.join(name, self), self._joinDecided, name)

    def _resume(self, away: AwaySession) -> None:
        """Take the name back from an away session and replay what it held."""
        if away.timer is not None and away.timer.active():
            away.timer.cancel()
        self.room.replace(away, self)
        # A token seen once (on a shared screen, in a log) must not take the
        # name again later: every resume issues a new one.
        self.token = new_token()
        self._joined()
        replayed, dropped = len(away.held), away.dropped
        room = self.room
        self.log.info(
            "{name} resumed from {peer}: {replayed} held messages replayed, {dropped} dropped",
            name=self.name,
            peer=self.peer,
            replayed=replayed,
            dropped=dropped,
        )
        self.deliver(
            b"".join(away.held)
            + self.format.ok(
                "JOIN",
                f"{self.name} {len(room)}/{room.capacity} (resume token: {self.token}) resumed: "
                f"{replayed} held messages replayed, {dropped} older ones dropped",
                self.name,
                len(room),
                room.capacity,
                self.token,
                "resumed",
                replayed,
                dropped,
            )
        )

    def _whenDecided(
        self, result: _T | Deferred[_T], then: Callable[..., None], *args: object
    ) -> Deferred[None] | None:
        """
        Call C{then(result, *args)} now, or once the room has decided if it
        answered with a L{Deferred} (a cluster room); that L{Deferred} is
        returned so that later input waits for it.
        """
        if not isinstance(result, Deferred):
            then(result, *args)
            return None
        return result.addCallback(self._unlessGone, then, args).addErrback(self._roomFailed)

    def _unlessGone(self, result: _T, then: Callable[..., None], args: tuple[object, ...]) -> None:
        if self._gone:  # the connection closed while the room decided
            self._leave()
        else:
            then(result, *args)

    def _roomFailed(self, failure: Failure) -> None:
        if not failure.check(RoomUnavailable):
            self.log.failure("the room failed", failure)
        if not self._gone:
            self._unavailable()

    def _joinDecided(self, admission: Admission, name: str) -> None:
        room = self.room
        if admission is Admission.FULL:
            self._refuseJoin(
                name,
                "server full",
                grammar.TOO_MANY_USERS,
                f"{len(room)} of {room.capacity} users are registered; try again later",
                len(room),
                room.capacity,
            )
        elif admission is Admission.TAKEN:
            self._refuseTaken(name, self.room.findLocal(name))
        else:
            # Without a grace period there is nothing to resume: no token.
            self.token = new_token() if self.factory.limits.grace else None
            self._joined()
            self.log.info(
                "{name} joined from {peer} ({count}/{capacity} users)",
                name=name,
                peer=self.peer,
                count=len(room),
                capacity=room.capacity,
            )
            resume = f" (resume token: {self.token})" if self.token else ""
            self.deliver(
                self.format.ok(
                    "JOIN",
                    f"{name} {len(room)}/{room.capacity}{resume}",
                    name,
                    len(room),
                    room.capacity,
                    self.token or "-",
                )
            )

    def _joined(self) -> None:
        if self._joinTimer is not None and self._joinTimer.active():
            self._joinTimer.cancel()
            self._joinTimer = None

    def _refuseTaken(self, name: str, holder: object) -> None:
        if isinstance(holder, AwaySession):
            left = max(0, round(holder.expires - self.factory.clock.seconds()))
            self._refuseJoin(
                name,
                "name held for a resume",
                grammar.USERNAME_TAKEN,
                f"{holder.name} is held for a user who lost the connection, "
                f"for {left} more seconds",
                holder.name,
                "away",
                left,
            )
        else:
            self._refuseJoin(
                name, "name taken", grammar.USERNAME_TAKEN, f"{name} is already registered", name
            )

    def _refuseJoin(self, name: str, why: str, reason: str, details: str, *fields: object) -> None:
        self.log.info(
            "refused JOIN {name!r} from {peer}: {why} ({count}/{capacity} users)",
            name=name,
            peer=self.peer,
            why=why,
            count=len(self.room),
            capacity=self.room.capacity,
        )
        self._error(reason, details, *fields)

    def do_LIST(self, rest: str) -> Deferred[None] | None:
        return self._whenDecided(self.room.names(), self._listed)

    def _listed(self, names: list[tuple[str, bool]]) -> None:
        self.log.info("{name} listed {count} users", name=self.name, count=len(names))
        user = self.format.user
        self.deliver(
            b"".join(user(name, away) for name, away in names)
            + self.format.ok("LIST", str(len(names)), len(names))
        )

    def do_MESG(self, rest: str) -> Deferred[None] | None:
        parts = rest.split(None, 1)
        if len(parts) < 2:
            self._error(grammar.USAGE, "MESG <username> <text>")
            return None
        to, text = parts
        return self._whenDecided(self.room.find(to), self._relay, to, text)

    def _relay(self, recipient: Member | None, to: str, text: str) -> None:
        if recipient is None:
            self.log.info("{name} sent MESG to unknown recipient {to!r}", name=self.name, to=to)
            self._error(grammar.UNKNOWN_RECIPIENT, f"nobody named {to} is registered", to)
            return
        self._mesg(recipient, grammar.relayed("MESG", str(self.name), text))

    def _mesg(self, recipient: Member, data: bytes) -> None:
        """Deliver a MESG, then its status line, its count and its receipt."""
        name = str(recipient.name)  # a recipient dropped by this delivery loses its name
        outcome = recipient.deliver(data)
        value = outcome._value_  # a plain attribute; .value is a slower property
        relay_log = self.factory.relay_log
        if relay_log is not None:
            relay_log.mesg(str(self.name), name, value)
        if outcome is Delivery.DROPPED:
            self._error(
                grammar.MESSAGE_DROPPED,
                f"{name} stopped reading and was disconnected; it was not delivered",
                name,
            )
            return
        self.factory.stats.relayed["mesg"] += 1
        if outcome is Delivery.HELD:
            details = f"{name} held: {name} lost the connection and gets it on resuming"
            self.deliver(self.format.ok("MESG", details, name, value))
        else:
            self.deliver(self.format.receipt(name, value))

    def do_BCST(self, rest: str) -> None:
        if not rest:
            self._error(grammar.USAGE, "BCST <text>")
            return
        self._broadcast([grammar.relayed("BCST", str(self.name), rest)])

    def _broadcast(self, relayed: list[bytes]) -> None:
        """Broadcast each of C{relayed}, then its count, status line and reply."""
        name, stats, relay_log = str(self.name), self.factory.stats, self.factory.relay_log
        answered = 0
        try:
            for reached, held in self.room.broadcast(relayed, self):
                stats.relayed["bcst"] += reached
                if relay_log is not None:
                    relay_log.bcst(name, reached)
                details = f"{reached}" + (f" ({held} of them away, held for them)" if held else "")
                self.deliver(self.format.ok("BCST", details, reached, held))
                answered += 1
        except RoomUnavailable:
            for _ in relayed[answered:]:
                self._unavailable()

    def do_HELP(self, rest: str) -> None:
        self.deliver(
            grammar.help_text(bool(self.factory.limits.grace)) + self.format.ok("HELP", "-")
        )

    def do_MODE(self, rest: str) -> None:
        mode = rest.upper()
        if mode not in ("MACHINE", "HUMAN"):
            self._error(grammar.USAGE, "MODE MACHINE | MODE HUMAN")
            return
        self.format = grammar.MACHINE if mode == "MACHINE" else grammar.HUMAN
        self.deliver(
            self.format.ok(
                "MODE",
                f"{mode}: version {grammar.MACHINE_VERSION} of the machine format",
                mode,
                grammar.MACHINE_VERSION,
            )
        )

    def do_STATUS(self, rest: str) -> None:
        factory, room, limits = self.factory, self.room, self.factory.limits
        now = factory.clock.seconds()
        status = self.format.status
        lines = [
            status("User", f"{self.name}, from {self.peer}", self.name, self.peer),
            status("Users", f"{len(room)} of {room.capacity}", len(room), room.capacity),
            status(
                "Connected",
                f"{now - self._connectedAt:.0f} seconds",
                round(now - self._connectedAt),
            ),
            status("Uptime", f"{now - factory.started:.0f} seconds", round(now - factory.started)),
        ]
        if self._bucket is not None:
            budget = self._bucket.available(now)
            lines.append(
                status(
                    "Rate",
                    f"{budget:.1f} of {limits.burst} lines left, {limits.rate:g} more per second",
                    f"{budget:.1f}",
                    limits.burst,
                    f"{limits.rate:g}",
                )
            )
        else:
            lines.append(status("Rate", "no limit", "off"))
        queued = self._queuedWhileBlocked if self.blocked else 0
        lines.append(
            status(
                "Outbound",
                f"{'blocked' if self.blocked else 'flowing'}, {queued} bytes queued past the "
                f"buffer, dropped past {limits.max_outbound}",
                "blocked" if self.blocked else "flowing",
                queued,
                limits.max_outbound,
            )
        )
        lines.append(
            status(
                "Input",
                f"{self._backlogBytes} bytes waiting, disconnected past {limits.max_backlog}",
                self._backlogBytes,
                limits.max_backlog,
            )
        )
        self.deliver(b"".join(lines) + self.format.ok("STATUS", "-"))

    def do_QUIT(self, rest: str) -> None:
        name = self._leave()
        if name is not None:
            self.log.info(
                "{name} quit ({count}/{capacity} users)",
                name=name,
                count=len(self.room),
                capacity=self.room.capacity,
            )
        else:
            self.log.info("unregistered {peer} quit", peer=self.peer)
        self.close(self.format.ok("QUIT", "Bye"))
