"""
One node against two: throughput and cross-node latency of a chat cluster.

Starts a real redis-server and one or two real `twistd chat --redis` nodes
(each pinned to its own core when there are enough), connects C clients
spread evenly over the nodes, and has every client send MESG to a partner
on the *other* node (with one node: to another client of that node), with
at most W messages unacknowledged per client, for T seconds. Prints one
JSON line per configuration: delivered messages/s, latency p50/p99/max
(send timestamp in the text), and CPU seconds of the nodes and of Redis.

    python -m bench.cluster --clients 200 --duration 10 --nodes 1,2

Bounded: every wait has a timeout, and each configuration stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.procstat import process_cpu_seconds
from bench.servers import free_port, twistd_executable

REPO_ROOT = Path(__file__).resolve().parent.parent
PORT_LINE = re.compile(rb"ChatFactory starting on (\d+)")
SYNCED = b"in sync at version"


def wait_for(path: Path, pattern: bytes | re.Pattern[bytes], timeout: float = 15) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = path.read_bytes()
        if pattern.search(data) if isinstance(pattern, re.Pattern) else pattern in data:
            return data
        time.sleep(0.05)
    raise TimeoutError(f"{pattern!r} not in {path}")


class Client(asyncio.Protocol):
    """Sends MESG to its partner, W at a time, and times what arrives."""

    def __init__(self, name: str, window: int, latencies: list[float]) -> None:
        self.name = name
        self.window = window
        self.latencies = latencies
        self.buffer = b""
        self.partner = ""
        self.sender: Client | None = None  # who sends to this client
        self.received = 0
        self.acked = 0
        self.sent = 0
        self.running = False
        self.joined = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(f"JOIN {self.name}\r\n".encode())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        *lines, self.buffer = (self.buffer + data).split(b"\r\n")
        now = time.perf_counter()
        for line in lines:
            if line.startswith(b"MESG "):
                self.received += 1
                self.latencies.append(now - float(line.rsplit(b" ", 1)[1]))
                # Closed loop on delivery, not on the receipt: in a cluster the
                # receipt ("sent") comes before the other node delivers.
                if self.sender is not None and self.sender.running:
                    self.sender.send(1)
            elif line.startswith(b"OK MESG"):
                self.acked += 1
            elif line.startswith(b"OK JOIN") and not self.joined.done():
                self.joined.set_result(None)

    def send(self, count: int) -> None:
        stamp = time.perf_counter()
        self.transport.write(  # type: ignore[attr-defined]
            f"MESG {self.partner} {stamp:.6f}\r\n".encode() * count
        )
        self.sent += count


async def drive(ports: list[int], clients: int, duration: float, window: int) -> dict:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    users = [Client(f"u{i}", window, latencies) for i in range(clients)]
    for i, user in enumerate(users):  # round robin over the nodes
        await loop.create_connection(lambda u=user: u, "127.0.0.1", ports[i % len(ports)])
    await asyncio.wait_for(asyncio.gather(*(u.joined for u in users)), 30)
    for i, user in enumerate(users):
        # A partner on another node: the next client (one node: the next one too).
        partner = users[(i + 1) % clients]
        user.partner, partner.sender = partner.name, user
    await asyncio.sleep(0.5)  # let every node's replica learn every name
    for user in users:
        user.running = True
        user.send(window)
    await asyncio.sleep(1.0)  # warm-up
    latencies.clear()
    start = {id(u): u.received for u in users}
    began = time.perf_counter()
    await asyncio.sleep(duration)
    elapsed = time.perf_counter() - began
    delivered = sum(u.received - start[id(u)] for u in users)
    for user in users:
        user.running = False
        user.transport.close()
    ordered = sorted(latencies)
    return {
        "delivered_per_s": round(delivered / elapsed),
        "lat_p50_ms": round(statistics.median(ordered) * 1000, 2) if ordered else None,
        "lat_p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 2) if ordered else None,
        "lat_max_ms": round(ordered[-1] * 1000, 2) if ordered else None,
    }


def run(nodes: int, clients: int, duration: float, window: int, workdir: Path) -> dict:
    redis_port = free_port()
    processes: list[subprocess.Popen[bytes]] = []
    cores = os.cpu_count() or 1
    try:
        redis = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(redis_port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        processes.append(redis)
        ports, pids = [], []
        for n in range(nodes):
            log = workdir / f"node{n}-{nodes}.log"
            pin = ["taskset", "-c", str(n % cores)] if shutil.which("taskset") else []
            with open(log, "wb") as out:
                node = subprocess.Popen(
                    [*pin, twistd_executable(), "-n", "--pidfile=", "chat",
                     "--port", "tcp:0:interface=127.0.0.1", "--redis",
                     f"redis://127.0.0.1:{redis_port}/0", "--node-id", f"n{n}",
                     "--max-users", str(clients), "--rate-limit", "0", "--max-per-ip", "0",
                     "--max-connections", "0", "--quiet-relays"],
                    cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                    stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            processes.append(node)
            match = PORT_LINE.search(wait_for(log, PORT_LINE))
            assert match
            wait_for(log, SYNCED)
            ports.append(int(match.group(1)))
            pids.append(node.pid)
        before = [process_cpu_seconds(pid) for pid in (*pids, redis.pid)]
        result = asyncio.run(
            asyncio.wait_for(drive(ports, clients, duration, window), duration + 60)
        )
        after = [process_cpu_seconds(pid) for pid in (*pids, redis.pid)]
        used = [round(b - a, 2) for a, b in zip(before, after, strict=True)]
        return {
            "nodes": nodes,
            "clients": clients,
            "window": window,
            "duration": duration,
            **result,
            "node_cpu_s": used[:-1],
            "redis_cpu_s": used[-1],
        }
    finally:
        for process in reversed(processes):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1,2", help="node counts to compare, e.g. 1,2")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--window", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for nodes in (int(n) for n in args.nodes.split(",")):
            print(json.dumps(run(nodes, args.clients, args.duration, args.window, Path(tmp))))


if __name__ == "__main__":
    main()
