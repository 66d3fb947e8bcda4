"""
Fixtures for the real-socket tests: servers that clean up after themselves.

Every server a test starts is stopped with SIGTERM at teardown (SIGKILL if it
ignores that), and its log is checked: a traceback or an unhandled error in a
Deferred is a bug even when every reply the test saw was right.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogEvent, capturedLogs

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server import ChatServer, close_all_clients

TEST_TIME_LIMIT = 60
"""Seconds any one test may take; pytest-timeout is not a dependency."""

StartServer = Callable[..., ChatServer]


def assert_clean_log(server: ChatServer) -> None:
    """Fail if the server logged an exception."""
    text = server.log_text()
    for marker in ("Traceback", "Unhandled"):
        assert marker not in text, f"server {server.pid} logged {marker!r}:\n{text}"


def stop_all(servers: list[ChatServer], problems: list[str]) -> None:
    """
    Stop every server, even if stopping one is interrupted (then re-raise).

    An exit by the SIGTERM itself (-SIGTERM) is accepted: twistd logs the port
    before its reactor runs and takes over SIGTERM, so a test that stops a
    server at once may kill it. test_sigterm_says_goodbye holds an orderly
    shutdown to exit 0.
    """
    interrupted: BaseException | None = None
    for server in servers:
        try:
            code = server.stop()
        except BaseException as error:  # noqa: BLE001 - the others must still be stopped
            interrupted = interrupted or error
            continue
        if code is None:
            problems.append(f"server {server.pid} ignored SIGTERM and was killed")
        elif code not in (0, -signal.SIGTERM):
            problems.append(f"server {server.pid} exited with status {code}")
    if interrupted is not None:
        raise interrupted


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """
    A factory: C{start_server("--max-users", "3")} runs C{twistd chat} with
    those extra options and returns a running L{ChatServer}.

    At teardown the test's client sockets are closed, then each server gets
    SIGTERM and must exit by itself in time, and its log must be free of
    tracebacks. (test_sigterm_says_goodbye covers shutdown with clients.)
    """
    servers: list[ChatServer] = []

    def start(*args: str) -> ChatServer:
        server = ChatServer(tmp_path / f"twistd-{len(servers)}.log", args)
        servers.append(server)
        return server

    yield start

    problems: list[str] = []
    try:
        close_all_clients()
    finally:
        stop_all(servers, problems)
    for server in servers:
        try:
            assert_clean_log(server)
        except AssertionError as error:
            problems.append(str(error))
    assert not problems, "\n".join(problems)


@pytest.fixture
def server(start_server: StartServer) -> ChatServer:
    """A server with the default options."""
    return start_server()


@pytest.fixture
def time_limit() -> Iterator[None]:
    """
    Bound a test in time, whatever it waits on (use it with C{usefixtures}).

    Every read already has its own deadline; this is the backstop for a loop
    that keeps receiving something but never what it waits for. It is not
    autouse, so the unit tests in this directory are left alone.
    """

    def expired(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"test took longer than {TEST_TIME_LIMIT} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIME_LIMIT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def clock() -> Clock:
    """Time for protocol tests: advanced by hand, never by waiting."""
    return Clock()


@pytest.fixture
def logs() -> Iterator[Sequence[LogEvent]]:
    """Every event logged during the test."""
    with capturedLogs() as events:
        yield events
