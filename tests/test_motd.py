"""
The message of the day (C{--motd FILE}): its lines, its bound, the option,
the greeting, and the re-read on SIGHUP, in a real C{twistd chat} too.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import StartServer
from twisted.internet.task import Clock
from twisted.logger import LogEvent
from twisted.python import usage

from chat.core import grammar
from chat.core.limits import Limits
from chat.core.motd import MAX_BYTES, MotdTooLarge, motd_lines
from chat.server.factory import ChatFactory
from chat.server.motd import MessageOfTheDay
from chat.tap import Options
from harness import GREETING, Client, logged
from server import REPO_ROOT, server_environment, twistd_executable
from server import Client as SocketClient


def test_each_line_is_an_info_line_cleaned_as_user_text() -> None:
    data = b"\xef\xbb\xbf\n\nWelcome!\r\n\n  Rules: \x1b[31mbe kind\x07\nBye \xff\n\n"
    assert motd_lines(data) == (
        b"INFO Welcome!\r\nINFO \r\nINFO Rules: [31mbe kind\r\nINFO Bye \xef\xbf\xbd\r\n"
    )


def test_an_empty_file_has_no_lines() -> None:
    assert motd_lines(b"") == motd_lines(b"\n\n  \n") == b""


def test_the_size_is_bounded() -> None:
    assert motd_lines(b"x" * MAX_BYTES) == b"INFO " + b"x" * MAX_BYTES + b"\r\n"
    with pytest.raises(MotdTooLarge, match=f"more than {MAX_BYTES} bytes"):
        motd_lines(b"x" * (MAX_BYTES + 1))


def test_the_motd_follows_the_greeting_of_new_connections(clock: Clock) -> None:
    factory = ChatFactory(limits=Limits(rate=0), clock=clock, motd=motd_lines(b"Hello\nWorld"))
    first = Client(factory, 1)
    assert first.lines() == [*GREETING, "INFO Hello", "INFO World"]
    factory.setMotd(motd_lines(b"Changed"))
    assert Client(factory, 2).lines() == [*GREETING, "INFO Changed"]
    assert first.send("JOIN alice") == ["OK JOIN alice 1/10"]  # nobody was dropped


def test_reload_keeps_the_old_message_when_the_file_is_gone_or_too_large(
    clock: Clock, tmp_path: Path, logs: Sequence[LogEvent]
) -> None:
    path = tmp_path / "motd"
    path.write_text("first")
    factory = ChatFactory(clock=clock, motd=motd_lines(b"first"))
    motd = MessageOfTheDay(str(path), factory)
    path.write_text("second")
    motd.reload()
    assert factory.motd == b"INFO second\r\n"
    assert logged(logs, f"reloaded the message of the day from {path}: 1 lines")
    path.write_bytes(b"x" * (MAX_BYTES + 1))
    motd.reload()
    assert factory.motd == b"INFO second\r\n"
    assert logged(logs, "could not reload", f"more than {MAX_BYTES} bytes", "the old one is kept")
    path.unlink()
    motd.reload()
    assert factory.motd == b"INFO second\r\n"
    assert logged(logs, "could not reload", "No such file", "the old one is kept")


def test_the_option_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "motd"
    path.write_text("Be nice.\n")
    options = Options()
    options.parseOptions(["--motd", str(path)])
    assert options["motd-lines"] == b"INFO Be nice.\r\n"
    options = Options()
    options.parseOptions([])
    assert options["motd-lines"] == b""


def test_a_missing_or_huge_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(usage.UsageError, match="--motd .*missing: .*No such file"):
        Options().parseOptions(["--motd", str(tmp_path / "missing")])
    huge = tmp_path / "huge"
    huge.write_bytes(b"x\n" * MAX_BYTES)
    with pytest.raises(usage.UsageError, match=f"--motd .*huge: more than {MAX_BYTES} bytes"):
        Options().parseOptions(["--motd", str(huge)])


# A real twistd


HELP_LINES = grammar.help_text(resume=False).count(b"\r\n")


def greeted(port: int) -> tuple[SocketClient, list[str]]:
    """A client and every line of its greeting (those before the answer to a HELP)."""
    client = SocketClient(port, greeting=False)
    return client, client.command("HELP")[: -HELP_LINES - 1]


@pytest.mark.usefixtures("time_limit")
def test_sighup_rereads_the_motd_without_dropping_anyone(
    start_server: StartServer, tmp_path: Path
) -> None:
    path = tmp_path / "motd"
    path.write_text("Welcome to the test server.\nBe kind.\n")
    server = start_server("--motd", str(path))
    alice, lines = greeted(server.port)
    assert lines == [*GREETING, "INFO Welcome to the test server.", "INFO Be kind."]
    alice.join("alice")

    path.write_text("Maintenance at midnight.\n")
    os.kill(server.pid, signal.SIGHUP)
    server.wait_for_log(f"reloaded the message of the day from {path}: 1 lines")
    assert greeted(server.port)[1] == [*GREETING, "INFO Maintenance at midnight."]
    assert alice.list_names() == ["alice"]  # still here

    path.unlink()
    os.kill(server.pid, signal.SIGHUP)
    server.wait_for_log("could not reload the message of the day")
    assert greeted(server.port)[1] == [*GREETING, "INFO Maintenance at midnight."]

    path.write_bytes(b"x" * (MAX_BYTES + 1))
    os.kill(server.pid, signal.SIGHUP)
    server.wait_for_log(f"more than {MAX_BYTES} bytes; a message of the day is at most that")
    assert greeted(server.port)[1] == [*GREETING, "INFO Maintenance at midnight."]
    assert alice.list_names() == ["alice"]


def test_a_missing_motd_stops_the_server_at_startup(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    done = subprocess.run(
        [twistd_executable(), "-n", "--pidfile=", "chat", "--port", "tcp:0", "--motd", str(missing)],
        cwd=REPO_ROOT, env=server_environment(), capture_output=True, text=True, timeout=30,
        check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert f"--motd {missing}: [Errno 2] No such file or directory" in done.stdout + done.stderr
