"""
Property-based tests: random interleavings of commands from several clients,
checked line by line against a simple model of the room.

Invariants: the capacity is never exceeded, names are unique ignoring case,
BCST never reaches its sender, each MESG reaches the named live recipient
exactly once, and the registry is exactly the set of live registered
connections.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet.task import Clock

from chat.limits import Limits
from chat.protocol import ChatFactory
from harness import GREETING, Client

CAPACITY = 3
CLIENTS = 5
names = st.sampled_from(["ann", "Ann", "bob", "BOB", "cy", "dee", "x!"])
texts = (
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1)
    .map(str.strip)
    .filter(bool)
)


class Room(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.factory = ChatFactory(
            max_users=CAPACITY, limits=Limits(rate=0, join_timeout=0), clock=Clock()
        )
        self.clients: list[Client | None] = [None] * CLIENTS
        self.names: list[str | None] = [None] * CLIENTS  # the model
        self.port = 0

    def client(self, i: int) -> Client:
        client = self.clients[i]
        if client is None or client.closed:
            self.port += 1
            client = self.clients[i] = Client(self.factory, self.port)
            self.names[i] = None
            assert client.lines() == GREETING
        return client

    def registered(self) -> dict[str, int]:
        return {name.lower(): i for i, name in enumerate(self.names) if name is not None}

    def expect_silence_elsewhere(self, *talking: int) -> None:
        for i, client in enumerate(self.clients):
            if client is not None and i not in talking:
                assert client.lines() == []

    @rule(i=st.integers(0, CLIENTS - 1), name=names)
    def join(self, i: int, name: str) -> None:
        client = self.client(i)
        reply = client.send(f"JOIN {name}")
        taken = self.registered()
        if self.names[i] is not None:
            assert reply[0].startswith("ERR Already Registered")
        elif not name.isalnum():
            assert reply[0].startswith("ERR Invalid Username")
        elif len(taken) >= CAPACITY:
            assert reply[0].startswith("ERR Too Many Users")
        elif name.lower() in taken:
            assert reply[0].startswith("ERR Username Taken")
        else:
            assert reply == [f"OK JOIN {name} {len(taken) + 1}/{CAPACITY}"]
            self.names[i] = name
        self.expect_silence_elsewhere(i)

    @rule(i=st.integers(0, CLIENTS - 1), to=names, text=texts)
    def mesg(self, i: int, to: str, text: str) -> None:
        reply = self.client(i).send(f"MESG {to} {text}")
        target = self.registered().get(to.lower())
        if self.names[i] is None:
            assert reply[0].startswith("ERR Unregistered User")
        elif target is None:
            assert reply[0].startswith("ERR Unknown Recipient")
        else:
            if target == i:
                assert reply == [f"MESG {self.names[i]}: {text}", f"OK MESG {self.names[i]}"]
            else:
                assert reply == [f"OK MESG {self.names[target]}"]
                assert self.client(target).lines() == [f"MESG {self.names[i]}: {text}"]
        self.expect_silence_elsewhere(i)

    @rule(i=st.integers(0, CLIENTS - 1), text=texts)
    def bcst(self, i: int, text: str) -> None:
        reply = self.client(i).send(f"BCST {text}")
        if self.names[i] is None:
            assert reply[0].startswith("ERR Unregistered User")
            self.expect_silence_elsewhere(i)
            return
        others = [j for j in self.registered().values() if j != i]
        assert reply == [f"OK BCST {len(others)}"]
        for j, client in enumerate(self.clients):
            if client is not None and j != i:
                expected = [f"BCST {self.names[i]}: {text}"] if j in others else []
                assert client.lines() == expected

    @rule(i=st.integers(0, CLIENTS - 1))
    def list(self, i: int) -> None:
        reply = self.client(i).send("LIST")
        if self.names[i] is None:
            assert reply[0].startswith("ERR Unregistered User")
        else:
            listed = [line.removeprefix("USER ") for line in reply[:-1]]
            assert sorted(listed) == sorted(n for n in self.names if n is not None)
            assert reply[-1] == f"OK LIST {len(listed)}"

    @rule(i=st.integers(0, CLIENTS - 1))
    def quit(self, i: int) -> None:
        client = self.client(i)
        assert client.send("QUIT") == ["OK QUIT Bye"]
        assert client.closed
        self.names[i] = None

    @precondition(lambda self: any(c is not None and not c.closed for c in self.clients))
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        live = [i for i, c in enumerate(self.clients) if c is not None and not c.closed]
        i = data.draw(st.sampled_from(live))
        self.clients[i].transport.loseConnection()  # type: ignore[union-attr]
        self.names[i] = None

    @invariant()
    def registry_is_the_live_registered_connections(self) -> None:
        room = self.factory.room
        assert len(room) <= CAPACITY
        live = {
            name: self.clients[i].protocol  # type: ignore[union-attr]
            for name, i in self.registered().items()
        }
        assert {name.lower() for name in room.names()} == set(live)
        for name, protocol in live.items():
            assert room.find(name) is protocol
        assert len(self.factory.connections) == sum(
            c is not None and not c.closed for c in self.clients
        )


TestRoom = Room.TestCase
TestRoom.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


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
    for line in fuzzer.lines() + witness.lines():
        assert line.split(" ", 1)[0] in {"INFO", "OK", "ERR", "USER", "MESG", "BCST", "BYE"}
        assert not any(ord(c) < 0x20 and c != "\t" for c in line)
    if not fuzzer.closed:
        assert witness.send("LIST")[-1].startswith("OK LIST")
