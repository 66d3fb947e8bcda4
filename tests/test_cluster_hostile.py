"""
A hostile review of the cluster's lease healing (issue 16 point 3): nodes
and C{redis-server} stopped with SIGSTOP in many shapes, users coming and
going meanwhile, on real C{twistd chat} nodes and a real C{redis-server}
(the fixtures of tests/test_cluster.py).

Each test ends with L{settled}: the invariants of one room, checked from
every side once everything has settled: LIST the same on every node and
equal to the users really connected, the registry in Redis holding each of
them once (on the node they are connected to) and never more than the
capacity, a MESG between any two users reaching that user, and a BCST's
receipt equal to what arrived. The fixtures check that no node logged a
traceback.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from conftest import StartServer, assert_clean_log
from test_cluster import (  # noqa: F401
    Nodes,
    Redis,
    in_sync,
    lose_redis,
    nodes,
    redis,
    redis_command,
    wait_until,
)
from test_cluster_lease import stopped
from test_cluster_receipts import Reader
from test_moderation_sockets import PASSWORD, operators  # noqa: F401
from twisted.internet.task import Clock

from chat.cluster.room import COMMAND_TIMEOUT, HEARTBEAT, LEASE, ClusterRoom
from chat.cluster.scripts import BANS, BROADCASTS, EVENTS, USERS
from chat.core.text import fold
from server import ChatServer, Client

SWEPT = 3 * LEASE
"""How long the other nodes may take to sweep a stopped node's users."""


def _bulk_strings(reply: bytes) -> list[str]:
    """The strings of a Redis array reply (RESP) of bulk strings."""
    lines = reply.split(b"\r\n")
    assert lines[0].startswith(b"*"), reply
    count = int(lines[0][1:])
    values = [line.decode() for line in lines[2 : 2 + 2 * count : 2]]
    assert len(values) == count, reply
    return values


def registry(server: Redis) -> dict[str, str]:
    """The registry in Redis itself: folded name -> C{"node name"}."""
    flat = _bulk_strings(redis_command(server, "HGETALL", USERS))
    return dict(zip(flat[::2], flat[1::2], strict=True))


def listed(client: Client, relayed: list[str] | None = None) -> list[str] | None:
    """
    The sorted names of LIST (their notes cut off), or C{None} while the
    cluster cannot answer; relayed lines that arrived before are read, and
    added to C{relayed}.
    """
    lines = client.command("LIST")
    if relayed is not None:
        relayed += [line for line in lines[:-1] if not line.startswith("USER ")]
    if not lines[-1].startswith("OK LIST"):
        return None
    return sorted(line[5:].split(" (")[0] for line in lines if line.startswith("USER "))


class Room:
    """
    The users a test has connected, by the node each is connected to, so
    that the invariants can be checked against who is really there.
    """

    def __init__(self, cluster: list[ChatServer]) -> None:
        self.cluster = cluster
        self.users: dict[str, tuple[Client, str]] = {}  # name -> (client, node id)

    def join(self, node: int, name: str) -> Client:
        client = Client(self.cluster[node].port)
        client.join(name)
        self.users[name] = (client, f"node{node}")
        return client

    def seat(self, *seats: tuple[int, str]) -> list[Client]:
        """Join each C{(node, name)}, then wait until every user lists them all."""
        clients = [self.join(node, name) for node, name in seats]
        self.everyone([name for _, name in seats])
        return clients

    def client(self, name: str) -> Client:
        return self.users[name][0]

    def closed(self, name: str, bye: str) -> None:
        """C{name} must be told C{bye} and closed; it is no longer in the room."""
        client, _ = self.users.pop(name)
        client.timeout = 20
        assert client.read_until(lambda line: line.startswith("BYE "))[-1] == bye
        client.expect_eof()

    def quit(self, name: str) -> None:
        self.users.pop(name)[0].quit()

    def everyone(self, names: list[str], timeout: float = 15) -> float:
        """
        Wait until LIST is C{names} for every user (so on every node that has
        users: LIST needs a JOIN); how long it took.
        """
        started = time.monotonic()
        for name, (client, node) in self.users.items():
            wait_until(
                lambda c=client: listed(c) == sorted(names),
                max(1.0, timeout - (time.monotonic() - started)),
                f"LIST of {name} on {node} is {sorted(names)}",
            )
        return time.monotonic() - started


def settled(room: Room, server: Redis, capacity: int = 10) -> None:
    """
    The invariants of one room (see the module's docstring), once LIST on
    every node says the users connected.
    """
    names = sorted(room.users)
    took = room.everyone(names)
    print(f"LIST right for everyone {took:.1f} s later")
    held = registry(server)
    assert len(held) <= capacity, held
    assert sorted(entry.split(" ", 1)[1] for entry in held.values()) == names, held
    for name, (_, node) in room.users.items():
        assert held[fold(name)] == f"{node} {name}", held
    assert redis_command(server, "HLEN", USERS) == f":{len(names)}\r\n".encode()
    for sender, (client, _) in room.users.items():
        for recipient, (reader, _) in room.users.items():
            if recipient != sender:
                answer = client.command(f"MESG {recipient} from {sender}")
                assert answer[-1].startswith(f"OK MESG {recipient} "), answer
                assert reader.read_line() == f"MESG {sender}: from {sender}"
    for sender, (client, _) in room.users.items():
        assert client.command(f"BCST all from {sender}") == [f"OK BCST {len(names) - 1}"]
        for recipient, (reader, _) in room.users.items():
            if recipient != sender:
                assert reader.read_line() == f"BCST {sender}: all from {sender}"
    for client, _ in room.users.values():
        client.assert_silent()


def test_a_node_stopped_just_under_its_lease_loses_nobody(
    nodes: Nodes,  # noqa: F811
    redis: Redis,  # noqa: F811
) -> None:
    """
    node0 is stopped for less than the lease minus a heartbeat: nobody is
    swept, nobody is told anything, and a MESG sent to a user of the
    stopped node arrives when it resumes.
    """
    cluster = nodes(3)
    room = Room(cluster)
    room.seat((0, "alice"), (1, "bob"), (2, "cy"))
    with stopped(cluster[0].pid):
        started = time.monotonic()
        assert room.client("bob").command("MESG alice are you there") == ["OK MESG alice sent"]
        while time.monotonic() - started < LEASE - HEARTBEAT - 0.7:
            assert listed(room.client("cy")) == ["alice", "bob", "cy"]
            time.sleep(0.2)
    assert room.client("alice").read_line() == "MESG bob: are you there"
    settled(room, redis)
    for node in cluster:
        assert "lapsed" not in node.log_text()


def test_a_swept_user_gets_the_broadcasts_counted_while_registered() -> None:
    """
    The rule behind the test above, without Redis: alice and bea, registered
    at version 3, are swept at 5 and 6 and registered again at 8 and 9. A
    broadcast reaches each if its sender counted her: before her sweep (even
    if it arrives after she is back) and from her return on, not in the gap
    between. bea's node hears of her return before it hears of her sweep.
    """
    room = ClusterRoom(10, "redis://127.0.0.1:1/0", "node1", Clock())
    alice, bea = Reader("alice"), Reader("bea")
    room._local = {fold("alice"): alice, fold("bea"): bea}
    room._since = {alice: 3, bea: 3}
    room.received(EVENTS, "5 lost node1 alice")
    room.received(BROADCASTS, "node0 4\nBCST bob: 4\0node0 5\nBCST bob: 5")
    room._registered(alice, 8, resync=False)
    room._registered(bea, 9, resync=False)
    room.received(EVENTS, "6 lost node1 bea")
    for counted in (4, 5, 6, 7, 8, 9):
        room.received(BROADCASTS, f"node0 {counted}\nBCST bob: {counted}")
    assert alice.got == [b"BCST bob: %d" % n for n in (4, 4, 8, 9)]
    assert bea.got == [b"BCST bob: %d" % n for n in (4, 5, 4, 5, 9)]
    room._registered(alice, 1, resync=True)  # Redis restarted empty
    room.received(BROADCASTS, "node0 1\nBCST bob: 1")
    assert alice.got[-1] == b"BCST bob: 1"


def test_a_user_without_a_seat_is_gone_from_its_own_node_too(
    nodes: Nodes,  # noqa: F811
    redis: Redis,  # noqa: F811
) -> None:
    """
    node0 (alice, frank) is stopped until swept, and node1 fills the room.
    Back, node0 closes frank (no seat): he must be gone for node0 too. He
    stayed in its replica: a MESG to him was answered C{sent}, every BCST
    counted him, and the room looked over full (4 of 3).
    """
    cluster = nodes(2, "--max-users", "3")
    room = Room(cluster)
    room.seat((0, "alice"), (0, "frank"), (1, "bob"))
    with stopped(cluster[0].pid):
        wait_until(lambda: listed(room.client("bob")) == ["bob"], SWEPT, "node0 swept")
        room.join(1, "dave")
    room.closed("frank", "BYE Too Many Users: while this server was cut off, the room filled up")
    room.everyone(["alice", "bob", "dave"])
    alice = room.client("alice")
    assert alice.command("MESG frank still there?")[0].startswith("ERR Unknown Recipient")
    assert "INFO Users: 3 of 3" in alice.command("STATUS")
    assert Client(cluster[0].port).command("JOIN erin") == [
        "ERR Too Many Users: 3 of 3 users are registered; try again later"
    ]
    settled(room, redis, capacity=3)


def test_a_broadcast_to_a_swept_node_reaches_whom_it_counted(
    nodes: Nodes,  # noqa: F811
    redis: Redis,  # noqa: F811
) -> None:
    """
    A BCST sent while node0's users are swept counts none of them (they are
    not registered), only cy on node2; when node0 resumes it must not hand
    it to alice, uncounted. And the other nodes say in their logs which
    users they lost to the sweep.
    """
    cluster = nodes(3)
    room = Room(cluster)
    room.seat((0, "alice"), (1, "bob"), (2, "cy"))
    with stopped(cluster[0].pid):
        wait_until(lambda: listed(room.client("bob")) == ["bob", "cy"], SWEPT, "node0 swept")
        wait_until(lambda: "INFO Users: 2 of 10" in room.client("bob").command("STATUS"), 5, "")
        assert room.client("bob").command("BCST anyone?") == ["OK BCST 1"]
        assert room.client("cy").read_line() == "BCST bob: anyone?"
    relayed: list[str] = []
    wait_until(
        lambda: listed(room.client("alice"), relayed) == ["alice", "bob", "cy"], 15, "alice back"
    )
    assert relayed == []
    settled(room, redis)
    for node in cluster[1:]:
        node.wait_for_log("redis: alice removed: the lease of node node0 expired")


def test_a_reassertion_told_it_failed_is_tried_again(
    nodes: Nodes,  # noqa: F811
    redis: Redis,  # noqa: F811
) -> None:
    """
    node0 is stopped until swept and bob takes carol's name. Redis is
    stopped, and node0 let go: it learns of the sweep from the events
    waiting for it and sends its re-assertion, which times out; then Redis
    is let go and runs it late. node0 must still close its carol (the name
    is bob's carol's), not keep two carols, one of them out of the registry.
    """
    cluster = nodes(2)
    room = Room(cluster)
    room.seat((0, "alice"), (0, "carol"), (1, "bob"))
    os.kill(cluster[0].pid, signal.SIGSTOP)
    try:
        wait_until(lambda: listed(room.client("bob")) == ["bob"], SWEPT, "node0 swept")
        thief = Client(cluster[1].port)
        thief.join("carol")
        with stopped(redis.process.pid):
            os.kill(cluster[0].pid, signal.SIGCONT)
            cluster[0].wait_for_log(
                "redis: could not register the users again: no answer from Redis within 3 s",
                timeout=COMMAND_TIMEOUT + 2,
            )
    finally:
        os.kill(cluster[0].pid, signal.SIGCONT)
    room.closed(
        "carol", "BYE Username Taken: while this server was cut off, another user took your name"
    )
    room.users["carol"] = (thief, "node1")
    settled(room, redis)


def test_two_nodes_stopped_at_once_while_the_third_fills_the_room(
    nodes: Nodes,  # noqa: F811
    redis: Redis,  # noqa: F811
) -> None:
    """
    node0 and node1 are stopped together; node2 sweeps both, takes ann's
    name and fills all but one seat. Back, node0's ann is closed (name
    taken); one of node1's users gets the last seat, the other is closed.
    """
    cluster = nodes(3, "--max-users", "4")
    room = Room(cluster)
    room.seat((0, "ann"), (1, "bob"), (1, "bea"), (2, "cy"))
    with stopped(cluster[0].pid), stopped(cluster[1].pid):
        wait_until(lambda: listed(room.client("cy")) == ["cy"], SWEPT, "node0, node1 swept")
        thief = Client(cluster[2].port)
        thief.join("ANN")
        room.join(2, "dan")
    # Which of bob and bea keeps the seat is the order node1 sends them in.
    reads = {name: room.users[name][0] for name in ("bob", "bea")}
    room.closed(
        "ann", "BYE Username Taken: while this server was cut off, another user took your name"
    )
    room.users["ANN"] = (thief, "node2")
    wait_until(lambda: len(registry(redis)) == 4, 15, "the room full again")
    closed = [name for name in reads if fold(name) not in registry(redis)]
    assert len(closed) == 1, registry(redis)
    room.closed(closed[0], "BYE Too Many Users: while this server was cut off, the room filled up")
    assert Client(cluster[0].port).command("JOIN erin")[0].startswith("ERR Too Many Users")
    settled(room, redis, capacity=4)


def test_churn_on_three_nodes_while_one_is_stopped_past_its_lease(
    nodes: Nodes,  # noqa: F811
    redis: Redis,  # noqa: F811
) -> None:
    """
    While node0 is stopped past its lease, users on the other nodes quit,
    join, change names (QUIT then JOIN), take a name of node0's, and send
    MESG and BCST; node0's users send lines that wait in its sockets.
    Everything settles into one room.
    """
    cluster = nodes(3, "--max-users", "6")
    room = Room(cluster)
    room.seat((0, "a0"), (0, "a1"), (0, "a2"), (1, "b0"), (1, "b1"), (2, "c0"))
    with stopped(cluster[0].pid):
        room.client("a0").sendline("MESG b1 written while stopped")
        room.client("a2").sendline("QUIT")
        assert room.client("c0").command("MESG a0 before the sweep") == ["OK MESG a0 sent"]
        wait_until(lambda: listed(room.client("c0")) == ["b0", "b1", "c0"], SWEPT, "swept")
        assert (
            room.client("c0")
            .command("MESG a0 after the sweep")[0]
            .startswith("ERR Unknown Recipient")
        )
        room.quit("b0")
        old_a1 = room.users.pop("a1")[0]
        new_a1 = room.join(1, "a1")  # b0 comes back under a name of node0's
        room.join(2, "d0")
        room.join(2, "d1")
        wait_until(lambda: "INFO Users: 5 of 6" in room.client("b1").command("STATUS"), 5, "d1")
        assert room.client("b1").command("BCST while node0 is away") == ["OK BCST 4"]
    a2 = room.users.pop("a2")[0]
    assert a2.read_line(timeout=10) == "OK QUIT Bye"
    a2.expect_eof()
    room.users["a1"] = (old_a1, "node0")
    room.closed(
        "a1", "BYE Username Taken: while this server was cut off, another user took your name"
    )
    room.users["a1"] = (new_a1, "node1")
    a0 = room.client("a0")
    got = {a0.read_line(timeout=10), a0.read_line()}
    assert got == {"OK MESG b1 sent", "MESG c0: before the sweep"}
    assert room.client("b1").read_line() == "MESG a0: written while stopped"
    settled(room, redis, capacity=6)


def test_a_held_session_outlives_its_nodes_lapse(
    nodes: Nodes,  # noqa: F811
    redis: Redis,  # noqa: F811
) -> None:
    """
    With C{--grace}, alice's connection drops and her name is held on node0;
    node0 is stopped until swept. Back, it registers the held session again,
    and alice resumes with her token and gets what was held for her.
    """
    cluster = nodes(2, "--grace", "60")
    room = Room(cluster)
    alice, _ = room.seat((0, "alice"), (1, "bob"))
    token = alice.token
    room.users.pop("alice")[0].close()
    cluster[0].wait_for_log("name held for 60")
    bob = room.client("bob")
    assert bob.command("MESG alice held for you") == ["OK MESG alice sent"]
    bob.presence = True
    seen: list[str] = []
    with stopped(cluster[0].pid):
        wait_until(lambda: listed(bob, seen) == ["bob"], SWEPT, "node0 swept")
    wait_until(lambda: listed(bob, seen) == ["alice", "bob"], 15, "alice held again")
    # bob was told alice was lost; then that she is held, not that she is back.
    notices = [line for line in seen if line.startswith("INFO alice")]
    at = notices.index("INFO alice lost the connection")
    if len(notices) == at + 1:
        notices += bob.read_until(lambda line: line.startswith("INFO alice"))[-1:]
    assert re.fullmatch(
        r"INFO alice lost the connection; the name is held for a resume for 5\d seconds",
        notices[at + 1],
    ), notices
    bob.presence = False
    back = Client(cluster[0].port)
    assert back.command(f"JOIN alice {token}") == [
        "MESG bob: held for you",
        "OK JOIN alice 2/10 resumed: 1 held messages replayed, 0 older ones dropped",
    ]
    room.users["alice"] = (back, "node0")
    settled(room, redis)


def test_a_ban_or_unban_told_it_failed_never_takes_effect(
    nodes: Nodes,  # noqa: F811
    redis: Redis,  # noqa: F811
    operators: Path,  # noqa: F811
) -> None:
    """
    Redis is stopped past the lease while an operator bans, unbans and a
    newcomer joins: each is told C{ERR Cluster Unavailable}, and none of
    them takes effect when Redis runs them; the room heals around them.
    """
    cluster = nodes(2, "--operators", str(operators))
    room = Room(cluster)
    carol, _ = room.seat((0, "carol"), (1, "mallory"))
    carol.expect_reply(f"OPER root {PASSWORD}", "OK OPER root")
    assert carol.command("BAN eve 10") == ["OK BAN eve for 10 minutes (0 connections closed)"]
    unavailable = "ERR Cluster Unavailable: the cluster cannot be reached; try again soon"
    started = time.monotonic()
    with stopped(redis.process.pid):
        assert carol.command("BAN mallory 10 spam") == [unavailable]
        assert carol.command("UNBAN eve") == [unavailable]
        assert Client(cluster[1].port).command("JOIN zed") == [unavailable]
        time.sleep(max(0.0, LEASE + 2 - (time.monotonic() - started)))
    settled(room, redis)
    assert _bulk_strings(redis_command(redis, "HKEYS", BANS)) == ["name:eve"]
    for node in cluster:
        assert Client(node.port).command("JOIN eve")[0].startswith("ERR Banned: the name eve")
    zed = Client(cluster[0].port)
    assert zed.command("JOIN zed")[0].startswith("OK JOIN zed")


def test_a_node_stopped_while_redis_restarts_empty(
    nodes: Nodes,  # noqa: F811
    redis: Redis,  # noqa: F811
) -> None:
    """
    node0 is stopped while Redis is killed and restarted with nothing; the
    other nodes register their users again, one takes a1's name and the room
    fills up to the last seat. Back, node0 keeps a0 in it and closes a1.
    """
    cluster = nodes(3, "--max-users", "5")
    room = Room(cluster)
    room.seat((0, "a0"), (0, "a1"), (1, "b0"), (2, "c0"))
    with stopped(cluster[0].pid):
        lose_redis(cluster[1:], redis)
        redis.start()
        for node in cluster[1:]:
            wait_until(lambda n=node: n.log_text().count("in sync at version") == 2, 15, "resync")
        old = room.users.pop("a1")[0]
        room.join(2, "A1")
        wait_until(lambda: listed(room.client("b0")) == ["A1", "b0", "c0"], 5, "A1 seen")
    room.users["a1"] = (old, "node0")
    room.closed(
        "a1", "BYE Username Taken: while this server was cut off, another user took your name"
    )
    settled(room, redis, capacity=5)


def test_what_is_sent_while_redis_is_stopped_past_the_lease(
    nodes: Nodes,  # noqa: F811
    redis: Redis,  # noqa: F811
) -> None:
    """
    Redis is stopped past the lease (every lease has expired in its clock
    when it resumes; the first node to sweep removes the others' users)
    while ann broadcasts, cy sends bob a MESG and a newcomer tries to JOIN.
    The broadcast was counted before the sweep, though Redis runs it after:
    it reaches both it counted, and the MESG arrives.
    """
    cluster = nodes(3)
    room = Room(cluster)
    ann, _, cy = room.seat((0, "ann"), (1, "bob"), (2, "cy"))
    started = time.monotonic()
    with stopped(redis.process.pid):
        assert Client(cluster[1].port).command("JOIN dan")[0].startswith("ERR Cluster Unavailable")
        time.sleep(max(0.0, LEASE + 2 - (time.monotonic() - started)))
        # Behind the sweeps that every node queued meanwhile: whichever runs
        # first removes users counted here.
        assert ann.command("BCST while redis sleeps") == ["OK BCST 2"]
        assert cy.command("MESG bob also while redis sleeps") == ["OK MESG bob sent"]
    bob = room.client("bob")
    assert bob.read_line(timeout=10) == "BCST ann: while redis sleeps"
    assert bob.read_line() == "MESG cy: also while redis sleeps"
    assert cy.read_line() == "BCST ann: while redis sleeps"
    settled(room, redis)
    assert "dan" not in registry(redis)


def test_every_broadcast_receipt_is_true_through_a_lapse(
    nodes: Nodes,  # noqa: F811
    redis: Redis,  # noqa: F811
) -> None:
    """
    bob broadcasts without pause while node0 (alice) is stopped past its
    lease, swept, resumed and healed: each receipt must be the number of
    users the broadcast reached, message by message.
    """
    cluster = nodes(3, "--rate-limit", "0")
    room = Room(cluster)
    alice, bob, cy = room.seat((0, "alice"), (1, "bob"), (2, "cy"))
    receipts: dict[str, str] = {}

    def broadcast(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            text = f"m{len(receipts)}"
            receipts[text] = bob.command(f"BCST {text}")[0]
            time.sleep(0.02)

    with stopped(cluster[0].pid):
        broadcast(LEASE + 2)
    broadcast(2)
    reached = dict.fromkeys(receipts, 0)
    for client in (alice, cy):
        client.sendline("LIST")  # a last line, to read up to
        for line in client.read_until(lambda line: line.startswith("OK LIST")):
            if line.startswith("BCST bob: "):
                reached[line.removeprefix("BCST bob: ")] += 1
    counted = {text: int(receipt.removeprefix("OK BCST ")) for text, receipt in receipts.items()}
    print(f"{len(counted)} broadcasts, by receipt: {sorted(set(counted.values()))}")
    assert set(counted.values()) == {1, 2}
    assert reached == counted
    settled(room, redis)


def test_a_node_stopped_about_as_long_as_its_lease(
    nodes: Nodes,  # noqa: F811
    redis: Redis,  # noqa: F811
) -> None:
    """
    node0 is stopped for a little more than the lease: swept or not,
    depending on where in its heartbeat it stopped. MESGs sent to and from
    alice right after it resumes are answered truly, and the room settles.
    """
    cluster = nodes(2)
    room = Room(cluster)
    alice, bob = room.seat((0, "alice"), (1, "bob"))
    with stopped(cluster[0].pid):
        time.sleep(LEASE + 0.3)
    alice.sendline("MESG bob right after")
    *before, answer = bob.command("MESG alice right after too")
    assert answer == "OK MESG alice sent" or answer.startswith("ERR Unknown Recipient"), answer
    expected = ["OK MESG bob sent"]
    if answer == "OK MESG alice sent":
        expected.append("MESG bob: right after too")
    assert sorted(alice.read_line() for _ in expected) == sorted(expected)
    assert (before or [bob.read_line()]) == ["MESG alice: right after"]
    settled(room, redis)
    print("swept" if "lapsed" in cluster[0].log_text() else "not swept")


def test_a_node_swept_and_killed_leaves_no_user_it_registered_meanwhile(
    redis: Redis,  # noqa: F811
    start_server: StartServer,
    tmp_path: Path,
) -> None:
    """
    node0 is stopped until swept (out of the cluster), then let go while
    Redis is stopped: its re-registration will come too late, but zed's
    JOIN, sent a second later, is still in time when Redis runs both, just
    after node0 is killed. No sweep would ever remove a user of a node out
    of the cluster: zed must not be registered, or his name and seat are
    taken for good.
    """
    doomed = ChatServer(tmp_path / "doomed.log", ["--redis", redis.url, "--node-id", "node0"])
    try:
        survivor = start_server("--redis", redis.url, "--node-id", "node1")
        for node in (doomed, survivor):
            in_sync(node)
        room = Room([doomed, survivor])
        room.seat((0, "alice"), (1, "bob"))
        zed = Client(doomed.port)
        with stopped(doomed.pid):
            wait_until(lambda: listed(room.client("bob")) == ["bob"], SWEPT, "node0 swept")
            redis.process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(1)
            zed.sendline("JOIN zed")
            doomed.wait_for_log("redis: could not register", timeout=COMMAND_TIMEOUT + 2)
            doomed.process.kill()
            doomed.process.wait(5)
        finally:
            redis.process.send_signal(signal.SIGCONT)
        room.users.pop("alice")
        time.sleep(LEASE + 2 * HEARTBEAT)  # any sweep has run
        assert "zed" not in registry(redis)
        settled(room, redis)
    finally:
        doomed.stop()
        assert_clean_log(doomed)
