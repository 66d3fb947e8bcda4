"""
Bans in a cluster: real C{twistd chat} nodes on a real C{redis-server}
(the fixtures of tests/test_cluster.py). A ban decided on one node is kept
in Redis and enforced on every node, and a node started later knows it.
"""

from __future__ import annotations

from pathlib import Path

from conftest import StartServer
from test_cluster import Nodes, Redis, in_sync, nodes, redis, wait_until  # noqa: F401
from test_moderation_sockets import PASSWORD, operators  # noqa: F401

from server import Client


def test_a_ban_holds_on_every_node_and_outlives_a_node(
    nodes: Nodes,  # noqa: F811
    redis: Redis,  # noqa: F811
    operators: Path,  # noqa: F811
    start_server: StartServer,
) -> None:
    cluster = nodes(2, "--operators", str(operators))
    carol, bob = Client(cluster[0].port), Client(cluster[1].port)
    carol.join("carol")
    bob.join("bob")
    carol.expect_reply(f"OPER root {PASSWORD}", "OK OPER root")
    eve = Client(cluster[1].port)
    eve.join("eve")
    wait_until(lambda: len(carol.list_names()) == 3, 5, "bob and eve in LIST")
    # KICK reaches a user on another node; MUTE acts on this node's users.
    assert carol.command("MUTE eve 5") == [
        "ERR Unknown User: nobody named eve is registered on this server"
    ]
    assert carol.command("KICK eve bye now") == ["OK KICK eve disconnected"]
    assert eve.read_line() == "BYE Kicked: carol disconnected you: bye now"
    eve.expect_eof()
    cluster[1].wait_for_log("eve closed from another node: Kicked")
    assert carol.command("KICK nobody") == [
        "ERR Unknown User: nobody named nobody is registered on this server"
    ]
    assert carol.command("BAN bob 10 spam") == ["OK BAN bob for 10 minutes (0 connections closed)"]
    assert bob.read_line() == "BYE Banned: carol banned you for 10 minutes: spam"
    bob.expect_eof()
    cluster[1].wait_for_log("ban of bob by carol from another node (1 connections closed here)")
    for node in cluster:
        assert Client(node.port).command("JOIN Bob") == [
            "ERR Banned: the name bob is banned for 10 minutes more by carol: spam"
        ]
    # An address, refused at connect on the other node.
    assert carol.command("BAN 127.0.0.2 10") == [
        "OK BAN 127.0.0.2 for 10 minutes (0 connections closed)"
    ]
    cluster[1].wait_for_log("ban of 127.0.0.2 by carol from another node")
    refused = Client(cluster[1].port, greeting=False, source="127.0.0.2")
    assert refused.read_line().startswith("BYE Banned: connections from 127.0.0.2 are banned")
    # A node started now loads the bans from Redis.
    late = start_server("--redis", redis.url, "--node-id", "late")
    in_sync(late)
    assert Client(late.port).command("JOIN bob")[0].startswith("ERR Banned: the name bob")
    # UNBAN on one node lifts it everywhere.
    assert carol.command("UNBAN bob") == ["OK UNBAN bob"]
    back = Client(late.port)
    wait_until(
        lambda: back.command("JOIN bob")[0].startswith("OK JOIN bob"),
        5,
        "the ban lifted on the late node",
    )
    assert Client(cluster[1].port).command("JOIN bob")[0].startswith("ERR Username Taken")


def test_ban_while_redis_is_away_is_refused(
    nodes: Nodes,  # noqa: F811
    redis: Redis,  # noqa: F811
    operators: Path,  # noqa: F811
) -> None:
    (node,) = nodes(1, "--operators", str(operators))
    carol = Client(node.port)
    carol.join("carol")
    carol.expect_reply(f"OPER root {PASSWORD}", "OK OPER root")
    redis.kill()
    node.wait_for_log("cluster commands unavailable")
    assert carol.command("BAN bob 5") == [
        "ERR Cluster Unavailable: the cluster cannot be reached; try again soon"
    ]
    # Not even this node holds it: the cluster would not know it.
    redis.start()
    wait_until(lambda: node.log_text().count("in sync at version") == 2, 15, "resync")
    Client(node.port).join("bob")
