"""
Soak test: many clients doing random operations against a real server for a
long time, with every message accounted for.

Each MESG and BCST carries a unique id. The sender learns from the server's
receipt (C{OK MESG name}, C{OK BCST n}) where the message went; receivers
record what they got. At the end every client QUITs and reads to EOF, and the
books must balance exactly: each receipted MESG reached its recipient once,
each BCST reached exactly as many users as its receipt said and never its
sender, nothing arrived twice or unannounced, and the server's log holds no
traceback. RSS is sampled every second.

    python -m bench.soak --clients 500 --seconds 600

Exit status 0 when clean, 1 with a list of problems otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.procstat import rss_kib
from bench.servers import twistd_executable

REPO_ROOT = Path(__file__).resolve().parent.parent
PORT_LINE = re.compile(rb"ChatFactory starting on (\d+)")


@dataclass
class Books:
    """What was sent (per the receipts) and what arrived."""

    mesg: dict[str, str] = field(default_factory=dict)  # id -> recipient per the receipt
    bcst: dict[str, int] = field(default_factory=dict)  # id -> recipients per the receipt
    received: Counter[tuple[str, str]] = field(default_factory=Counter)  # (id, recipient)
    problems: list[str] = field(default_factory=list)
    operations: Counter[str] = field(default_factory=Counter)


class SoakClient:
    """One user: joins, then does random operations until the deadline."""

    def __init__(self, index: int, port: int, books: Books, rng: random.Random) -> None:
        self.name = f"u{index}"
        self.port = port
        self.books = books
        self.rng = rng
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter
        self.sequence = 0
        self.replies: asyncio.Queue[str] = asyncio.Queue()

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.pump = asyncio.ensure_future(self.read_lines())
        await self.command(f"JOIN {self.name}", "OK JOIN")

    async def read_lines(self) -> None:
        """Sort incoming lines: relayed messages into the books, the rest as replies."""
        while line_bytes := await self.reader.readline():
            line = line_bytes.decode().rstrip("\r\n")
            tag, _, rest = line.partition(" ")
            if tag in ("MESG", "BCST"):
                sender, _, text = rest.partition(": ")
                message_id = text.split()[0]
                if sender == self.name and tag == "BCST":
                    self.books.problems.append(f"{self.name} got its own broadcast {message_id}")
                self.books.received[(message_id, self.name)] += 1
            elif tag != "INFO":
                await self.replies.put(line)

    async def command(self, line: str, *expect: str) -> str:
        self.writer.write(line.encode() + b"\r\n")
        reply = await asyncio.wait_for(self.replies.get(), 30)
        while reply.startswith("USER "):
            reply = await asyncio.wait_for(self.replies.get(), 30)
        if not reply.startswith(expect):  # any of them
            self.books.problems.append(f"{self.name}: {line!r} got {reply!r}")
        return reply

    async def run(self, deadline: float, others: list[str]) -> None:
        rng, books = self.rng, self.books
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(0.05, 0.4))  # within the default rate limit
            self.sequence += 1
            message_id = f"{self.name}.{self.sequence}"
            roll = rng.random()
            if roll < 0.6:
                to = rng.choice(others)
                # A user who is rejoining is briefly unknown.
                reply = await self.command(
                    f"MESG {to} {message_id} hello", "OK MESG", "ERR Unknown Recipient"
                )
                if reply.startswith("OK MESG "):
                    books.mesg[message_id] = reply.split()[2]
                books.operations["mesg"] += 1
            elif roll < 0.7:
                reply = await self.command(f"BCST {message_id} to all", "OK BCST")
                books.bcst[message_id] = int(reply.split()[2])
                books.operations["bcst"] += 1
            elif roll < 0.95:
                await self.command("LIST", "OK LIST")
                books.operations["list"] += 1
            else:  # leave and come back under the same name
                await self.quit()
                await self.connect()
                books.operations["rejoin"] += 1

    async def quit(self) -> None:
        await self.command("QUIT", "OK QUIT")
        await asyncio.wait_for(self.pump, 30)  # read to EOF: everything sent to us
        self.writer.close()


def balance(books: Books) -> None:
    """Compare what the receipts promised with what arrived."""
    arrived: Counter[str] = Counter()
    for (message_id, recipient), count in books.received.items():
        arrived[message_id] += count
        if message_id in books.mesg and books.mesg[message_id] != recipient:
            books.problems.append(f"{message_id} reached {recipient}, not the recipient")
        elif message_id not in books.mesg and message_id not in books.bcst:
            books.problems.append(f"{message_id} reached {recipient} without a receipt")
        elif count != 1:
            books.problems.append(f"{message_id} reached {recipient} {count} times")
    for message_id in books.mesg:
        if arrived[message_id] != 1:
            books.problems.append(f"{message_id} arrived {arrived[message_id]} times, not once")
    for message_id, count in books.bcst.items():
        if arrived[message_id] != count:
            books.problems.append(
                f"broadcast {message_id}: receipt said {count}, {arrived[message_id]} arrived"
            )


async def soak(port: int, pid: int, clients: int, seconds: float, seed: int) -> dict:
    books = Books()
    rng = random.Random(seed)
    users = [SoakClient(i, port, books, random.Random(rng.random())) for i in range(clients)]
    names = [user.name for user in users]
    for start in range(0, clients, 50):  # connect in waves, like people arriving
        await asyncio.gather(*(user.connect() for user in users[start : start + 50]))
    rss: list[int] = []
    deadline = time.monotonic() + seconds

    async def sample() -> None:
        while time.monotonic() < deadline:
            rss.append(rss_kib(pid))
            await asyncio.sleep(1)

    await asyncio.gather(sample(), *(user.run(deadline, names) for user in users))
    await asyncio.gather(*(user.quit() for user in users))
    balance(books)
    return {
        "clients": clients,
        "seconds": seconds,
        "operations": dict(books.operations),
        "deliveries_checked": len(books.mesg) + sum(books.bcst.values()),
        "rss_kib_min": min(rss, default=0),
        "rss_kib_max": max(rss, default=0),
        "rss_kib_last": rss[-1] if rss else 0,
        "problems": books.problems[:20],
        "problem_count": len(books.problems),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "twistd.log"
        with open(log_path, "wb") as log:
            server = subprocess.Popen(
                [twistd_executable(), "-n", "--pidfile=", "chat", "--port", "tcp:0:interface=127.0.0.1",
                 "--max-users", str(args.clients), "--max-per-ip", "0",
                 "--max-connections", str(args.clients + 100)],
                cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 15
            while not (match := PORT_LINE.search(log_path.read_bytes())):
                if time.monotonic() > deadline or server.poll() is not None:
                    print(log_path.read_text(), file=sys.stderr)
                    return 1
                time.sleep(0.05)
            result = asyncio.run(
                soak(int(match.group(1)), server.pid, args.clients, args.seconds, args.seed)
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.pid, signal.SIGTERM)
            server.wait(15)
        text = log_path.read_text(errors="replace")
        for marker in ("Traceback", "Unhandled"):
            if marker in text:
                result["problems"].append(f"server log has {marker!r}")
                result["problem_count"] += 1
    print(json.dumps(result))
    return 1 if result["problem_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
