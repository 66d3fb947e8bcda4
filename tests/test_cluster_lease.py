"""
Pauses longer than a node's lease: a node or Redis stopped with SIGSTOP
(a VM migration, a swap storm, a debugger) and let go again. Real C{twistd
chat} nodes on a real C{redis-server} (the fixtures of tests/test_cluster.py).

While a node is stopped, the others sweep its users; back, it must notice
and register them again, giving up with a BYE the names another user took
meanwhile and the seats the room no longer has. A command whose client was
told it failed must never take effect when Redis runs it later.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from test_cluster import Nodes, Redis, in_sync, lose_redis, nodes, redis, wait_until  # noqa: F401

from chat.cluster.room import LEASE
from server import Client


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The process C{pid} (ours) is stopped with SIGSTOP until the block ends."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def names(client: Client) -> list[str] | None:
    """The sorted names of LIST, or C{None} while the cluster cannot answer it."""
    lines = client.command("LIST")
    if not lines[-1].startswith("OK LIST"):
        return None
    return sorted(line.removeprefix("USER ") for line in lines[:-1])


def test_a_node_stopped_past_its_lease_registers_its_users_again(
    nodes: Nodes,  # noqa: F811
) -> None:
    """
    node0 (alice, carol, frank) is stopped until node1 sweeps them; node1
    then takes carol's name and two seats of five. Back, node0 re-registers
    alice, closes carol (name taken) and frank (no seat), and says so.
    """
    cluster = nodes(2, "--max-users", "5")
    alice, carol, frank = (Client(cluster[0].port) for _ in range(3))
    alice.join("alice")
    carol.join("carol")
    frank.join("frank")
    bob = Client(cluster[1].port)
    bob.join("bob")
    watcher = Client(cluster[1].port)  # reads the presence notices only
    watcher.join("watcher")
    watcher.presence = True
    wait_until(lambda: len(names(bob) or ()) == 5, 5, "all in LIST")
    with stopped(cluster[0].pid):
        took = wait_until(
            lambda: names(bob) == ["bob", "watcher"], 3 * LEASE, "node0's users swept"
        )
        print(f"node0's users swept {took:.1f} s after it stopped")
        thief, dave = Client(cluster[1].port), Client(cluster[1].port)
        thief.join("carol")
        dave.join("dave")
    resumed = time.monotonic()
    assert carol.read_line(timeout=15) == (
        "BYE Username Taken: while this server was cut off, another user took your name"
    )
    carol.expect_eof()
    assert frank.read_line(timeout=15) == (
        "BYE Too Many Users: while this server was cut off, the room filled up"
    )
    frank.expect_eof()
    wait_until(
        lambda: names(bob) == ["alice", "bob", "carol", "dave", "watcher"],
        10,
        "alice registered again",
    )
    print(f"the room was right {time.monotonic() - resumed:.1f} s after node0 resumed")
    assert names(alice) == ["alice", "bob", "carol", "dave", "watcher"]
    assert bob.expect_reply("MESG alice are you back", "OK MESG alice sent")
    assert alice.read_line() == "MESG bob: are you back"
    assert alice.expect_reply("MESG carol hello", "OK MESG carol sent")
    assert thief.read_line() == "MESG alice: hello"
    # The seats are the room's: a fifth user is refused on either node.
    assert Client(cluster[0].port).expect_reply("JOIN erin", "ERR Too Many Users")
    assert Client(cluster[1].port).expect_reply("JOIN erin", "ERR Too Many Users")
    # node1's users saw alice go and come back; node0's never saw her go.
    seen = watcher.read_until(lambda line: line.startswith("INFO alice is back"))
    assert "INFO alice lost the connection" in seen
    alice.presence = True
    alice.assert_silent()
    log = cluster[0].log_text()
    assert "redis: the lease of node node0 lapsed" in log
    assert "redis: node0 registered 1 of its 3 users again" in log


def test_a_join_that_timed_out_never_takes_effect(
    nodes: Nodes,  # noqa: F811
    redis: Redis,  # noqa: F811
) -> None:
    """
    Redis is stopped past the lease: a JOIN answered C{ERR Cluster
    Unavailable} must not register its name when Redis runs it later, and
    the users swept when Redis came back (every lease expired in its clock)
    are registered again by their nodes.
    """
    cluster = nodes(2)
    ann, bob = Client(cluster[0].port), Client(cluster[1].port)
    ann.join("ann")
    bob.join("bob")
    wait_until(lambda: names(bob) == ["ann", "bob"], 5, "both in LIST")
    started = time.monotonic()
    with stopped(redis.process.pid):
        cy = Client(cluster[0].port)
        assert cy.expect_reply("JOIN cy", "ERR Cluster Unavailable")
        time.sleep(max(0.0, LEASE + 3 - (time.monotonic() - started)))
    resumed = time.monotonic()
    for client in (ann, bob):
        wait_until(lambda c=client: names(c) == ["ann", "bob"], 15, "the room as it was")
    print(f"the room was right {time.monotonic() - resumed:.1f} s after Redis resumed")
    # The name is free, on either node; everyone reaches everyone.
    other = Client(cluster[1].port)
    assert other.expect_reply("JOIN cy", "OK JOIN cy")
    assert ann.expect_reply("MESG bob still there", "OK MESG bob sent")
    assert bob.read_line() == "MESG ann: still there"
    assert bob.expect_reply("MESG ann yes", "OK MESG ann sent")
    assert ann.read_line() == "MESG bob: yes"
    assert cy.expect_reply("JOIN cy", "ERR Username Taken")


def test_broadcast_receipts_stay_true_through_a_redis_restart(
    nodes: Nodes,  # noqa: F811
    redis: Redis,  # noqa: F811
) -> None:
    """
    While the nodes come back after Redis restarted empty, each registers
    its users again at its own pace. A BCST sent meanwhile is counted from
    what its node knows; it must reach exactly the users counted.
    """
    cluster = nodes(3, "--rate-limit", "0")
    ann, bob, cy = (Client(node.port) for node in cluster)
    ann.join("ann")
    bob.join("bob")
    cy.join("cy")
    wait_until(lambda: names(ann) == ["ann", "bob", "cy"], 5, "all in LIST")
    lose_redis(cluster, redis)
    redis.start()
    receipts: dict[str, str] = {}
    end = time.monotonic() + 3
    while time.monotonic() < end:
        text = f"m{len(receipts)}"
        receipts[text] = ann.command(f"BCST {text}")[0]
        time.sleep(0.005)
    reached: dict[str, int] = dict.fromkeys(receipts, 0)
    for client in (bob, cy):
        client.sendline("LIST")  # a last line, to read up to
        for line in client.read_until(lambda line: line.startswith(("OK LIST", "ERR"))):
            if line.startswith("BCST ann: "):
                reached[line.removeprefix("BCST ann: ")] += 1
    counted = {
        text: int(receipt.removeprefix("OK BCST "))
        for text, receipt in receipts.items()
        if receipt.startswith("OK BCST ")
    }
    print(f"{len(counted)} broadcasts, by receipt: {sorted(set(counted.values()))}")
    assert counted, receipts
    assert {text: reached[text] for text in counted} == counted
