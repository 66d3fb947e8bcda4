"""
Helpers for the real-socket tests: a C{twistd chat} process and a line client.

The server is always the source tree's code: C{twistd} runs with the repository
root as its working directory and as C{PYTHONPATH}, so an installed copy of
the package cannot mask a change that has not been reinstalled. Ports come from
the kernel (C{tcp:0}) and are read back from the log, so tests can run in
parallel and never race another process for a port.
"""

from __future__ import annotations

import ctypes
import os
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from harness import PRESENCE_NOTICE

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The checkout under test, found from this file so no path is hard-coded."""

STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
IO_TIMEOUT = 5.0
"""How long any single expectation may wait: generous, yet a hang fails fast."""

CRLF = b"\r\n"
RESUME_TOKEN = re.compile(r" \(resume token: ([\w-]{12})\)")
SHUTDOWN_LINE = "BYE Shutting Down: the server is shutting down; goodbye"

_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
_PORT_LINE = re.compile(rb"ChatFactory starting on (\d+)")

_clients: weakref.WeakSet[Client] = weakref.WeakSet()


def close_all_clients() -> None:
    """
    Close every client socket still open, so that a failed test does not
    leave the server waiting out its shutdown grace for a client that will
    never read.
    """
    for client in list(_clients):
        client.close()


def twistd_executable() -> str:
    """
    The C{twistd} of the interpreter running the tests.

    The one next to C{sys.executable} is preferred over C{PATH}, which may hold
    a shim (pyenv) or another environment's C{twistd}.
    """
    beside = Path(sys.executable).parent / "twistd"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("twistd")
    if found is None:
        raise RuntimeError("twistd is not installed next to sys.executable nor on PATH")
    return found


def _die_with_parent() -> None:
    """
    In the child, before exec: ask Linux to SIGKILL it if pytest dies, so a
    killed test run cannot leave servers behind (prctl PR_SET_PDEATHSIG).
    """
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def server_environment() -> dict[str, str]:
    """The environment of the server: the source tree first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    # Log lines must reach the file as they are written: the tests poll it.
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ChatServer:
    """
    One C{twistd -n chat} child process listening on a kernel-chosen port.

    @ivar port: the TCP port on 127.0.0.1, parsed from the log.
    @ivar pid: the process id; the only process these helpers ever signal.
    """

    def __init__(self, log_path: Path, args: Iterable[str] = ()) -> None:
        self.log_path = log_path
        self.args = list(args)
        self._log_file: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        command = [
            twistd_executable(),
            "-n",
            "--pidfile=",
            "chat",
            "--port",
            "tcp:0:interface=127.0.0.1",
            *self.args,
        ]
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=server_environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # The test process runs no threads, where preexec_fn is unsafe.
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        self.pid = self.process.pid
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        """Poll the log until the listening line appears or the process dies."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            match = _PORT_LINE.search(self.log_path.read_bytes())
            if match:
                return int(match.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"twistd did not report a port; its log:\n{self.log_text()}")

    def log_text(self) -> str:
        """Everything the server has logged so far."""
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def wait_for_log(self, needle: str, timeout: float = IO_TIMEOUT) -> str:
        """Wait until C{needle} is logged; the log is written after the fact."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            if needle in text:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not logged within {timeout} s:\n{text}")
            time.sleep(0.02)

    def rss_kib(self) -> int:
        """Resident set size of the server, from C{/proc/PID/status}."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for pid {self.pid}")

    def terminate(self) -> None:
        """Send SIGTERM to the server (and nothing else), if it still runs."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the process to exit; its exit code."""
        return self.process.wait(timeout=timeout)

    def stop(self) -> int | None:
        """
        SIGTERM, then SIGKILL if it does not exit in time.

        Whatever interrupts the wait (the test time limit, Ctrl-C), the
        process is killed before the exception goes on: no server outlives
        its test.

        @return: the exit code if the process exited on its own after SIGTERM,
            C{None} if it had to be killed.
        """
        code: int | None = None
        try:
            self.terminate()
            code = self.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
            self._log_file.close()
        return code


class Client:
    """
    A blocking TCP client that speaks the chat protocol line by line.

    Every read has a deadline (L{IO_TIMEOUT}), so a missing reply fails the
    test instead of hanging it. Received bytes are buffered and split on CRLF;
    raw bytes (telnet answers) can be taken from the front of the buffer too.
    """

    def __init__(
        self,
        port: int,
        *,
        greeting: bool = True,
        rcvbuf: int | None = None,
        nodelay: bool = False,
        timeout: float = IO_TIMEOUT,
        source: str | None = None,
    ) -> None:
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        _clients.add(self)
        if source is not None:
            # Another loopback address (127.0.0.0/8): another client address.
            self.sock.bind((source, 0))
        if rcvbuf is not None:
            # Must be set before connect: the window scale is fixed by the SYN.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = b""
        self.eof = False
        self.presence = False
        self.name: str | None = None
        self.token: str | None = None
        if greeting:
            self.expect_line("INFO Welcome")
            self.expect_line("INFO Usernames")

    # Sending

    def send(self, data: bytes) -> None:
        """Send raw bytes, exactly as given."""
        self.sock.sendall(data)

    def sendline(self, line: str | bytes) -> None:
        """Send one line with CRLF appended."""
        self.send((line.encode("utf-8") if isinstance(line, str) else line) + CRLF)

    # Receiving

    def fill(self, deadline: float) -> bool:
        """
        One C{recv} into the buffer, waiting at most until C{deadline}.

        @return: whether anything arrived (C{False} at EOF).
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"nothing more received; buffer: {self.buffer[-400:]!r}")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError(f"nothing more received; buffer: {self.buffer[-400:]!r}") from None
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def read_line(self, timeout: float | None = None) -> str:
        """
        The next complete line, without CRLF; must be valid UTF-8. Presence
        notices are skipped unless L{presence} is set: only the tests of
        presence want them.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            while CRLF not in self.buffer:
                if self.eof or not self.fill(deadline):
                    raise EOFError(f"connection closed; unfinished data: {self.buffer!r}")
            raw, self.buffer = self.buffer.split(CRLF, 1)
            line = raw.decode("utf-8")
            if self.presence or not PRESENCE_NOTICE.match(line):
                break
        if match := RESUME_TOKEN.search(line):
            # Random in every run: kept in .token, cut from the line.
            self.token = match.group(1)
            line = line.replace(match.group(0), "")
        return line

    def expect_line(self, prefix: str) -> str:
        """The next line, asserting that it starts with C{prefix}."""
        line = self.read_line()
        assert line.startswith(prefix), f"expected {prefix!r}..., got {line!r}"
        return line

    def read_until(self, predicate: Callable[[str], bool]) -> list[str]:
        """Lines up to and including the first one matching C{predicate}."""
        lines: list[str] = []
        deadline = time.monotonic() + self.timeout
        while True:
            lines.append(self.read_line(timeout=max(0.0, deadline - time.monotonic())))
            if predicate(lines[-1]):
                return lines

    def read_reply(self) -> list[str]:
        """The lines answering one command: up to and including OK or ERR."""
        return self.read_until(lambda line: line.startswith(("OK ", "ERR ")))

    def command(self, line: str | bytes) -> list[str]:
        """Send one command line and return every line of its answer."""
        self.sendline(line)
        return self.read_reply()

    def expect_bytes(self, expected: bytes) -> None:
        """Assert that the next raw bytes received are exactly C{expected}."""
        deadline = time.monotonic() + self.timeout
        while len(self.buffer) < len(expected):
            if not self.fill(deadline):
                break
        got, self.buffer = self.buffer[: len(expected)], self.buffer[len(expected) :]
        assert got == expected, f"expected raw {expected!r}, got {got!r}"

    def expect_eof(self) -> None:
        """Assert that the server closes the connection with nothing more to read."""
        deadline = time.monotonic() + self.timeout
        while not self.eof:
            self.fill(deadline)
        self.buffer = self._withoutPresence(self.buffer)
        assert self.buffer == b"", f"unread data before EOF: {self.buffer!r}"

    def assert_silent(self, wait: float = 0.2) -> None:
        """
        Assert that nothing arrives for C{wait} seconds.

        Only for proving that something did not happen: a short sleep is the
        only way to observe an absence.
        """
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            data = None
        finally:
            self.sock.settimeout(self.timeout)
        rest = self._withoutPresence(self.buffer + (data or b""))
        assert rest == b"", f"unexpected data: {self.buffer!r} {data!r}"
        self.buffer = b""

    def _withoutPresence(self, data: bytes) -> bytes:
        """C{data} without its complete presence notices, unless L{presence} is set."""
        if self.presence:
            return data
        *lines, rest = data.split(CRLF)
        kept = [
            line for line in lines if not PRESENCE_NOTICE.match(line.decode("utf-8", "replace"))
        ]
        return b"".join(line + CRLF for line in kept) + rest

    # Protocol shortcuts

    def join(self, name: str) -> str:
        """Register as C{name}, asserting success; the OK line."""
        line = self.expect_reply(f"JOIN {name}", f"OK JOIN {name} ")
        self.name = name
        return line

    def expect_reply(self, command: str | bytes, prefix: str) -> str:
        """Send C{command}; its answer must be exactly one line starting with C{prefix}."""
        lines = self.command(command)
        assert len(lines) == 1 and lines[0].startswith(prefix), (
            f"{command!r}: expected {prefix!r}..., got {lines!r}"
        )
        return lines[0]

    def list_names(self) -> list[str]:
        """The registered names, from LIST, checking the count line."""
        lines = self.command("LIST")
        names = [line.removeprefix("USER ") for line in lines[:-1]]
        assert all(line.startswith("USER ") for line in lines[:-1]), lines
        assert lines[-1] == f"OK LIST {len(names)}", lines
        return names

    def quit(self) -> None:
        """QUIT, asserting the goodbye and the close that must follow it."""
        self.expect_reply("QUIT", "OK QUIT Bye")
        self.expect_eof()
        self.close()

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        """Close with a TCP RST instead of a FIN (SO_LINGER with a zero timeout)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def pump(clients: Iterable[Client], timeout: float = 0.05) -> int:
    """
    Read whatever has arrived on any of C{clients} into their buffers.

    Lets one thread keep several clients reading at once, so that none of them
    looks like a slow consumer while another one is being driven.

    @return: how many bytes were read in total.
    """
    total = 0
    with selectors.DefaultSelector() as selector:
        for client in clients:
            if not client.eof:
                selector.register(client.sock, selectors.EVENT_READ, client)
        if not selector.get_map():
            return 0
        for key, _ in selector.select(timeout):
            client = key.data
            before = len(client.buffer)
            client.fill(time.monotonic() + IO_TIMEOUT)
            total += len(client.buffer) - before
    return total


def poll_until_gone(observer: Client, name: str, timeout: float = 5.0) -> list[str]:
    """
    LIST until C{name} is no longer registered.

    The server learns of a dropped connection asynchronously, so polling is
    the only way to wait for it; each poll is a full request and reply.
    """
    deadline = time.monotonic() + timeout
    while True:
        names = observer.list_names()
        if name not in names:
            return names
        assert time.monotonic() < deadline, f"{name} still listed after {timeout} s: {names}"
        time.sleep(0.02)


def take_lines(client: Client) -> list[str]:
    """Every complete line already in C{client}'s buffer, without reading."""
    *lines, client.buffer = client.buffer.split(CRLF)
    decoded = [line.decode("utf-8") for line in lines]
    return [line for line in decoded if client.presence or not PRESENCE_NOTICE.match(line)]


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway key and certificate for C{localhost}, made by C{openssl}."""
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert
