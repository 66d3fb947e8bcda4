"""
The load generator: real TCP clients driving a running chat or IRC server.

One process, one event loop (uvloop when installed, else asyncio's default),
meant to be pinned to a core of its own. It measures its own CPU use and
reports it with every run: a generator at 100% of its core is the limit, not
the server, and its throughput figures must be read as a lower bound (the
deliveries per server CPU-second stay meaningful either way).

Everything is bounded: a window of unacknowledged messages per client, a
timeout on every wait, a deadline on the whole run. It stops by itself and
prints one JSON object on stdout.

Workloads (see C{bench/README.md}):

  - C{direct}: every client sends private messages to random others.
  - C{fanout}: a few senders broadcast to everyone.
  - C{idle}: connections registered and held open; memory per connection.
  - C{storm}: connect, register, list, quit, over and over.

QUICKACK: none of the servers sets C{TCP_NODELAY} (Twisted does not by
default, nor does ngircd), so a server does not send a small write while an
earlier one is unacknowledged (Nagle), and a client kernel that only receives
on a socket delays its ACKs by up to 40 ms. Together they stall a stream of
small messages for tens of milliseconds at a time, and the benchmark would
measure those stalls, not the servers (throughput halves, p50 latency is
dominated by the timer). So every client sets C{TCP_QUICKACK} after each read
(one C{setsockopt} per read, counted in the generator's CPU): the ACK goes
out at once and the server's next write is sent. C{--no-quickack} turns it
off, to see what an ordinary client gets.

Run C{python -m bench.loadgen --help}; normally C{bench.run} starts it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import socket
import sys
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, cast

from bench.procstat import Snapshot, rss_kib

CHANNEL = b"#bench"
IRC_READ_BUFFER = 2048
"""ngircd drops a client with more than this many unprocessed bytes queued
(C{READBUFFER_LEN}), so for IRC the window must fit in it."""

REGISTER_TIMEOUT = 20.0
DRAIN_TIMEOUT = 10.0
SESSION_TIMEOUT = 10.0


def now_us() -> int:
    """Monotonic microseconds: the clock of the timestamps sent in messages."""
    return time.monotonic_ns() // 1000


@dataclass
class Config:
    """Everything one run needs; also echoed in the result."""

    proto: str
    host: str
    port: int
    workload: str
    clients: int
    duration: float
    warmup: float
    window: int
    senders: int
    rate: float
    size: int
    concurrency: int
    server_pid: int
    deadline: float
    seed: int
    quickack: bool
    sample: int
    pace: str = "tick"
    idle_users: int = 0


class Run:
    """
    Shared state of one run: counters, the latency samples, the flags that
    start and stop sending and measuring.

    Counters are plain attributes updated from the protocol callbacks: the
    loop is single-threaded, and attribute updates are the cheapest thing
    Python offers on the hot path.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.irc = config.proto == "irc"
        self.fanout = config.workload == "fanout"
        self.sending = False
        self.measuring = False
        self.closing = False
        self.latencies = array("q")
        self.delivered = 0
        self.delivered_total = 0
        self.expected_total = 0
        self.sent = 0
        self.acked = 0
        self.skipped = 0
        self.lost_connections = 0
        self.errors: Counter[str] = Counter()
        self.pad = b"x" * config.size
        self.rng = random.Random(config.seed)
        self.names: list[bytes] = []
        self.batch = max(1, config.window // 2)
        self.sample = config.sample

    def error(self, line: bytes) -> None:
        """Count an error reply by its first words (kept short for the report)."""
        self.errors[line[:40].decode("utf-8", "replace")] += 1


class Client(asyncio.Protocol):
    """
    One connection. Subclasses know the protocol; this class splits lines,
    tracks the window of unacknowledged messages, and exposes futures for
    registration and closing.
    """

    separator = b""
    """What precedes the timestamp in a delivered line (set by subclasses)."""

    def __init__(self, run: Run, index: int, name: bytes) -> None:
        self.run = run
        self.index = index
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.quickack: Any = None
        self.buffer = b""
        self.outstanding = 0
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.quitting = False
        self.seen: set[str] = set()
        self.countdown = 1 + index % run.sample

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; same interface.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # No Nagle delay on the generator's side: latency is the server's.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.run.config.quickack:
                self.quickack = sock

    def data_received(self, data: bytes) -> None:
        sock = self.quickack
        if sock is not None:
            # Acknowledge what was just read now, not after the delayed-ACK
            # timer: see QUICKACK in the module docstring.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        if self.buffer:
            data = self.buffer + data
        lines = data.split(b"\r\n")
        self.buffer = lines.pop()
        if lines:
            self.handle(lines)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.quitting and not self.run.closing:
            self.run.lost_connections += 1
        if not self.ready.done():
            self.fail(f"closed before registration: {exc}")
        if not self.closed.done():
            self.closed.set_result(None)

    # Helpers

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def fail(self, why: str) -> None:
        """Registration failed: whoever awaits C{ready} gets the error."""
        self.ready.set_exception(ConnectionError(why))
        # Nobody awaits the futures of storm sessions: no "never retrieved" noise.
        self.ready.exception()

    def mark_ready(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)

    def abort(self) -> None:
        self.quitting = True
        if self.transport is not None:
            self.transport.abort()

    def target(self) -> bytes:
        """A random other client's name, for direct messages."""
        names = self.run.names
        other = self.run.rng.randrange(len(names) - 1)
        return names[other + 1] if other >= self.index else names[other]

    def record(self, sampled: list[bytes]) -> None:
        """
        Record the latency of sampled deliveries: every C{run.sample}-th one.

        Parsing a timestamp costs about four times as much as counting a
        line; sampling keeps the generator off the critical path when a
        server delivers a million lines a second. Deliveries are all counted;
        only the latency figures come from the sample. The lines of one read
        share its arrival time.
        """
        now = now_us()
        append = self.run.latencies.append
        separator = self.separator
        for line in sampled:
            start = line.find(separator, 1) + 2
            append(now - int(line[start : line.find(b" ", start)]))

    # Protocol-specific

    def handle(self, lines: list[bytes]) -> None:
        raise NotImplementedError

    def register(self) -> None:
        raise NotImplementedError

    def storm(self) -> None:
        """Send a whole session at once: register, list, quit."""
        raise NotImplementedError

    def storm_ok(self) -> bool:
        raise NotImplementedError

    def refill(self) -> None:
        """Closed loop: fill the window with messages."""
        raise NotImplementedError

    def send_one(self, stamp: int) -> None:
        """Open loop: send one message stamped with its intended send time."""
        raise NotImplementedError

    def flush(self) -> None:
        """Make sure every message sent will be acknowledged."""

    def barrier(self) -> asyncio.Future[None]:
        """A future that fires once everything queued for us before it arrived."""
        raise NotImplementedError


class ChatClient(Client):
    """
    The chat protocol: C{JOIN}; C{MESG to text} acknowledged by C{OK MESG};
    C{BCST text} by C{OK BCST n}. Each OK frees one slot of the window.
    """

    separator = b": "
    """Before the timestamp in C{MESG sender: stamp padding}."""

    def register(self) -> None:
        self.write(b"JOIN %b\r\n" % self.name)

    def storm(self) -> None:
        self.write(b"JOIN %b\r\nLIST\r\nQUIT\r\n" % self.name)
        self.quitting = True

    def storm_ok(self) -> bool:
        return {"JOIN", "LIST", "QUIT"} <= self.seen

    def handle(self, lines: list[bytes]) -> None:
        run = self.run
        delivered = 0
        acks = 0
        countdown = self.countdown
        sampled = []
        for line in lines:
            head = line[:4]
            if head == b"MESG" or head == b"BCST":
                delivered += 1
                countdown -= 1
                if countdown <= 0:
                    sampled.append(line)
                    countdown = run.sample
            elif head == b"OK M":
                acks += 1
                run.expected_total += 1
            elif head == b"OK B":
                acks += 1
                run.expected_total += int(line[8:])
            elif head == b"OK J":
                self.seen.add("JOIN")
                self.mark_ready()
            elif head == b"OK L":
                self.seen.add("LIST")
            elif head == b"OK Q":
                self.seen.add("QUIT")
            elif head == b"ERR ":
                run.error(line)
                if line.startswith(b"ERR Unknown Recipient"):
                    acks += 1
                elif not self.ready.done():
                    self.fail(line.decode("utf-8", "replace"))
        if delivered:
            self.countdown = countdown
            run.delivered_total += delivered
            if run.measuring:
                run.delivered += delivered
                self.record(sampled)
        if acks:
            self.outstanding -= acks
            run.acked += acks
            if run.sending and not run.config.rate:
                self.refill()

    def _message(self, stamp: int) -> bytes:
        if self.run.fanout:
            return b"BCST %d %b\r\n" % (stamp, self.run.pad)
        return b"MESG %b %d %b\r\n" % (self.target(), stamp, self.run.pad)

    def refill(self) -> None:
        room = self.run.config.window - self.outstanding
        if room <= 0:
            return
        stamp = now_us()
        self.write(b"".join([self._message(stamp) for _ in range(room)]))
        self.outstanding += room
        self.run.sent += room

    def send_one(self, stamp: int) -> None:
        if self.outstanding >= self.run.config.window:
            self.run.skipped += 1
            return
        self.write(self._message(stamp))
        self.outstanding += 1
        self.run.sent += 1

    def barrier(self) -> asyncio.Future[None]:
        # Nothing to drain: JOIN in the chat server tells nobody else.
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class IrcClient(Client):
    """
    The IRC equivalent: C{NICK}/C{USER} (done at C{001}); C{JOIN #bench}
    (done at the end of its C{NAMES}, C{366}); C{PRIVMSG nick} for MESG and
    C{PRIVMSG #bench} for BCST.

    IRC does not acknowledge PRIVMSG, so the window is closed with C{PING}:
    after every batch of messages, and the server answers C{PONG} once it
    has handled everything before it (a connection's commands are handled in
    order). Deliveries are counted at the receivers.
    """

    separator = b" :"
    """Before the timestamp in C{:prefix PRIVMSG target :stamp padding}."""

    def __init__(self, run: Run, index: int, name: bytes) -> None:
        super().__init__(run, index, name)
        self.pings: deque[tuple[int, asyncio.Future[None] | None]] = deque()
        self.unpinged = 0
        self.join_channel = run.fanout

    def register(self) -> None:
        data = b"NICK %b\r\nUSER %b 0 * :%b\r\n" % (self.name, self.name, self.name)
        if self.join_channel:
            data += b"JOIN %b\r\n" % CHANNEL
        self.write(data)

    def storm(self) -> None:
        self.write(b"NICK %b\r\nUSER %b 0 * :%b\r\nNAMES\r\nQUIT\r\n" % ((self.name,) * 3))
        self.quitting = True

    def storm_ok(self) -> bool:
        return {"001", "NAMES", "ERROR"} <= self.seen

    def handle(self, lines: list[bytes]) -> None:
        run = self.run
        delivered = 0
        countdown = self.countdown
        sampled = []
        for line in lines:
            # ":nick!user@host PRIVMSG target :text": look at the second word.
            space = line.find(b" ")
            if line.startswith(b"PRIVMSG ", space + 1):
                delivered += 1
                countdown -= 1
                if countdown <= 0:
                    sampled.append(line)
                    countdown = run.sample
            elif line.startswith(b"PONG ", space + 1):
                self._pong()
            else:
                self.handle_other(line)
        if delivered:
            self.countdown = countdown
            run.delivered_total += delivered
            if run.measuring:
                run.delivered += delivered
                self.record(sampled)

    def handle_other(self, line: bytes) -> None:
        """Everything but deliveries and PONG: rare, so plainly parsed."""
        parts = line.split(b" ", 3)
        if len(parts) < 2:
            return
        command = parts[1]
        if command == b"001":
            self.seen.add("001")
            if not self.join_channel:
                self.mark_ready()
        elif command == b"366":
            if len(parts) > 3 and parts[3].startswith(CHANNEL + b" "):
                self.mark_ready()
            else:
                self.seen.add("NAMES")
        elif parts[0] == b"PING":
            self.write(b"PONG " + parts[1] + b"\r\n")
        elif parts[0] == b"ERROR":
            self.seen.add("ERROR")
        elif len(command) == 3 and command[:1] in (b"4", b"5") and command.isdigit():
            self.run.error(b" ".join(parts[1:]))
            if not self.ready.done():
                self.fail(line.decode("utf-8", "replace"))

    def _pong(self) -> None:
        if not self.pings:
            return
        count, waiter = self.pings.popleft()
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if count:
            run = self.run
            self.outstanding -= count
            run.acked += count
            run.expected_total += count * (len(run.names) - 1) if run.fanout else count
            if run.sending and not run.config.rate:
                self.refill()

    def _message(self, stamp: int) -> bytes:
        target = CHANNEL if self.run.fanout else self.target()
        return b"PRIVMSG %b :%d %b\r\n" % (target, stamp, self.run.pad)

    def refill(self) -> None:
        run = self.run
        batch = run.batch
        room = run.config.window - self.outstanding
        chunks = []
        while room >= batch:
            stamp = now_us()
            chunks.extend(self._message(stamp) for _ in range(batch))
            chunks.append(b"PING :b\r\n")
            self.pings.append((batch, None))
            self.outstanding += batch
            run.sent += batch
            room -= batch
        if chunks:
            self.write(b"".join(chunks))

    def send_one(self, stamp: int) -> None:
        run = self.run
        if self.outstanding >= run.config.window:
            run.skipped += 1
            return
        data = self._message(stamp)
        self.outstanding += 1
        self.unpinged += 1
        run.sent += 1
        if self.unpinged >= run.batch:
            data += b"PING :b\r\n"
            self.pings.append((self.unpinged, None))
            self.unpinged = 0
        self.write(data)

    def flush(self) -> None:
        if self.unpinged:
            self.write(b"PING :b\r\n")
            self.pings.append((self.unpinged, None))
            self.unpinged = 0

    def barrier(self) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pings.append((0, done))
        self.write(b"PING :barrier\r\n")
        return done


# Setup


async def open_client(run: Run, index: int, name: bytes, register: bool = True) -> Client:
    """Connect one client and, if asked, register it (bounded in time)."""
    loop = asyncio.get_running_loop()
    cls: type[Client] = IrcClient if run.irc else ChatClient
    config = run.config
    _, client = await loop.create_connection(
        lambda: cls(run, index, name), config.host, config.port
    )
    if register:
        client.register()
        await asyncio.wait_for(asyncio.shield(client.ready), REGISTER_TIMEOUT)
    return client


async def connect_all(run: Run, count: int) -> list[Client]:
    """
    Connect and register C{count} clients, C{concurrency} at a time.

    At most C{concurrency} connections are in their handshake at once, below
    the smallest listen backlog (ngircd's is 10), so no SYN is dropped and no
    connect waits for a retransmission: the time measured is the servers'.
    """
    run.names = [b"u%d" % i for i in range(count)]
    clients: list[Client | None] = [None] * count
    indices = iter(range(count))

    async def worker() -> None:
        for i in indices:
            clients[i] = await open_client(run, i, run.names[i])

    workers = [asyncio.ensure_future(worker()) for _ in range(min(run.config.concurrency, count))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        for client in clients:
            if client is not None:
                client.abort()
        raise
    return [c for c in clients if c is not None]


async def close_all(run: Run, clients: list[Client]) -> None:
    """Abort every connection (RST): the run is over, the server just cleans up."""
    run.closing = True
    for client in clients:
        client.abort()
    await asyncio.sleep(0)


async def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    """Poll C{predicate} until it holds or C{timeout} passes; whether it held."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


def percentiles(samples: array) -> dict[str, float | None]:
    """p50, p99 and max of latency samples (microseconds), in milliseconds."""
    if not samples:
        return {"lat_p50_ms": None, "lat_p99_ms": None, "lat_max_ms": None, "lat_samples": 0}
    ordered = sorted(samples)
    n = len(ordered)
    return {
        "lat_p50_ms": round(ordered[(n - 1) // 2] / 1000, 3),
        "lat_p99_ms": round(ordered[int(0.99 * (n - 1))] / 1000, 3),
        "lat_max_ms": round(ordered[-1] / 1000, 3),
        "lat_samples": n,
    }


# Workloads


async def run_messaging(run: Run) -> dict[str, Any]:
    """C{direct} and C{fanout}: closed loop (window) or open loop (C{--rate})."""
    config = run.config
    setup_start = time.monotonic()
    clients = await connect_all(run, config.clients)
    # IRC: JOIN echoes to earlier members may still be in flight; let them land.
    await asyncio.wait_for(asyncio.gather(*(c.barrier() for c in clients)), REGISTER_TIMEOUT)
    setup_s = time.monotonic() - setup_start
    senders = clients[: config.senders] if run.fanout else clients
    recipients_per_message = len(clients) - 1 if run.fanout else 1

    run.sending = True
    ticker: asyncio.Task[None] | None = None
    paced: OwnPace | None = None
    if config.rate and config.pace == "own":
        paced = OwnPace(run, senders, config.rate / recipients_per_message)
    elif config.rate:
        messages_per_s = config.rate / recipients_per_message
        ticker = asyncio.ensure_future(open_loop(run, senders, messages_per_s))
    else:
        for client in senders:
            client.refill()

    await asyncio.sleep(config.warmup)
    before = Snapshot.take(config.server_pid, time.monotonic())
    run.measuring = True
    await asyncio.sleep(config.duration)
    run.measuring = False
    after = Snapshot.take(config.server_pid, time.monotonic())
    run.sending = False
    if ticker is not None:
        ticker.cancel()
    if paced is not None:
        paced.stop()
    for client in senders:
        client.flush()

    acked_all = await wait_until(lambda: all(c.outstanding <= 0 for c in senders), DRAIN_TIMEOUT)
    delivered_all = await wait_until(lambda: run.delivered_total >= run.expected_total, 5.0)
    rss = rss_kib(config.server_pid)
    await close_all(run, clients)

    cpu = after.since(before)
    result: dict[str, Any] = {
        "setup_s": round(setup_s, 3),
        **cpu,
        "sent": run.sent,
        "skipped": run.skipped,
        "deliveries": run.delivered,
        "deliveries_per_s": round(run.delivered / cpu["wall_s"], 1),
        "deliveries_per_server_cpu_s": (
            round(run.delivered / cpu["server_cpu_s"], 1) if cpu["server_cpu_s"] > 0 else None
        ),
        "deliveries_total": run.delivered_total,
        "expected_total": run.expected_total,
        "drained": acked_all and delivered_all,
        "server_rss_kib": rss,
        **percentiles(run.latencies),
    }
    if config.rate:
        result["offered_per_s"] = config.rate
    return result


class OwnPace:
    """
    Open loop, each sender at its own pace (C{--pace own}): every sender has
    a timer of its own and sends one message per expiry, in a write of its
    own, with exponential gaps (a Poisson process) averaging
    C{messages_per_s / len(senders)} per second. The server sees reads of
    one line spread in time, as people typing make, where the central
    ticker of L{open_loop} sends every message due in a millisecond in one
    burst.

    As with L{open_loop}, each message is stamped with its intended send
    time, and the next one is due an exponential gap after that (not after
    the actual send): a generator falling behind shows as latency. A send
    that finds the window full is skipped and counted.
    """

    def __init__(self, run: Run, senders: list[Client], messages_per_s: float) -> None:
        self.run = run
        self.loop = asyncio.get_running_loop()
        self.per_sender = messages_per_s / len(senders)
        self.rng = random.Random(run.config.seed + 1)
        self.handles: dict[int, asyncio.TimerHandle] = {}
        start = now_us()
        for client in senders:
            # A random first gap: the senders do not start in step.
            self._schedule(client, start + self._gap_us())

    def _gap_us(self) -> int:
        return max(1, int(self.rng.expovariate(self.per_sender) * 1e6))

    def _schedule(self, client: Client, due_us: int) -> None:
        delay = max(0.0, (due_us - now_us()) / 1e6)
        self.handles[client.index] = self.loop.call_later(delay, self._fire, client, due_us)

    def _fire(self, client: Client, due_us: int) -> None:
        if not self.run.sending:
            return
        client.send_one(due_us)
        self._schedule(client, due_us + self._gap_us())

    def stop(self) -> None:
        for handle in self.handles.values():
            handle.cancel()
        self.handles.clear()


async def open_loop(run: Run, senders: list[Client], messages_per_s: float) -> None:
    """
    Send at a fixed rate whatever the server does (an open loop), so p99
    latency compares servers at the same offered load. Each message carries
    its intended send time, not the actual one, so a generator that falls
    behind shows up as latency instead of silently sending less.
    """
    interval_us = 1e6 / messages_per_s
    start = now_us()
    sent = 0
    count = len(senders)
    while run.sending:
        # Message i is due at start + i * interval: send all that are due now.
        due = int((now_us() - start) / interval_us) + 1
        while sent < due:
            senders[sent % count].send_one(start + int(sent * interval_us))
            sent += 1
        await asyncio.sleep(0.001)


async def run_idle(run: Run) -> dict[str, Any]:
    """C{idle}: connect and register everyone, then measure memory and idle CPU."""
    config = run.config
    pid = config.server_pid
    rss_before = rss_kib(pid)
    before = Snapshot.take(pid, time.monotonic())
    clients = await connect_all(run, config.clients)
    connected = Snapshot.take(pid, time.monotonic())
    connect = connected.since(before)
    # Let the server finish whatever registration started (ngircd's MOTD...).
    await asyncio.sleep(1.0)
    rss_after = rss_kib(pid)
    hold_start = Snapshot.take(pid, time.monotonic())
    await asyncio.sleep(config.duration)
    hold = Snapshot.take(pid, time.monotonic()).since(hold_start)
    still_open = sum(1 for c in clients if not c.closed.done())
    await close_all(run, clients)
    return {
        "connect_s": connect["wall_s"],
        "connects_per_s": round(len(clients) / connect["wall_s"], 1),
        "connect_server_cpu_s": connect["server_cpu_s"],
        "connect_gen_cpu_util": connect["gen_cpu_util"],
        "connect_other_cpu_s": connect["other_cpu_s"],
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_per_conn_bytes": round((rss_after - rss_before) * 1024 / len(clients)),
        "hold_s": hold["wall_s"],
        "hold_server_cpu_s": hold["server_cpu_s"],
        "still_open": still_open,
        "gen_cpu_util": connect["gen_cpu_util"],
        "server_cpu_util": connect["server_cpu_util"],
        "other_cpu_s": round(connect["other_cpu_s"] + hold["other_cpu_s"], 2),
        "other_cpu_util": round(
            (connect["other_cpu_s"] + hold["other_cpu_s"]) / (connect["wall_s"] + hold["wall_s"]), 3
        ),
    }


async def run_storm(run: Run) -> dict[str, Any]:
    """
    C{storm}: C{concurrency} loops, each running whole sessions back to back:
    connect, register, list, quit, wait for the server to close. A session
    counts if it ends inside the measured window with every expected reply.
    """
    config = run.config
    loop = asyncio.get_running_loop()
    cls: type[Client] = IrcClient if run.irc else ChatClient
    numbers = itertools.count()
    durations = array("q")
    counts = Counter[str]()
    # --idle-users: registered first (names u0, u1...), held open through the
    # storm, reading whatever they get (nothing, unless the server tells them
    # of the storm clients), closed at the end.
    idle_start = time.monotonic()
    idle = await connect_all(run, config.idle_users) if config.idle_users else []
    idle_connect_s = time.monotonic() - idle_start
    run.names = [b"x", b"y"]  # unused by storm sessions; target() needs two

    async def one_session() -> None:
        number = next(numbers)
        started = now_us()
        client: Client | None = None
        try:
            _, client = await asyncio.wait_for(
                loop.create_connection(
                    lambda: cls(run, number, b"s%d" % number), config.host, config.port
                ),
                SESSION_TIMEOUT,
            )
            client.storm()
            await asyncio.wait_for(asyncio.shield(client.closed), SESSION_TIMEOUT)
        except (TimeoutError, OSError) as error:
            counts["failed"] += 1
            run.errors[type(error).__name__] += 1
            if client is not None:
                client.abort()
            return
        if not client.storm_ok():
            counts["failed"] += 1
            run.errors["incomplete session"] += 1
        elif run.measuring:
            counts["sessions"] += 1
            durations.append(now_us() - started)

    async def worker() -> None:
        while run.sending:
            await one_session()

    run.sending = True
    workers = [asyncio.ensure_future(worker()) for _ in range(config.concurrency)]
    await asyncio.sleep(config.warmup)
    before = Snapshot.take(config.server_pid, time.monotonic())
    run.measuring = True
    await asyncio.sleep(config.duration)
    run.measuring = False
    after = Snapshot.take(config.server_pid, time.monotonic())
    run.sending = False
    await asyncio.wait_for(asyncio.gather(*workers), SESSION_TIMEOUT + 5)
    idle_open = sum(1 for c in idle if not c.closed.done())
    if idle:
        await close_all(run, idle)
    cpu = after.since(before)
    sessions = counts["sessions"]
    timing = percentiles(durations)
    extra: dict[str, Any] = {}
    if config.idle_users:
        extra = {"idle_connect_s": round(idle_connect_s, 3), "idle_still_open": idle_open}
    return {
        **extra,
        **cpu,
        "sessions": sessions,
        "sessions_per_s": round(sessions / cpu["wall_s"], 1),
        "sessions_per_server_cpu_s": (
            round(sessions / cpu["server_cpu_s"], 1) if cpu["server_cpu_s"] > 0 else None
        ),
        "failed_sessions": counts["failed"],
        "session_p50_ms": timing["lat_p50_ms"],
        "session_p99_ms": timing["lat_p99_ms"],
    }


WORKLOADS = {
    "direct": run_messaging,
    "fanout": run_messaging,
    "idle": run_idle,
    "storm": run_storm,
}


async def generate(config: Config, loop_name: str) -> dict[str, Any]:
    """Run one workload within the deadline; the result as a JSON-ready dict."""
    run = Run(config)
    result: dict[str, Any] = {**asdict(config), "loop": loop_name}
    try:
        result.update(await asyncio.wait_for(WORKLOADS[config.workload](run), config.deadline))
    except (TimeoutError, OSError, ConnectionError) as error:
        result["error"] = f"{type(error).__name__}: {error}"
    result["errors"] = dict(run.errors.most_common(10))
    result["lost_connections"] = run.lost_connections
    return result


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit; the new limit."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def run_loop(main: Callable[[], Any], prefer: str = "auto") -> tuple[Any, str]:
    """
    Run C{main()} on uvloop if it is installed (and not refused), else on
    asyncio's default loop; the result and the name of the loop used.
    """
    if prefer != "asyncio":
        try:
            import uvloop
        except ImportError:
            if prefer == "uvloop":
                raise
        else:
            name = f"uvloop {uvloop.__version__}"
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main()), name
    with asyncio.Runner() as runner:
        return runner.run(main()), "asyncio"


def loop_name(prefer: str) -> str:
    """The name of the loop L{run_loop} would use."""
    if prefer == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        if prefer == "uvloop":
            raise
        return "asyncio"
    return f"uvloop {uvloop.__version__}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proto", choices=("chat", "irc"), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-pid", type=int, required=True, help="for CPU and RSS")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--window", type=int, default=16, help="unacked messages per sender")
    parser.add_argument("--senders", type=int, default=4, help="fanout: broadcasting clients")
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: deliveries/s")
    parser.add_argument("--size", type=int, default=16, help="padding bytes per message")
    parser.add_argument("--concurrency", type=int, default=8, help="connects/sessions at once")
    parser.add_argument("--deadline", type=float, default=0.0, help="hard limit, seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--pace",
        choices=("tick", "own"),
        default="tick",
        help="with --rate: tick (a central 1 ms ticker, bursts) or own"
        " (each sender its own timer, exponential gaps, one line per write)",
    )
    parser.add_argument(
        "--idle-users",
        type=int,
        default=0,
        help="storm: register this many idle users first, held open during the storm",
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=0,
        help="latency of every Nth delivery (default: every one with --rate, else every 4th)",
    )
    parser.add_argument(
        "--no-quickack",
        dest="quickack",
        action="store_false",
        help="leave delayed ACKs on (see QUICKACK in the module docstring)",
    )
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    return parser.parse_args(argv)


def default_deadline(args: argparse.Namespace) -> float:
    """Enough for setup (scaled with the clients), the run and the drain."""
    return (
        60.0
        + (args.clients + args.idle_users) / 100
        + args.warmup
        + args.duration
        + DRAIN_TIMEOUT
        + 5.0
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.workload in ("direct", "fanout") and args.clients < 2:
        sys.exit("direct and fanout need at least 2 clients")
    if args.idle_users and args.workload != "storm":
        sys.exit("--idle-users applies to the storm workload only")
    if args.proto == "irc":
        longest = len(b"PRIVMSG u%d :%d \r\n" % (args.clients, now_us())) + args.size
        if longest * args.window + 64 >= IRC_READ_BUFFER:
            sys.exit(f"--window {args.window} x {longest} bytes overflows ngircd's read buffer")
    limit = raise_fd_limit()
    config = Config(
        proto=args.proto,
        host=args.host,
        port=args.port,
        workload=args.workload,
        clients=args.clients,
        duration=args.duration,
        warmup=args.warmup,
        window=args.window,
        senders=min(args.senders, args.clients),
        rate=args.rate,
        size=args.size,
        concurrency=args.concurrency,
        server_pid=args.server_pid,
        deadline=args.deadline or default_deadline(args),
        seed=args.seed,
        quickack=args.quickack,
        sample=args.sample or (1 if args.rate else 4),
        pace=args.pace,
        idle_users=args.idle_users,
    )
    name = loop_name(args.loop)
    print(f"loadgen: event loop {name}, fd limit {limit}", file=sys.stderr, flush=True)
    result, _ = run_loop(lambda: generate(config, name), args.loop)
    print(json.dumps(result), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
