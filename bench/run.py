"""
The benchmark driver: starts each server, runs the load generator against
it, and reports one JSON line per run and a table of medians.

    python -m bench --servers chat,textbook,ngircd --workloads direct,fanout \\
        --clients 100,1000 --duration 10 --repeat 3

Runs are interleaved (every server once, then every server again, in a
rotated order) so that a disturbance on the machine spreads over the servers
instead of landing on one. Every run gets a fresh server: no state, memory or
warm caches carried over. The server runs on core 0 and the generator on core
1 (C{taskset}); each run records the load average and the CPU that neither of
them used, so a disturbed run can be spotted and redone.

C{--smoke} is the quick check used by the tests: a few clients for about a
second, the chat server only, every workload.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import servers
from bench.procstat import busy_cpu_seconds, loadavg

SERVERS = ("chat", "textbook", "ngircd", "uvrelay", "crelay")
DEFAULT_SERVERS = ("chat", "textbook", "ngircd")
"""
What runs without C{--servers}: the minimal relays are asked for by name
(they need uvloop and gcc). C{--report} shows every server by default.
"""
WORKLOADS = ("direct", "fanout", "idle", "storm")
GENERATOR_SLACK = 30.0
"""Seconds past its own deadline before a silent generator is killed."""


@dataclass(frozen=True)
class Spec:
    """One run: a server, a workload and its parameters, and which repeat."""

    server: str
    workload: str
    clients: int
    rate: float
    repeat: int


def csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the chat server against a textbook Twisted server, ngircd"
        " and two minimal relays (uvloop, C).",
    )
    parser.add_argument(
        "--servers",
        type=csv,
        help=f"{','.join(SERVERS)} (default {','.join(DEFAULT_SERVERS)}; --report: all)",
    )
    parser.add_argument(
        "--workloads", type=csv, default=["direct", "fanout"], help=",".join(WORKLOADS)
    )
    parser.add_argument("--clients", type=csv, default=["100"], help="e.g. 100,1000")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--rate", type=csv, default=["0"], help="open loop: total deliveries/s (0: closed loop)"
    )
    parser.add_argument(
        "--pace",
        choices=("tick", "own"),
        default="tick",
        help="with --rate: tick (a central 1 ms ticker, in bursts; the default) or own"
        " (each client on its own timer, random gaps, one line per write)",
    )
    parser.add_argument(
        "--idle-users",
        type=int,
        default=0,
        help="storm: first register this many idle users, held open during the storm",
    )
    parser.add_argument("--window", type=int, default=16, help="unacknowledged messages per sender")
    parser.add_argument("--senders", type=int, default=4, help="fanout: broadcasting clients")
    parser.add_argument("--size", type=int, default=16, help="padding bytes per message")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="idle: connects at once; storm: sessions at once"
    )
    parser.add_argument(
        "--max-users",
        type=int,
        default=0,
        help="capacity of chat, textbook and the relays (0: clients + margin)",
    )
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    parser.add_argument(
        "--no-quickack",
        dest="quickack",
        action="store_false",
        help="clients keep delayed ACKs (see bench/README.md)",
    )
    parser.add_argument(
        "--chat-args",
        default="",
        help="more options for twistd chat, e.g. --chat-args=--quiet-relays",
    )
    parser.add_argument(
        "--ref",
        help="run the chat server from this git revision (e.g. HEAD) instead of the working tree",
    )
    parser.add_argument(
        "--disturbed",
        type=float,
        default=0.3,
        help="cores of CPU used by other processes that make a run disturbed (default 0.3)",
    )
    parser.add_argument("--retries", type=int, default=0, help="redo a disturbed run this often")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="before each run, wait up to this many seconds for the machine to be idle",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=float("inf"),
        help="seconds: stop waiting for quiet and retrying when the rest would not fit",
    )
    parser.add_argument(
        "--report",
        type=Path,
        nargs="+",
        metavar="JSONL",
        help="print the table of results saved with --out, run nothing",
    )
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    parser.add_argument(
        "--smoke", action="store_true", help="a few clients, ~1 s, chat only: a quick check"
    )
    args = parser.parse_args(argv)
    if args.servers is None:
        args.servers = list(SERVERS if args.report else DEFAULT_SERVERS)
    if args.smoke:
        args.servers = ["chat"]
        args.workloads = list(WORKLOADS)
        args.clients = ["4"]
        args.duration = 1.0
        args.warmup = 0.3
        args.repeat = 1
        args.rate = ["0"]
        args.concurrency = 4
    for name in args.servers:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}; choose from {', '.join(SERVERS)}")
    for name in args.workloads:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
    args.clients = [int(c) for c in args.clients]
    args.rate = [float(r) for r in args.rate]
    if args.idle_users < 0:
        parser.error("--idle-users must not be negative")
    if args.pace == "own" and not any(args.rate):
        parser.error("--pace own needs --rate (it paces an open loop)")
    return args


def plan(args: argparse.Namespace) -> Iterator[Spec]:
    """
    Every run, in order: for each workload and size, the repeats, and in each
    repeat every server once, the order rotated from one repeat to the next.
    C{storm} does not depend on the number of clients (only on
    C{--concurrency}), nor C{idle} on the rate: those are run once per repeat.
    """
    for workload in args.workloads:
        sizes = [args.concurrency] if workload == "storm" else args.clients
        rates = args.rate if workload in ("direct", "fanout") else [0.0]
        for clients in sizes:
            for rate in rates:
                for repeat in range(args.repeat):
                    shift = repeat % len(args.servers)
                    for server in args.servers[shift:] + args.servers[:shift]:
                        yield Spec(server, workload, clients, rate, repeat)


def generator_command(spec: Spec, server: servers.Server, args: argparse.Namespace) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--proto",
        server.proto,
        "--port",
        str(server.port),
        "--server-pid",
        str(server.pid),
        "--workload",
        spec.workload,
        "--clients",
        str(spec.clients),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--window",
        str(args.window),
        "--senders",
        str(args.senders),
        "--size",
        str(args.size),
        "--concurrency",
        str(args.concurrency),
        "--rate",
        str(spec.rate),
        "--loop",
        args.loop,
    ]
    if args.pace != "tick" and spec.rate:
        command += ["--pace", args.pace]
    if spec.workload == "storm" and args.idle_users:
        command += ["--idle-users", str(args.idle_users)]
    if not args.quickack:
        command.append("--no-quickack")
    return servers.pinned(command, servers.GENERATOR_CORE)


def run_one(spec: Spec, args: argparse.Namespace, source: Path, label: str) -> dict[str, Any]:
    """Start a fresh server, run the generator against it, stop the server."""
    idle_users = args.idle_users if spec.workload == "storm" else 0
    # Capacity of chat, textbook and the relays: the clients (storm: the sessions at once, plus
    # the idle users) and a margin; ngircd's MaxConnections is 0 (no limit).
    max_users = args.max_users or spec.clients + idle_users + args.concurrency + 16
    record: dict[str, Any] = {"server": spec.server, "repeat": spec.repeat, "source": label}
    with tempfile.TemporaryDirectory(prefix="bench-") as directory:
        try:
            server = servers.start(
                spec.server, Path(directory), max_users, source, shlex.split(args.chat_args)
            )
        except RuntimeError as error:
            record.update(workload=spec.workload, clients=spec.clients, error=str(error))
            return record
        try:
            record["load_before"] = loadavg()
            command = generator_command(spec, server, args)
            deadline = 60.0 + (spec.clients + idle_users) / 100 + args.warmup + args.duration + 20.0
            try:
                completed = subprocess.run(
                    command,
                    cwd=servers.REPO_ROOT,
                    stdout=subprocess.PIPE,
                    timeout=deadline + GENERATOR_SLACK,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                record.update(workload=spec.workload, clients=spec.clients)
                record["error"] = "load generator did not finish in time (killed)"
                return record
            lines = completed.stdout.decode("utf-8", "replace").strip().splitlines()
            try:
                record.update(json.loads(lines[-1]))
            except (IndexError, json.JSONDecodeError):
                record.update(workload=spec.workload, clients=spec.clients)
                record["error"] = f"no result from the load generator (exit {completed.returncode})"
            record["load_after"] = loadavg()
        finally:
            record["server_exit"] = server.stop()
            text = server.log_text()
            record["server_tracebacks"] = text.count("Traceback")
            record["server_command"] = " ".join(server.command)
    record["server"] = spec.server
    record["repeat"] = spec.repeat
    return record


# Reporting


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def spread(values: list[float | None]) -> str:
    """(max - min) / median of the runs, in percent: how far to trust a median."""
    present = [v for v in values if v is not None]
    middle = median(present)
    if len(present) < 2 or not middle:
        return "-"
    return f"{100 * (max(present) - min(present)) / middle:.0f}"


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or not b:
        return "-"
    return f"{a / b:.2f}"


COLUMNS: dict[str, list[tuple[str, str, int, float]]] = {
    # (header, result key, digits, scale)
    "messaging": [
        ("deliv/s", "deliveries_per_s", 0, 1),
        ("p50 ms", "lat_p50_ms", 2, 1),
        ("p99 ms", "lat_p99_ms", 2, 1),
        ("max ms", "lat_max_ms", 1, 1),
        ("srv CPU%", "server_cpu_util", 0, 100),
        ("deliv/CPU-s", "deliveries_per_server_cpu_s", 0, 1),
        ("gen CPU%", "gen_cpu_util", 0, 100),
        ("other CPU%", "other_cpu_util", 0, 100),
    ],
    "idle": [
        ("connect s", "connect_s", 2, 1),
        ("conn/s", "connects_per_s", 0, 1),
        ("RSS/conn KiB", "rss_per_conn_bytes", 1, 1 / 1024),
        ("srv CPU-s", "connect_server_cpu_s", 2, 1),
        ("hold CPU-s", "hold_server_cpu_s", 2, 1),
        ("open", "still_open", 0, 1),
        ("gen CPU%", "gen_cpu_util", 0, 100),
        ("other CPU-s", "other_cpu_s", 1, 1),
    ],
    "storm": [
        ("sessions/s", "sessions_per_s", 0, 1),
        ("sess/CPU-s", "sessions_per_server_cpu_s", 0, 1),
        ("p50 ms", "session_p50_ms", 2, 1),
        ("p99 ms", "session_p99_ms", 2, 1),
        ("failed", "failed_sessions", 0, 1),
        ("srv CPU%", "server_cpu_util", 0, 100),
        ("gen CPU%", "gen_cpu_util", 0, 100),
        ("other CPU%", "other_cpu_util", 0, 100),
    ],
}

RATIO_KEYS = {
    "messaging": [
        ("deliveries per server CPU-s", "deliveries_per_server_cpu_s"),
        ("deliveries/s", "deliveries_per_s"),
    ],
    "idle": [("RSS per connection", "rss_per_conn_bytes"), ("connects/s", "connects_per_s")],
    "storm": [
        ("sessions per server CPU-s", "sessions_per_server_cpu_s"),
        ("sessions/s", "sessions_per_s"),
    ],
}


def kind_of(workload: str) -> str:
    return "messaging" if workload in ("direct", "fanout") else workload


def table(results: list[dict[str, Any]], server_order: list[str]) -> str:
    """Medians per (workload, clients, rate, server), and chat's ratios."""
    groups: dict[tuple[str, int, float, str, int], dict[str, list[dict[str, Any]]]] = {}
    for result in results:
        if "error" in result:
            continue
        rate = result.get("rate") or 0.0
        key = (
            result["workload"],
            result["clients"],
            rate,
            result.get("pace", "tick") if rate else "tick",
            result.get("idle_users") or 0,
        )
        groups.setdefault(key, {}).setdefault(result["server"], []).append(result)
    out: list[str] = []
    for (workload, clients, rate, pace, idle_users), by_server in groups.items():
        kind = kind_of(workload)
        columns = COLUMNS[kind]
        title = f"{workload}, {'concurrency' if workload == 'storm' else 'clients'} {clients}"
        if rate:
            title += f", offered {rate:,.0f} deliveries/s"
            if pace == "own":
                title += " (each client at its own pace)"
        if idle_users:
            title += f", {idle_users:,} idle users"
        out.append(f"\n{title}: medians; spread of {RATIO_KEYS[kind][0][0]} over the runs")
        headline = RATIO_KEYS[kind][0][1]
        header = (
            f"{'server':<10}"
            + "".join(f"{h:>14}" for h, _, _, _ in columns)
            + f"{'spread%':>9}{'runs':>6}"
        )
        out.append(header)
        out.append("-" * len(header))
        medians: dict[str, dict[str, float | None]] = {}
        for server in server_order:
            if server not in by_server:
                continue
            rows = by_server[server]
            medians[server] = {key: median(r.get(key) for r in rows) for _, key, _, _ in columns}
            cells = []
            for _, key, digits, scale in columns:
                value = medians[server][key]
                cells.append(fmt(None if value is None else value * scale, digits))
            out.append(
                f"{server:<10}"
                + "".join(f"{c:>14}" for c in cells)
                + f"{spread([r.get(headline) for r in rows]):>9}{len(rows):>6}"
            )
        if "chat" in medians:
            for label, key in RATIO_KEYS[kind]:
                chat = median(r.get(key) for r in by_server["chat"])
                parts = []
                for other in server_order:
                    if other != "chat" and other in by_server:
                        theirs = median(r.get(key) for r in by_server[other])
                        parts.append(f"chat/{other} {ratio(chat, theirs)}")
                if parts:
                    out.append(f"  {label}: " + ", ".join(parts))
    return "\n".join(out)


def uptime() -> str:
    try:
        return subprocess.run(
            ["uptime"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return "load average: " + " ".join(map(str, loadavg()))


def report(paths: list[Path], server_order: list[str]) -> str:
    """The table of saved results, leaving out runs that were redone."""
    results = []
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                result = json.loads(line)
                if not result.get("discarded"):
                    results.append(result)
    return table(results, server_order)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        print(report(args.report, args.servers))
        return 0
    servers.raise_fd_limit()
    specs = list(plan(args))
    with tempfile.TemporaryDirectory(prefix="bench-source-") as exported:
        if args.ref:
            source = Path(exported)
            label = servers.export_source(args.ref, source)
        else:
            source, label = servers.REPO_ROOT, "working tree " + servers.describe_working_tree()
        return run_all(args, specs, source, label)


def machine_busy(seconds: float = 1.0) -> float:
    """Cores' worth of CPU the whole machine used over the next C{seconds}."""
    before = busy_cpu_seconds()["all"]
    time.sleep(seconds)
    return (busy_cpu_seconds()["all"] - before) / seconds


def wait_for_quiet(args: argparse.Namespace) -> dict[str, float]:
    """
    Before a run, wait (at most C{--quiet-wait} seconds) until the machine is
    idle: other people's test runs on a shared machine would be measured as
    much as the server. Returns what was seen, for the record.
    """
    if args.quiet_wait <= 0:
        return {}
    started = time.monotonic()
    busy = machine_busy()
    while busy > args.disturbed and time.monotonic() - started < args.quiet_wait:
        busy = machine_busy(2.0)
    return {"busy_before": round(busy, 2), "waited_s": round(time.monotonic() - started, 1)}


def is_disturbed(result: dict[str, Any], threshold: float) -> bool:
    """Whether something else used more than C{threshold} cores during the run."""
    return result.get("other_cpu_util", 0.0) > threshold


def run_all(args: argparse.Namespace, specs: list[Spec], source: Path, label: str) -> int:
    """
    Every run in turn; JSON lines as they finish, then the table.

    A run during which something else used more than C{--disturbed} cores is
    marked C{"discarded": true} and redone, up to C{--retries} times; the
    table uses only the runs that were kept.
    """
    print(f"bench: {len(specs)} runs of {label}; {uptime()}", file=sys.stderr, flush=True)
    results: list[dict[str, Any]] = []
    failed = 0
    started = time.monotonic()
    estimate = args.warmup + args.duration + 4.0
    for number, spec in enumerate(specs, 1):
        for attempt in range(args.retries + 1):
            print(
                f"bench: [{number}/{len(specs)}] {spec.server} {spec.workload} "
                f"clients={spec.clients} rate={spec.rate:g} repeat={spec.repeat}"
                + (f" (retry {attempt})" if attempt else ""),
                file=sys.stderr,
                flush=True,
            )
            # Waiting and retrying only while the rest still fits in --budget.
            left = len(specs) - number + 1
            spare = args.budget - (time.monotonic() - started) - left * estimate
            quiet = wait_for_quiet(args) if spare > args.quiet_wait else {}
            result = run_one(spec, args, source, label)
            result.update(quiet, attempt=attempt)
            disturbed = is_disturbed(result, args.disturbed)
            spare = args.budget - (time.monotonic() - started) - left * estimate
            retry = disturbed and attempt < args.retries and "error" not in result and spare > 0
            if retry:
                result["discarded"] = True
            line = json.dumps(result)
            print(line, flush=True)
            if args.out is not None:
                with args.out.open("a") as out:
                    out.write(line + "\n")
            if not retry:
                break
            print(
                f"bench: disturbed (other CPU {result['other_cpu_util']:.2f} cores), again",
                file=sys.stderr,
                flush=True,
            )
        results.append(result)
        if "error" in result:
            failed += 1
            print(f"bench: run failed: {result['error']}", file=sys.stderr, flush=True)
    print(table(results, args.servers), flush=True)
    disturbed = sum(1 for r in results if is_disturbed(r, args.disturbed))
    print(
        f"\nbench: {len(specs)} runs in {time.monotonic() - started:.0f} s, {failed} failed, "
        f"{disturbed} kept although disturbed; {uptime()}",
        file=sys.stderr,
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
