"""
Property-based tests: random interleavings of commands from several clients,
dropped connections, resumes and the passing of time, checked line by line
against a simple model of the room.

Invariants: the capacity is never exceeded, names are unique (ignoring case
and look-alikes), BCST never reaches its sender, each MESG reaches the named
recipient exactly once (live, or held and replayed in order on resume), and
the registry is exactly the live registered connections plus the users in
their grace period.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet.task import Clock

from chat.core.away import AwaySession
from chat.core.limits import Limits
from chat.core.text import fold
from chat.server.factory import ChatFactory
from harness import GREETING, Client

CAPACITY = 3
CLIENTS = 4
GRACE = 10.0
HELD = 3
names = st.sampled_from(["ann", "Ann", "a1", "al", "bob", "x!"])
texts = (
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1)
    .map(str.strip)
    .filter(bool)
)


@dataclass
class User:
    """The model of one registered name."""

    name: str
    client: int | None  # None: away, in the grace period
    token: str
    held: list[str] = field(default_factory=list)
    dropped: int = 0
    expires: float = 0.0


class Room(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        limits = Limits(rate=0, join_timeout=0, grace=GRACE, max_held=HELD)
        self.factory = ChatFactory(max_users=CAPACITY, limits=limits, clock=self.clock)
        self.clients: list[Client | None] = [None] * CLIENTS
        self.users: dict[str, User] = {}  # the model, by folded name
        self.port = 0

    def client(self, i: int) -> Client:
        client = self.clients[i]
        if client is None or client.closed:
            self.port += 1
            client = self.clients[i] = Client(self.factory, self.port)
            assert client.lines() == GREETING
        return client

    def user_of(self, i: int) -> User | None:
        return next((u for u in self.users.values() if u.client == i), None)

    def expect_silence_elsewhere(self, *talking: int) -> None:
        for i, client in enumerate(self.clients):
            if client is not None and i not in talking:
                assert client.lines() == []

    def hold(self, user: User, line: str) -> None:
        if len(user.held) == HELD:
            user.held.pop(0)
            user.dropped += 1
        user.held.append(line)

    @rule(i=st.integers(0, CLIENTS - 1), name=names, token=st.sampled_from([None, "right", "x"]))
    def join(self, i: int, name: str, token: str | None) -> None:
        client = self.client(i)
        holder = self.users.get(fold(name))
        if token == "right":
            token = holder.token if holder is not None else "unknownToken"
        reply = client.send(f"JOIN {name} {token}" if token else f"JOIN {name}")
        me = self.user_of(i)
        if me is not None:
            assert reply == [f"ERR Already Registered: you are {me.name}; this JOIN was discarded"]
        elif not name.isalnum() or token == "x":
            assert reply[0].startswith("ERR Invalid Username")
        elif holder is not None and holder.client is None and token:
            if token != holder.token:
                assert reply[0].startswith("ERR Invalid Token")
            else:  # resume: the held lines in order, then the OK
                assert reply == [
                    *holder.held,
                    (
                        f"OK JOIN {holder.name} {len(self.users)}/{CAPACITY} (resume token: T) "
                        f"resumed: {len(holder.held)} held messages replayed, "
                        f"{holder.dropped} older ones dropped"
                    ),
                ]
                # A resume issues a new token; the old one is spent.
                assert client.token != holder.token
                holder.client, holder.held, holder.dropped = i, [], 0
                holder.token = str(client.token)
        elif holder is not None and holder.client is None:
            assert reply[0].startswith(f"ERR Username Taken: {holder.name} is held for a user")
        elif token and holder is None:
            assert reply[0].startswith(f"ERR Invalid Token: no dropped session of {name}")
        elif len(self.users) >= CAPACITY:
            assert reply[0].startswith("ERR Too Many Users")
        elif holder is not None:
            assert reply == [f"ERR Username Taken: {name} is already registered"]
        else:
            assert reply == [f"OK JOIN {name} {len(self.users) + 1}/{CAPACITY} (resume token: T)"]
            self.users[fold(name)] = User(name, i, str(client.token))
        self.expect_silence_elsewhere(i)

    @rule(i=st.integers(0, CLIENTS - 1), to=names, text=texts)
    def mesg(self, i: int, to: str, text: str) -> None:
        reply = self.client(i).send(f"MESG {to} {text}")
        me, target = self.user_of(i), self.users.get(fold(to))
        if me is None:
            assert reply[0].startswith("ERR Unregistered User")
        elif target is None:
            assert reply[0].startswith("ERR Unknown Recipient")
        else:
            line = f"MESG {me.name}: {text}"
            if target.client is None:
                assert reply == [
                    (
                        f"OK MESG {target.name} held: {target.name} lost the connection "
                        "and gets it on resuming"
                    )
                ]
                self.hold(target, line)
            elif target is me:
                assert reply == [line, f"OK MESG {me.name} delivered"]
            else:
                assert reply == [f"OK MESG {target.name} delivered"]
                assert self.client(target.client).lines() == [line]
        self.expect_silence_elsewhere(i)

    @rule(i=st.integers(0, CLIENTS - 1), text=texts)
    def bcst(self, i: int, text: str) -> None:
        reply = self.client(i).send(f"BCST {text}")
        me = self.user_of(i)
        if me is None:
            assert reply[0].startswith("ERR Unregistered User")
            self.expect_silence_elsewhere(i)
            return
        line = f"BCST {me.name}: {text}"
        others = [u for u in self.users.values() if u is not me]
        away = [u for u in others if u.client is None]
        held = f" ({len(away)} of them away, held for them)" if away else ""
        assert reply == [f"OK BCST {len(others)}{held}"]
        for user in away:
            self.hold(user, line)
        live = {u.client for u in others if u.client is not None}
        for j, client in enumerate(self.clients):
            if client is not None and j != i:
                assert client.lines() == ([line] if j in live else [])

    @rule(i=st.integers(0, CLIENTS - 1))
    def list(self, i: int) -> None:
        reply = self.client(i).send("LIST")
        if self.user_of(i) is None:
            assert reply[0].startswith("ERR Unregistered User")
        else:
            expected = [
                f"USER {u.name}"
                + (" (disconnected, held for a resume)" if u.client is None else "")
                for u in self.users.values()
            ]
            assert sorted(reply[:-1]) == sorted(expected)
            assert reply[-1] == f"OK LIST {len(expected)}"

    @rule(i=st.integers(0, CLIENTS - 1))
    def quit(self, i: int) -> None:
        client = self.client(i)
        assert client.send("QUIT") == ["OK QUIT Bye"]
        assert client.closed
        me = self.user_of(i)
        if me is not None:
            del self.users[fold(me.name)]

    @precondition(lambda self: any(c is not None and not c.closed for c in self.clients))
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        live = [i for i, c in enumerate(self.clients) if c is not None and not c.closed]
        i = data.draw(st.sampled_from(live))
        self.clients[i].transport.loseConnection()  # type: ignore[union-attr]
        me = self.user_of(i)
        if me is not None:
            me.client, me.expires = None, self.clock.seconds() + GRACE

    @rule(seconds=st.sampled_from([1.0, 4.0, 9.0]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)
        now = self.clock.seconds()
        for key, user in list(self.users.items()):
            if user.client is None and user.expires <= now:
                del self.users[key]
        self.expect_silence_elsewhere()

    @invariant()
    def registry_matches_the_model(self) -> None:
        room = self.factory.room
        assert len(room) == len(self.users) <= CAPACITY
        for user in self.users.values():
            member = room.find(user.name)
            assert room.find(user.name.swapcase()) is member  # found by its folding too
            if user.client is None:
                assert isinstance(member, AwaySession)
                assert [line.decode().rstrip("\r\n") for line in member.held] == user.held
            else:
                assert member is self.clients[user.client].protocol.session  # type: ignore[union-attr]
        assert {fold(name) for name, *_ in room.names()} == set(self.users)
        # The index by registered spelling holds the same members.
        assert room._spelled == {member.name: member for member in room._members.values()}
        assert len(self.factory.connections) == sum(
            c is not None and not c.closed for c in self.clients
        )


TestRoom = Room.TestCase
TestRoom.settings = settings(max_examples=300, stateful_step_count=50, deadline=None)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=10))
def test_arbitrary_bytes_never_break_the_server(chunks: list[bytes]) -> None:
    """Garbage in any segmentation: replies are well-formed lines, no exception."""
    factory = ChatFactory(max_users=2, limits=Limits(rate=0, max_line=64), clock=Clock())
    witness = Client(factory, 1)
    witness.send("JOIN witness")
    fuzzer = Client(factory, 2)
    for chunk in chunks:
        fuzzer.protocol.dataReceived(chunk)
    raw = fuzzer.raw()
    negotiation = re.compile(rb"\xff[\xfb-\xfe][\x00-\xff]")  # our refusals: WONT/DONT x
    text = negotiation.sub(b"", raw).decode()
    assert text == "" or text.endswith("\r\n")
    for line in text.split("\r\n")[:-1] + witness.lines():
        assert line.split(" ", 1)[0] in {"INFO", "OK", "ERR", "USER", "MESG", "BCST", "BYE", "STAT"}
        assert not any(ord(c) < 0x20 and c != "\t" for c in line)
    if not fuzzer.closed:
        assert witness.send("LIST")[-1].startswith("OK LIST")
