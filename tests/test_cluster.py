"""
Several real C{twistd chat} nodes sharing one room through a real
C{redis-server}, started here on a free port with no persistence.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import StartServer, assert_clean_log

from server import ChatServer, Client


class Redis:
    """A redis-server child process on a port of its own."""

    def __init__(self, directory: Path) -> None:
        executable = shutil.which("redis-server")
        assert executable, "redis-server is not installed (apt-get install redis-server)"
        self.executable = executable
        self.directory = directory
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.process.poll() is None, "redis-server exited"
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    server = Redis(tmp_path)
    yield server
    server.kill()


Nodes = Callable[..., list[ChatServer]]


@pytest.fixture
def nodes(start_server: StartServer, redis: Redis) -> Nodes:
    """Start C{count} nodes on the fixture's Redis; return them once each is in sync."""

    def start(count: int = 3, *args: str) -> list[ChatServer]:
        cluster = [
            start_server("--redis", redis.url, "--node-id", f"node{i}", *args) for i in range(count)
        ]
        for node in cluster:
            in_sync(node)
        return cluster

    return start


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll C{condition}; return how long it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.1)
    return time.monotonic() - started


def in_sync(node: ChatServer) -> None:
    node.wait_for_log("in sync at version")


def lose_redis(cluster: list[ChatServer], redis: Redis) -> None:
    """Kill Redis, whose state is gone with it (no persistence); wait until every node knows."""
    redis.kill()
    for node in cluster:
        node.wait_for_log("cluster commands unavailable")


def test_users_on_different_nodes_talk(nodes: Nodes) -> None:
    cluster = nodes(3)
    ann, bob, cy = (Client(node.port) for node in cluster)
    ann.join("Ann")
    bob.join("bob")
    cy.join("cy")
    for client in (ann, bob, cy):
        assert sorted(client.list_names()) == ["Ann", "bob", "cy"]
    assert ann.expect_reply("MESG BOB hello from node0", "OK MESG bob")
    assert bob.read_line() == "MESG Ann: hello from node0"
    assert cy.expect_reply("MESG ann back from node2", "OK MESG Ann")
    assert ann.read_line() == "MESG cy: back from node2"
    assert bob.expect_reply("BCST to everyone", "OK BCST 2")
    assert ann.read_line() == "BCST bob: to everyone"
    assert cy.read_line() == "BCST bob: to everyone"
    bob.assert_silent()  # never to the sender
    bob.send(b"BCST one\r\nBCST two\r\n")  # a run: each line published in turn
    assert [bob.read_line() for _ in range(2)] == ["OK BCST 2"] * 2
    for client in (ann, cy):
        assert [client.read_line() for _ in range(2)] == ["BCST bob: one", "BCST bob: two"]
    assert Client(cluster[2].port).expect_reply("JOIN ANN", "ERR Username Taken")
    bob.quit()
    wait_until(lambda: sorted(ann.list_names()) == ["Ann", "cy"], 5, "bob's QUIT on node0")
    assert Client(cluster[0].port).expect_reply("JOIN Bob", "OK JOIN Bob")


def test_capacity_is_cluster_wide_under_concurrent_joins(nodes: Nodes) -> None:
    cluster = nodes(3, "--max-users", "10", "--rate-limit", "0")
    clients = [Client(cluster[i % 3].port) for i in range(50)]
    replies: dict[str, str] = {}
    barrier = threading.Barrier(len(clients))

    def join(client: Client, name: str) -> None:
        barrier.wait()
        replies[name] = client.command(f"JOIN {name}")[0]

    threads = [
        threading.Thread(target=join, args=(client, f"user{i}")) for i, client in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(replies) == 50
    admitted = sorted(name for name, reply in replies.items() if reply.startswith("OK JOIN"))
    assert len(admitted) == 10, replies
    assert sum(reply.startswith("ERR Too Many Users") for reply in replies.values()) == 40
    first = clients[int(admitted[0].removeprefix("user"))]
    assert sorted(first.list_names()) == admitted


def test_sigkilled_node_leaves_no_ghosts(
    redis: Redis, start_server: StartServer, tmp_path: Path
) -> None:
    survivors = [start_server("--redis", redis.url, "--node-id", f"node{i}") for i in range(2)]
    doomed = ChatServer(tmp_path / "doomed.log", ["--redis", redis.url, "--node-id", "doomed"])
    try:
        for node in (*survivors, doomed):
            in_sync(node)
        alice = Client(survivors[0].port)
        alice.join("alice")
        victims = [Client(doomed.port) for _ in range(3)]
        for i, victim in enumerate(victims):
            victim.join(f"victim{i}")
        wait_until(lambda: len(alice.list_names()) == 4, 5, "the victims in LIST")
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(10)
        took = wait_until(lambda: alice.list_names() == ["alice"], 10, "ghosts gone")
        print(f"a SIGKILLed node's users vanished after {took:.1f} s")
        # The names are free again, on any node, and the survivors serve on.
        again = Client(survivors[1].port)
        again.join("victim0")
        assert alice.expect_reply("MESG victim0 welcome back", "OK MESG victim0")
        assert again.read_line() == "MESG alice: welcome back"
    finally:
        doomed.stop()
        assert_clean_log(doomed)


def test_redis_restart_recovers_and_list_is_right(nodes: Nodes, redis: Redis) -> None:
    cluster = nodes(2)
    ann, bob = Client(cluster[0].port), Client(cluster[1].port)
    ann.join("ann")
    bob.join("bob")
    wait_until(lambda: len(ann.list_names()) == 2, 5, "both in LIST")
    lose_redis(cluster, redis)
    assert ann.command("LIST") == [
        "ERR Cluster Unavailable: the cluster cannot be reached; try again soon"
    ]
    assert ann.expect_reply("MESG bob are you there", "ERR Cluster Unavailable")
    assert ann.expect_reply("BCST anyone", "ERR Cluster Unavailable")
    ann.send(b"BCST a run\r\nBCST of two\r\n")
    assert [ann.read_line()[:24] for _ in range(2)] == ["ERR Cluster Unavailable:"] * 2
    assert Client(cluster[0].port).expect_reply("JOIN cy", "ERR Cluster Unavailable")
    assert ann.command("MESG ann note to self") == [
        "MESG ann: note to self",
        "OK MESG ann delivered",
    ]
    bob.quit()  # leaves while Redis is away: must not come back as a ghost
    redis.start()
    took = wait_until(
        lambda: ann.command("LIST")[-1:] == ["OK LIST 1"], 15, "recovery after the restart"
    )
    print(f"recovered {took:.1f} s after Redis came back")
    assert ann.list_names() == ["ann"]
    cy = Client(cluster[1].port)
    cy.join("cy")
    assert cy.expect_reply("MESG ann back again", "OK MESG ann")
    assert ann.read_line() == "MESG cy: back again"


def test_pipelined_commands_wait_for_the_cluster_join(nodes: Nodes) -> None:
    """A JOIN waits for Redis; the lines sent behind it are answered after it, in order."""
    (node,) = nodes(1, "--rate-limit", "0")
    ann = Client(node.port)
    ann.send(b"JOIN ann\r\nMESG ann hi\r\nLIST\r\nJOIN again\r\nQUIT\r\n")
    assert [ann.read_line() for _ in range(7)] == [
        "OK JOIN ann 1/10",
        "MESG ann: hi",
        "OK MESG ann delivered",
        "USER ann",
        "OK LIST 1",
        "ERR Already Registered: you are ann; this JOIN was discarded",
        "OK QUIT Bye",
    ]
    ann.expect_eof()


def test_a_name_taken_elsewhere_while_cut_off_is_given_up_here(nodes: Nodes, redis: Redis) -> None:
    """
    node0 is stopped while Redis restarts empty, and alice registers anew on
    node1. Back, node0 finds the name taken: its alice gets BYE, and the name
    is not held on node0 for a resume: messages go to node1's alice.
    """
    cluster = nodes(2)
    first, bob = Client(cluster[0].port), Client(cluster[0].port)
    first.join("alice")
    bob.join("bob")
    lose_redis(cluster, redis)
    os.kill(cluster[0].pid, signal.SIGSTOP)
    try:
        redis.start()
        wait_until(
            lambda: cluster[1].log_text().count("in sync at version") == 2, 15, "node1 resync"
        )
        second = Client(cluster[1].port)
        assert second.expect_reply("JOIN alice", "OK JOIN alice")
    finally:
        os.kill(cluster[0].pid, signal.SIGCONT)
    assert first.read_line(timeout=15) == (
        "BYE Username Taken: while this server was cut off, another user took your name"
    )
    first.expect_eof()
    wait_until(lambda: bob.command("MESG alice hello") == ["OK MESG alice sent"], 15, "sent")
    assert second.read_line() == "MESG bob: hello"


def redis_command(redis: Redis, *words: str) -> bytes:
    """One command to the fixture's Redis in its wire format; the raw reply."""
    request = f"*{len(words)}\r\n".encode() + b"".join(
        f"${len(word.encode())}\r\n{word}\r\n".encode() for word in words
    )
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as connection:
        connection.sendall(request)
        return connection.recv(65536)


def without_time(lines: list[str]) -> list[str]:
    return [re.sub(r"^HIST \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", "HIST T ", line) for line in lines]


def test_history_and_actions_are_the_clusters(nodes: Nodes, redis: Redis) -> None:
    """Broadcasts and actions from any node are kept once, in Redis, bounded; any node replays them."""
    cluster = nodes(2, "--history", "3")
    ann, bob = Client(cluster[0].port), Client(cluster[1].port)
    ann.join("ann")
    bob.sendline("MODE MACHINE")
    assert bob.read_line() == "OK MODE MACHINE 2"
    bob.command("JOIN bob")
    # A BCST counts the users its node knows of (STATUS shows how many).
    wait_until(lambda: "INFO Users: 2 of 10" in ann.command("STATUS"), 5, "node0 knows bob")
    assert ann.expect_reply("BCST one", "OK BCST 1")
    assert bob.read_line() == "BCST ann: one"
    assert ann.expect_reply("ME waves", "OK ME 1")
    assert bob.read_line() == "ACTION ann waves"  # in the reader's format, on its node
    assert bob.expect_reply("ME beeps", "OK ME 1 0")
    assert ann.read_line() == "* bob beeps"
    assert bob.expect_reply("MESG ann private", "OK MESG ann sent")
    assert ann.read_line() == "MESG bob: private"
    wait_until(lambda: redis_command(redis, "LLEN", "chat:history") == b":3\r\n", 5, "3 kept")
    assert without_time(ann.command("HISTORY")) == [
        "HIST T ann: one",
        "HIST T * ann waves",
        "HIST T * bob beeps",
        "OK HISTORY 3",
    ]
    assert without_time(bob.command("HISTORY 2")) == [
        "HIST T ME ann waves",
        "HIST T ME bob beeps",
        "OK HISTORY 2",
    ]
    # A broadcast and a HISTORY in one read: the HISTORY sees it.
    ann.send(b"BCST two\r\nHISTORY 1\r\n")
    assert without_time([ann.read_line() for _ in range(3)]) == [
        "OK BCST 1",
        "HIST T ann: two",
        "OK HISTORY 1",
    ]
    assert redis_command(redis, "LLEN", "chat:history") == b":3\r\n"  # bounded
    assert ann.expect_reply("HISTORY 4", "ERR Usage: HISTORY [<count>]")


def test_history_needs_the_cluster(nodes: Nodes, redis: Redis) -> None:
    (node,) = nodes(1)
    ann = Client(node.port)
    ann.join("ann")
    lose_redis([node], redis)
    assert ann.command("HISTORY") == [
        "ERR Cluster Unavailable: the cluster cannot be reached; try again soon"
    ]
    assert ann.expect_reply("ME waits", "ERR Cluster Unavailable")  # as a BCST is
