"""Tests for L{chat.server.logs.TextLogObserver}: twistd's lines, cheaper."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import time

import pytest
from twisted.internet.task import Clock
from twisted.logger import (
    ILogObserver,
    Logger,
    LogLevel,
    formatEventAsClassicLogText,
    formatTime,
    jsonFileLogObserver,
    timeFormatRFC3339,
)
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from chat.server.logs import FLUSH_DELAY, DirectRelayLog, RelayLog, TextLogObserver
from chat.server.protocol import ChatProtocol
from chat.tap import Options, log_observer


class Output(io.StringIO):
    flushes = 0
    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def observer(running: bool = True) -> tuple[TextLogObserver, Output, Clock]:
    out, clock = Output(), Clock()
    return TextLogObserver(out, clock.callLater, lambda: running), out, clock


def event(format: str | None, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "log_time": time.time(),
        "log_level": LogLevel.info,
        "log_namespace": "chat.server.protocol.ChatProtocol",
    }
    if format is not None:
        base["log_format"] = format
    return {**base, **fields}


def failure_event() -> dict[str, object]:
    try:
        1 / 0  # noqa: B018 - a real traceback for the failure event
    except ZeroDivisionError:
        return event("it broke", log_failure=Failure(), log_level=LogLevel.critical)
    raise AssertionError


@pytest.mark.parametrize(
    "logged",
    [
        event("{name} joined from {peer} ({count}/{capacity} users)",
              name="alice", peer="127.0.0.1:5", count=1, capacity=10),
        event("{name} sent an unknown command {verb!r}", name="a", verb="FR'OB"),
        event("no fields at all"),
        event("{log_text}", log_text="ChatFactory starting on 1", log_system="-"),
        event("{missing} key"),
        event("{method()} call", method=lambda: "called"),
        event("bad {", x=1),
        event(None),
        failure_event(),
    ],
)  # fmt: skip
def test_lines_are_twistds_lines(logged: dict[str, object]) -> None:
    text, out, clock = observer()
    text(logged)
    clock.advance(FLUSH_DELAY)
    twistd = formatEventAsClassicLogText(
        logged, formatTime=lambda t: formatTime(t, timeFormatRFC3339)
    )
    assert out.getvalue() == (twistd or "")


def test_info_is_written_in_one_piece_per_flush_delay() -> None:
    # Even with PYTHONUNBUFFERED, where every write to stdout is a system call.
    text, out, clock = observer()
    for i in range(100):
        text(event("line {i}", i=i))
        clock.advance(FLUSH_DELAY / 200)  # many reactor turns
    assert (out.writes, out.flushes) == (0, 0)
    clock.advance(FLUSH_DELAY)
    assert (out.writes, out.flushes) == (1, 1)
    assert out.getvalue().count("\n") == 100
    clock.advance(FLUSH_DELAY)
    assert (out.writes, out.flushes) == (1, 1)


def test_a_warning_writes_the_lines_before_it_in_order() -> None:
    text, out, clock = observer()
    text(event("first"))
    text(event("slow consumer", log_level=LogLevel.warn))
    assert out.writes == 1
    assert [line.split("] ")[1] for line in out.getvalue().splitlines()] == [
        "first",
        "slow consumer",
    ]
    clock.advance(FLUSH_DELAY)
    assert out.writes == 1


def test_twistd_takes_it_as_a_new_style_observer() -> None:
    # A legacy observer would be wrapped, and every event converted, by twistd.
    assert verifyObject(ILogObserver, observer()[0])


def test_warnings_and_a_stopped_reactor_flush_at_once() -> None:
    text, out, _ = observer()
    text(event("slow consumer", log_level=LogLevel.warn))
    assert out.flushes == 1
    stopped, out, _ = observer(running=False)
    stopped(event("Main loop terminated."))
    assert out.flushes == 1


def test_twistd_text_on_stdout_gets_the_fast_observer() -> None:
    def chosen(log_format: str = "text", **twistd: object) -> object:
        options = Options()
        options.parseOptions(["--log-format", log_format])
        options.parent = twistd  # twistd's own options, as when run by twistd
        return log_observer(options)

    assert isinstance(chosen(nodaemon=True, logfile=None), TextLogObserver)
    assert isinstance(chosen(nodaemon=True, logfile="-"), TextLogObserver)
    assert chosen(nodaemon=True, logfile="chat.log") is None  # twistd's file and rotation
    assert chosen(nodaemon=False, logfile=None) is None  # a daemon: twistd.log
    assert chosen(nodaemon=True, logfile=None, syslog=True) is None
    assert chosen(nodaemon=True, logfile=None, logger="my.observer") is None
    json = chosen("json", nodaemon=True)
    assert type(json) is type(jsonFileLogObserver(io.StringIO()))


def test_direct_relay_lines_are_the_logged_lines() -> None:
    def lines(relays: type[RelayLog]) -> list[str]:
        out, clock = Output(), Clock()
        text = TextLogObserver(out, clock.callLater, lambda: True, now=lambda: 1_700_000_000.5)
        log = Logger(ChatProtocol.log.namespace, observer=text)
        relay_log = relays(log) if relays is RelayLog else DirectRelayLog(log, text)
        relay_log.mesg("alice", "bob", "held")
        relay_log.delivered("alice", ["bob", "carol"])
        relay_log.bcst("bob", 3)
        clock.advance(FLUSH_DELAY)
        return out.getvalue().splitlines()

    logged, direct = lines(RelayLog), lines(DirectRelayLog)
    # The same lines but for the time, which Logger takes from the clock.
    assert (
        [line.split(" ", 1)[1] for line in direct]
        == [line.split(" ", 1)[1] for line in logged]
        == [
            "[chat.server.protocol.ChatProtocol#info] MESG alice -> bob: held",
            "[chat.server.protocol.ChatProtocol#info] MESG alice -> bob: delivered",
            "[chat.server.protocol.ChatProtocol#info] MESG alice -> carol: delivered",
            "[chat.server.protocol.ChatProtocol#info] BCST from bob reached 3 users",
        ]
    )
    assert direct[0].split(" ", 1)[0] == formatTime(1_700_000_000, timeFormatRFC3339)


def test_relay_lines_bear_the_time_they_were_logged() -> None:
    out, clock, now = Output(), Clock(), [1_700_000_000.9]
    text = TextLogObserver(out, clock.callLater, lambda: True, now=lambda: now[0])
    relay_log = DirectRelayLog(Logger(ChatProtocol.log.namespace, observer=text), text)
    relay_log.mesg("a", "b", "delivered")
    now[0] += 0.2  # the next second, before the flush
    relay_log.mesg("a", "b", "delivered")
    clock.advance(FLUSH_DELAY)
    stamps = [line.split(" ", 1)[0] for line in out.getvalue().splitlines()]
    first, second = (formatTime(t, timeFormatRFC3339) for t in (1_700_000_000, 1_700_000_001))
    assert stamps == [first, second]


# A failed write, and the time of relay lines after a line Twisted formatted


def drain(fd: int) -> bytes:
    """Whatever the pipe holds now (its read end is non-blocking)."""
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


def test_a_log_write_that_fails_once_does_not_stop_the_relay_lines() -> None:
    # Standard output is a pipe that is full for a moment (a log shipper that
    # lags, O_NONBLOCK set by a process sharing it): one write fails.
    read, write = os.pipe()
    for fd in (read, write):
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    clock = Clock()
    with os.fdopen(write, "w") as out, os.fdopen(read, "rb", buffering=0):
        text = TextLogObserver(out, clock.callLater, lambda: True)
        relays = DirectRelayLog(Logger(ChatProtocol.log.namespace, observer=text), text)
        relays.mesg("alice", "bob", "x" * 1_000_000)  # more than the pipe holds
        with pytest.raises(BlockingIOError):
            clock.advance(FLUSH_DELAY)
        drain(read)  # the reader catches up
        for turn in range(3):
            relays.mesg("alice", "bob", f"delivered {turn}")
            clock.advance(FLUSH_DELAY)
        assert b"MESG alice -> bob: delivered 2" in drain(read)


def test_a_log_that_cannot_be_written_does_not_keep_every_line() -> None:
    # Standard output is a pipe whose reader is gone (EPIPE on every write).
    read, write = os.pipe()
    os.close(read)
    clock = Clock()
    out = os.fdopen(write, "w")
    text = TextLogObserver(out, clock.callLater, lambda: True)
    relays = DirectRelayLog(Logger(ChatProtocol.log.namespace, observer=text), text)
    for _ in range(100):  # busy turns: 200 messages each, more than a write buffer
        for _ in range(200):
            relays.mesg("alice", "bob", "delivered")
        with contextlib.suppress(BrokenPipeError):
            clock.advance(FLUSH_DELAY)
    assert len(text._pending) <= 200  # what the observer keeps in memory
    with contextlib.suppress(BrokenPipeError):
        out.close()


def test_relay_lines_after_a_legacy_event_bear_their_own_time() -> None:
    # A legacy log.msg event (twisted.web's access log, for one) is formatted
    # by Twisted; a relay line in the same turn must not take an old time.
    out, clock, now = io.StringIO(), Clock(), [1_700_000_000.5]
    text = TextLogObserver(out, clock.callLater, lambda: True, now=lambda: now[0])
    relays = DirectRelayLog(Logger(ChatProtocol.log.namespace, observer=text), text)
    relays.mesg("alice", "bob", "delivered")
    clock.advance(FLUSH_DELAY)
    now[0] += 3600  # a quiet hour
    text(  # as twisted.python.log.msg("GET / HTTP/1.1") reaches a new-style observer
        {
            "log_format": "{log_text}",
            "log_text": "GET / HTTP/1.1",
            "log_level": LogLevel.info,
            "log_namespace": "log_legacy",
            "log_system": "-",
            "log_time": now[0],
        }
    )
    relays.mesg("alice", "bob", "delivered")
    clock.advance(FLUSH_DELAY)
    stamps = [line.split(" ", 1)[0] for line in out.getvalue().splitlines()]
    hour_later = formatTime(int(now[0]), timeFormatRFC3339)
    assert stamps[1:] == [hour_later, hour_later], out.getvalue()


def test_relay_lines_never_go_back_in_time() -> None:
    """A run, another event a second later, a run: the second run bears the later time."""
    out, clock, now = Output(), Clock(), [1_700_000_000.9]
    text = TextLogObserver(out, clock.callLater, lambda: True, now=lambda: now[0])
    log = Logger(ChatProtocol.log.namespace, observer=text)
    relays = DirectRelayLog(log, text)
    relays.delivered("alice", ["bob"])
    now[0] += 0.2
    log.info("alice listed {count} users", count=3)  # Logger stamps it with time.time()
    relays.delivered("alice", ["bob"])
    clock.advance(FLUSH_DELAY)
    stamps = [line.split(" ", 1)[0] for line in out.getvalue().splitlines()]
    first, second = (formatTime(t, timeFormatRFC3339) for t in (1_700_000_000, 1_700_000_001))
    assert stamps[0] == first and stamps[2] == second, out.getvalue()
