"""
Starting and stopping the servers under test: C{twistd chat}, the textbook
server, ngircd and the two minimal relays (uvloop and C, the latter compiled
here on first use), each as a child process pinned to its own core.

Every server listens on 127.0.0.1 only. The only processes ever signalled are
the ones started here, by their PID.
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

SERVER_CORE = 0
GENERATOR_CORE = 1


def cores() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def pinned(command: list[str], core: int) -> list[str]:
    """
    C{command} run under C{taskset -c core}, when there are two cores to
    share and C{taskset} exists; otherwise C{command} unchanged.

    C{taskset} execs the command, so the child's PID is the server's own.
    """
    if cores() < 2 or shutil.which("taskset") is None:
        return command
    return ["taskset", "-c", str(core), *command]


def raise_fd_limit() -> int:
    """Raise the open-file soft limit to the hard limit (inherited by children)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def twistd_executable() -> str:
    """The C{twistd} beside this interpreter, else the one on C{PATH}."""
    beside = Path(sys.executable).parent / "twistd"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("twistd")
    if found is None:
        raise RuntimeError("twistd is not installed next to sys.executable nor on PATH")
    return found


def free_port() -> int:
    """
    A TCP port on 127.0.0.1 that is free right now, for ngircd, which cannot
    listen on port 0 and report the port it got.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CHAT_RELAXED = ("--rate-limit", "0", "--max-connections", "0", "--max-per-ip", "0")
"""
The chat server's flood control and connection caps, switched off: with its
defaults (10 lines/s per client after a burst of 20, 1000 connections, 256 per
IP) the benchmark would measure the limits, not the server. ngircd's penalties
are relaxed as far as its configuration allows, below, for the same reason.
"""

NGIRCD_LIMITS = {
    "MaxConnections": "0",
    "MaxConnectionsIP": "0",
    "MaxJoins": "0",
    "MaxNickLength": "31",
    "MaxListSize": "100000",
    "MaxPenaltyTime": "0",
    "PingTimeout": "3600",
    "PongTimeout": "3600",
    "IdleTimeout": "0",
}
"""The [Limits] of the generated ngircd.conf; C{bench/README.md} explains each."""

NGIRCD_OPTIONS = {
    "DNS": "no",
    "Ident": "no",
    "PAM": "no",
    "RequireAuthPing": "no",
    "NoticeBeforeRegistration": "no",
}
"""The [Options]: no lookups, so a connection costs only what ngircd itself does."""


def ngircd_config(directory: Path, port: int) -> Path:
    """Write an ngircd.conf for a private loopback instance; its path."""
    include = directory / "conf.d"
    include.mkdir()
    lines = [
        "[Global]",
        "\tName = bench.example.net",
        "\tInfo = chat benchmark",
        "\tAdminInfo1 = benchmark",
        "\tAdminInfo2 = benchmark",
        "\tAdminEMail = bench@localhost",
        "\tListen = 127.0.0.1",
        f"\tPorts = {port}",
        '\tMotdPhrase = "benchmark"',
        "[Limits]",
        *(f"\t{key} = {value}" for key, value in NGIRCD_LIMITS.items()),
        "[Options]",
        *(f"\t{key} = {value}" for key, value in NGIRCD_OPTIONS.items()),
        # Not /etc/ngircd/conf.d: nothing from the system installation.
        f"\tIncludeDir = {include}",
    ]
    path = directory / "ngircd.conf"
    path.write_text("\n".join(lines) + "\n")
    # ngircd drops root for "nobody", which must still read its files.
    for item in (directory, include, path):
        item.chmod(0o755 if item.is_dir() else 0o644)
    return path


CRELAY_SOURCE = REPO_ROOT / "bench" / "crelay.c"
CFLAGS = ("-O2", "-Wall", "-Wextra")


def cache_directory() -> Path:
    """Where built helpers are kept between runs: outside the source tree."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chat-bench"


def crelay_executable(source: Path = CRELAY_SOURCE) -> Path:
    """
    The C relay, compiled from C{source} with C{gcc} on first use.

    The binary is cached under L{cache_directory}, named by a hash of the
    source and the flags: an edited C{crelay.c} is rebuilt, an unchanged one
    is compiled once and not before every run. It is built under a temporary
    name and renamed, so two benchmarks starting at once never run a
    half-written file.
    """
    text = source.read_bytes()
    digest = hashlib.sha256(text + " ".join(CFLAGS).encode()).hexdigest()[:16]
    binary = cache_directory() / f"crelay-{digest}"
    if binary.is_file():
        return binary
    compiler = shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("gcc is needed to build bench/crelay.c: apt-get install -y gcc")
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f"{binary.name}.{os.getpid()}.tmp")
    built = subprocess.run(
        [compiler, *CFLAGS, "-o", str(partial), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"building {source} failed:\n{built.stderr}")
    os.replace(partial, binary)
    return binary


@dataclass
class Server:
    """
    One running server.

    @ivar kind: C{chat}, C{textbook}, C{ngircd}, C{uvrelay} or C{crelay}.
    @ivar proto: what the load generator must speak: C{chat} or C{irc}.
    """

    kind: str
    proto: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    command: list[str]
    log_file: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a while; the exit status, C{None} if killed."""
        code: int | None
        try:
            if self.process.poll() is None:
                os.kill(self.pid, signal.SIGTERM)
            code = self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
            code = None
        finally:
            self.log_file.close()
        return code


def _wait_for_port(process: subprocess.Popen[bytes], log_path: Path, pattern: bytes) -> int:
    """Poll the server's log until it names its port (or it dies)."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        match = regex.search(log_path.read_bytes())
        if match:
            return int(match.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.02)
    text = log_path.read_bytes().decode("utf-8", "replace")
    if process.poll() is None:
        process.kill()
        process.wait()
    raise RuntimeError(f"server did not report its port; its log:\n{text}")


def export_source(ref: str, directory: Path) -> str:
    """
    Extract the tree of git revision C{ref} into C{directory}; its commit id.

    The working tree may be edited while a long benchmark runs; a committed
    revision is the same code for every run, and can be named in the results.
    """
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "archive", commit], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return commit


def describe_working_tree() -> str:
    """C{git describe}-like name of the checkout, C{-dirty} if it has edits."""
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def start(
    kind: str,
    directory: Path,
    max_users: int,
    source: Path = REPO_ROOT,
    chat_args: Sequence[str] = (),
) -> Server:
    """
    Start a server of C{kind} with its working files in C{directory}, pinned
    to L{SERVER_CORE}, with its output going to a file: a pipe nobody reads
    would block a server that logs every message.

    C{twistd chat} runs from C{source} (working directory and C{PYTHONPATH}),
    the checkout by default, so the code measured is the code in that tree
    and not an installed copy; C{chat_args} are added to its command line.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = str(source)
    if kind == "chat":
        command = [
            twistd_executable(),
            "-n",
            "--pidfile=",
            "chat",
            "--port",
            "tcp:0:interface=127.0.0.1",
            "--max-users",
            str(max_users),
            *CHAT_RELAXED,
            *chat_args,
        ]
        pattern, proto = rb"ChatFactory starting on (\d+)", "chat"
    elif kind == "textbook":
        command = [sys.executable, str(REPO_ROOT / "bench" / "textbook.py"), "0", str(max_users)]
        pattern, proto = rb"textbook listening on 127\.0\.0\.1:(\d+)", "chat"
    elif kind == "uvrelay":
        command = [sys.executable, str(REPO_ROOT / "bench" / "uvrelay.py"), "0", str(max_users)]
        pattern, proto = rb"uvrelay listening on 127\.0\.0\.1:(\d+)", "chat"
    elif kind == "crelay":
        command = [str(crelay_executable()), "0", str(max_users)]
        pattern, proto = rb"crelay listening on 127\.0\.0\.1:(\d+)", "chat"
    elif kind == "ngircd":
        executable = shutil.which("ngircd") or "/usr/sbin/ngircd"
        if not os.access(executable, os.X_OK):
            raise RuntimeError("ngircd is not installed: apt-get install -y ngircd")
        port = free_port()
        command = [executable, "-n", "-f", str(ngircd_config(directory, port))]
        pattern, proto = rb"Now listening on \[127\.0\.0\.1\]:(\d+)", "irc"
    else:
        raise ValueError(f"unknown server {kind!r}")
    command = pinned(command, SERVER_CORE)
    # Inherited by the child: as many descriptors as the hard limit allows
    # (no preexec_fn, which is unsafe in a process with threads).
    raise_fd_limit()
    log_path = directory / f"{kind}.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed by Server.stop()
    process = subprocess.Popen(
        command,
        cwd=source,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        port = _wait_for_port(process, log_path, pattern)
    except BaseException:
        log_file.close()
        raise
    return Server(kind, proto, process, port, log_path, command, log_file)
