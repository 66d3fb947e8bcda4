"""Tests for the C{twistd chat} options, service and plugin."""

from __future__ import annotations

import signal
from collections.abc import Sequence

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IServiceMaker
from twisted.logger import LogEvent, formatEvent
from twisted.plugin import getPlugins
from twisted.python import usage

from chat.server.logs import DirectRelayLog, RelayLog
from chat.tap import ChatService, Options, makeService


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_defaults() -> None:
    options = parse()
    assert options["port"] == ["tcp:8001"]
    assert options["max-users"] == 10
    assert options["max-line"] == 4096
    assert options["max-outbound"] == 1 << 20


def test_ports_are_repeatable_and_bare_numbers_mean_tcp() -> None:
    options = parse("--port", "8001", "-p", "tcp6:8002", "--port", "unix:/tmp/chat.sock")
    assert options["port"] == ["tcp:8001", "tcp6:8002", "unix:/tmp/chat.sock"]


@pytest.mark.parametrize("option", ["--max-users", "--max-line", "--max-outbound"])
@pytest.mark.parametrize("value", ["0", "-3", "ten"])
def test_limits_must_be_positive_integers(option: str, value: str) -> None:
    with pytest.raises(usage.UsageError):
        parse(option, value)


def test_make_service_listens_on_every_port_with_one_factory() -> None:
    service = makeService(parse("--port", "8001", "--port", "tcp6:8002", "--max-users", "7"))
    assert isinstance(service, ChatService)
    listeners = list(service)
    assert len(listeners) == 2
    assert all(isinstance(child, StreamServerEndpointService) for child in listeners)
    assert {id(child.factory) for child in listeners} == {id(service.factory)}
    assert service.factory.room.capacity == 7


def test_quiet_relays_flag() -> None:
    assert makeService(parse()).factory.relay_log is not None
    assert makeService(parse("--quiet-relays")).factory.relay_log is None


def test_relay_lines_go_straight_to_the_fast_text_observer() -> None:
    def relays(*args: str, **twistd: object) -> RelayLog | None:
        options = parse(*args)
        options.parent = twistd  # twistd's own options, as when run by twistd
        return makeService(options).factory.relay_log

    assert type(relays(nodaemon=True, logfile=None)) is DirectRelayLog
    assert type(relays(nodaemon=True, logfile="chat.log")) is RelayLog
    assert type(relays("--log-format", "json", nodaemon=True)) is RelayLog
    assert relays("--quiet-relays", nodaemon=True) is None


def test_plugin_is_discoverable() -> None:
    makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
    assert makers["chat"].module == "chat.tap"


def test_a_second_stop_signal_during_the_shutdown_stops_nothing_twice(
    logs: Sequence[LogEvent],
) -> None:
    """
    Ctrl-C twice, or a supervisor's SIGTERM and a kill: both handled before
    the reactor stopped used to call reactor.stop twice (ReactorNotRunning,
    a traceback). Two signals cannot be timed for real to reach the handler
    both, so the reactor's stop is counted here instead of made.
    """
    service = makeService(parse())
    stops: list[None] = []
    service._stopReactor = lambda: stops.append(None)  # type: ignore[method-assign]
    service._stopOnSignal(signal.SIGTERM, None)
    service._stopOnSignal(signal.SIGTERM, None)
    service._stopOnSignal(signal.SIGINT, None)
    assert len(stops) == 1
    lines = [formatEvent(event) for event in logs]
    assert lines.count("received SIGTERM, shutting down") == 1
    assert "received SIGTERM, already shutting down" in lines
    assert "received SIGINT, already shutting down" in lines
