"""
Moderation over real sockets: C{python -m chat.passwd} run for real, a real
C{twistd chat --operators FILE --bans FILE}, OPER (wrong and right), KICK,
MUTE, BAN of a name and of an address (a client on 127.0.0.2), the metrics
scraped, and the bans surviving a restart of the server.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pexpect
import pytest
from conftest import StartServer
from test_operations import wait_for_ports

from chat.core.passwords import parse_operators
from chat.tap import Options
from server import REPO_ROOT, Client, server_environment, twistd_executable

PASSWORD = "correct horse battery"


def passwd(*args: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    """Run C{python -m chat.passwd} for real, the password on its standard input."""
    return subprocess.run(
        [sys.executable, "-m", "chat.passwd", *args],
        check=False, input=password + "\n", capture_output=True, text=True, cwd=REPO_ROOT,
        env=server_environment(), timeout=30,
    )  # fmt: skip


@pytest.fixture
def operators(tmp_path: Path) -> Path:
    """An operators file with the line C{python -m chat.passwd root} printed."""
    made = passwd("root")
    assert made.returncode == 0, made.stderr
    path = tmp_path / "operators"
    path.write_text("# name hash, made by python -m chat.passwd\n" + made.stdout)
    return path


def test_passwd_prints_the_line_of_an_operator(operators: Path) -> None:
    (line,) = operators.read_text().splitlines()[1:]
    name, hashed = line.split(" ")
    assert name == "root" and hashed.startswith("scrypt$16384$8$1$")
    assert parse_operators(line)["root"].matches(PASSWORD)
    short = passwd("root", password="short")
    assert short.returncode == 1
    assert "at least 8 characters" in short.stderr and short.stdout == ""
    bad = passwd("not-a-name")
    assert bad.returncode == 2 and "1 to 32 ASCII letters and digits" in bad.stderr


def typed(first: str, second: str) -> pexpect.spawn:
    """C{python -m chat.passwd alice} on a terminal, the password typed twice."""
    child = pexpect.spawn(
        sys.executable, ["-m", "chat.passwd", "alice"], cwd=str(REPO_ROOT),
        env=server_environment(), timeout=30,
    )  # fmt: skip
    child.expect("Password: ")
    child.sendline(first)
    child.expect("Again: ")
    child.sendline(second)
    return child


def test_passwd_reads_a_terminal_without_echo() -> None:
    child = typed("typed password", "typed password")
    child.expect(r"alice (scrypt\$\S+)\r\n")
    hashed = child.match.group(1).decode()
    child.expect(pexpect.EOF)
    assert "typed password" not in child.before.decode()  # never echoed
    assert parse_operators(f"alice {hashed}")["alice"].matches("typed password")
    mismatch = typed("typed password", "another one")
    mismatch.expect("the two passwords differ")
    mismatch.expect(pexpect.EOF)
    mismatch.close()
    assert mismatch.exitstatus == 1


def test_operators_moderate_a_real_server(start_server: StartServer, operators: Path) -> None:
    server = start_server("--operators", str(operators), "--metrics", "tcp:0:interface=127.0.0.1")
    (metrics_port,) = wait_for_ports(server, "Site")
    carol, bob, dave = Client(server.port), Client(server.port), Client(server.port)
    assert Client(server.port).expect_reply("KICK bob", "ERR Unregistered User")
    carol.join("carol")
    bob.join("bob")
    dave.join("dave")
    assert carol.command("KICK bob") == [
        "ERR Not Operator: KICK is for operators; OPER <name> <password> first"
    ]
    # A wrong password: answered late, logged, and the line behind it waits.
    carol.sendline("OPER root wrong password")
    carol.sendline("LIST")
    assert carol.read_line().startswith("ERR Wrong Password: that operator name and password")
    assert carol.read_reply()[-1] == "OK LIST 3"
    server.wait_for_log("failed OPER as 'root' by carol from 127.0.0.1:")
    server.wait_for_log("wrong name or password (1 in a row); answered in 1s")
    assert carol.command(f"OPER root {PASSWORD}") == [
        "OK OPER root: you are an operator now; HELP lists your commands"
    ]
    assert "INFO UNBAN <user or address> (operators) lift a ban" in carol.command("HELP")
    # MUTE: every relay command refused, with the time left.
    assert carol.command("MUTE dave 5 calm down") == ["OK MUTE dave for 5 minutes"]
    assert dave.read_line() == (
        "INFO carol muted you for 5 minutes: calm down. Your MESG, BCST and ME are refused until then."
    )
    for line in ("MESG bob hi", "BCST hi"):
        assert dave.command(line)[0].startswith("ERR Muted: carol muted you for 5 minutes more")
    bob.assert_silent()
    assert carol.command("UNMUTE dave") == ["OK UNMUTE dave"]
    assert dave.read_line() == "INFO carol unmuted you: you may send messages again"
    assert dave.command("MESG bob hi") == ["OK MESG bob delivered"]
    assert bob.read_line() == "MESG dave: hi"
    # KICK.
    assert carol.command("KICK bob enough") == ["OK KICK bob disconnected"]
    assert bob.read_line() == "BYE Kicked: carol disconnected you: enough"
    bob.expect_eof()
    # BAN of a name: the user online is disconnected, and refused at JOIN.
    assert carol.command("BAN dave 10 spam") == [
        "OK BAN dave for 10 minutes (1 connections closed)"
    ]
    assert dave.read_line() == "BYE Banned: carol banned you for 10 minutes: spam"
    dave.expect_eof()
    assert Client(server.port).command("JOIN DAVE") == [
        "ERR Banned: the name dave is banned for 10 minutes more by carol: spam"
    ]
    # BAN of an address: refused at connect.
    elsewhere = Client(server.port, source="127.0.0.2")
    elsewhere.join("erin")
    assert carol.command("BAN 127.0.0.2 10") == [
        "OK BAN 127.0.0.2 for 10 minutes (1 connections closed)"
    ]
    assert elsewhere.read_line() == "BYE Banned: carol banned you for 10 minutes; no reason given"
    elsewhere.expect_eof()
    refused = Client(server.port, greeting=False, source="127.0.0.2")
    assert refused.read_line() == (
        "BYE Banned: connections from 127.0.0.2 are banned for 10 minutes more by carol; "
        "no reason given"
    )
    refused.expect_eof()
    server.wait_for_log("refused connection from 127.0.0.2:")
    for fragment in ("carol (operator root) muted dave for 5 minutes: calm down",
                     "carol (operator root) kicked bob: enough",
                     "carol (operator root) banned dave for 10 minutes: spam",
                     "refused JOIN 'DAVE' from 127.0.0.1:"):  # fmt: skip
        server.wait_for_log(fragment)
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read()
    samples = text.decode().splitlines()
    for sample in ('chat_moderation_total{action="oper_failed"} 1.0',
                   'chat_moderation_total{action="oper"} 1.0',
                   'chat_moderation_total{action="denied"} 1.0',
                   'chat_moderation_total{action="mute"} 1.0',
                   'chat_moderation_total{action="refused_muted"} 2.0',
                   'chat_moderation_total{action="kick"} 1.0',
                   'chat_moderation_total{action="ban"} 2.0',
                   'chat_moderation_total{action="refused_join"} 1.0',
                   'chat_moderation_total{action="refused_address"} 1.0'):  # fmt: skip
        assert sample in samples, (sample, text)


def test_bans_survive_a_restart(start_server: StartServer, operators: Path, tmp_path: Path) -> None:
    bans = tmp_path / "bans"
    options = ("--operators", str(operators), "--bans", str(bans))
    first = start_server(*options)
    carol = Client(first.port)
    carol.join("carol")
    carol.expect_reply(f"OPER root {PASSWORD}", "OK OPER root")
    carol.expect_reply("BAN mallory 60 spam", "OK BAN mallory")
    carol.expect_reply("BAN 127.0.0.2 60", "OK BAN 127.0.0.2")
    carol.expect_reply("BAN trent 60", "OK BAN trent")
    carol.expect_reply("UNBAN trent", "OK UNBAN trent")
    carol.close()
    assert first.stop() == 0
    assert bans.read_text().splitlines()[0] == "chat-bans 1"
    second = start_server(*options)
    assert Client(second.port).command("JOIN Mallory") == [
        "ERR Banned: the name mallory is banned for 60 minutes more by carol: spam"
    ]
    refused = Client(second.port, greeting=False, source="127.0.0.2")
    assert refused.read_line().startswith("BYE Banned: connections from 127.0.0.2 are banned")
    Client(second.port).join("trent")


def assert_usage_error(*args: str, match: str) -> None:
    with pytest.raises(Exception, match=match):
        Options().parseOptions(list(args))


def test_bad_files_stop_the_server_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("root not-a-hash\n")
    assert_usage_error("--operators", str(bad), match="line 1: not a scrypt")
    assert_usage_error("--operators", str(tmp_path / "missing"), match="cannot read")
    assert_usage_error("--bans", str(bad), match="the first line is not 'chat-bans 1'")
    assert_usage_error(
        "--bans", str(bad), "--redis", "redis://127.0.0.1:1/0", match="keeps its bans in Redis"
    )
    # For real: twistd says why and does not start.
    ran = subprocess.run(
        [twistd_executable(), "-n", "--pidfile=", "chat", "--operators", str(bad)],
        check=False, capture_output=True, text=True, cwd=REPO_ROOT, env=server_environment(),
        timeout=60,
    )  # fmt: skip
    assert ran.returncode != 0
    assert "line 1: not a scrypt" in ran.stdout + ran.stderr
