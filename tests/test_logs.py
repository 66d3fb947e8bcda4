"""Tests for L{chat.logs.TextLogObserver}: twistd's lines, cheaper."""

from __future__ import annotations

import io
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

from chat.logs import DirectRelayLog, RelayLog, TextLogObserver
from chat.protocol import ChatProtocol
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
        "log_namespace": "chat.protocol.ChatProtocol",
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
    clock.advance(0)
    twistd = formatEventAsClassicLogText(
        logged, formatTime=lambda t: formatTime(t, timeFormatRFC3339)
    )
    assert out.getvalue() == (twistd or "")


def test_info_is_written_once_per_reactor_turn() -> None:
    # Even with PYTHONUNBUFFERED, where every write to stdout is a system call.
    text, out, clock = observer()
    for i in range(100):
        text(event("line {i}", i=i))
    assert (out.writes, out.flushes) == (0, 0)
    clock.advance(0)
    assert (out.writes, out.flushes) == (1, 1)
    assert out.getvalue().count("\n") == 100
    clock.advance(0)
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
    clock.advance(0)
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
        relay_log.mesg("alice", "bob", "delivered")
        relay_log.bcst("bob", 3)
        clock.advance(0)
        return out.getvalue().splitlines()

    logged, direct = lines(RelayLog), lines(DirectRelayLog)
    # The same lines but for the time, which Logger takes from the clock.
    assert (
        [line.split(" ", 1)[1] for line in direct]
        == [line.split(" ", 1)[1] for line in logged]
        == [
            "[chat.protocol.ChatProtocol#info] MESG alice -> bob: delivered",
            "[chat.protocol.ChatProtocol#info] BCST from bob reached 3 users",
        ]
    )
    assert direct[0].split(" ", 1)[0] == formatTime(1_700_000_000, timeFormatRFC3339)


def test_relay_lines_bear_the_time_of_their_turn() -> None:
    out, clock, now = Output(), Clock(), [1_700_000_000.9]
    text = TextLogObserver(out, clock.callLater, lambda: True, now=lambda: now[0])
    relay_log = DirectRelayLog(Logger(ChatProtocol.log.namespace, observer=text), text)
    relay_log.mesg("a", "b", "delivered")
    now[0] += 0.2  # a long turn: the second has changed
    relay_log.mesg("a", "b", "delivered")
    clock.advance(0)
    relay_log.mesg("a", "b", "delivered")
    clock.advance(0)
    stamps = [line.split(" ", 1)[0] for line in out.getvalue().splitlines()]
    first, second = (formatTime(t, timeFormatRFC3339) for t in (1_700_000_000, 1_700_000_001))
    assert stamps == [first, first, second]
