"""
Edit mode (issue 17) against a real twistd: a raw socket that negotiates as
the telnet program does, C{nc} that does not (and sees no negotiation byte
unless it types MODE EDIT), and the real C{telnet} program in a real
terminal (tmux: send-keys, capture-pane).

A missing program is a failure, not a skip (C{sh tests/run.sh} installs
them): these tests are the only proof that edit mode works with them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path

import pytest
from test_cluster import Nodes, nodes, redis  # noqa: F401  (fixtures)

from server import ChatServer, Client

pytestmark = pytest.mark.usefixtures("time_limit")

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
ECHO, SGA, NAWS = 1, 3, 31
OFFER = bytes((IAC, WILL, ECHO, IAC, WILL, SGA, IAC, DO, NAWS))
AGREE = bytes((IAC, DO, ECHO, IAC, DO, SGA, IAC, WILL, NAWS))
GIVE_BACK = bytes((IAC, WONT, ECHO, IAC, WONT, SGA))
WAIT = 5.0
"""Seconds a screen may take to show what a test waits for."""
_sessions = count()


def program(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (apt-get install {package}; or sh tests/run.sh)")
    return path


def read_until(client: Client, needle: bytes) -> bytes:
    """Raw bytes up to and including C{needle}, taken from the client's buffer."""
    deadline = time.monotonic() + client.timeout
    while needle not in client.buffer:
        if not client.fill(deadline):
            raise EOFError(f"closed before {needle!r}: {client.buffer!r}")
    end = client.buffer.index(needle) + len(needle)
    got, client.buffer = client.buffer[:end], client.buffer[end:]
    return got


# A raw socket that negotiates like telnet


def test_a_socket_that_negotiates_gets_the_screen(server: ChatServer) -> None:
    bob, alice = Client(server.port), Client(server.port)
    bob.join("bob")
    alice.join("alice")  # after bob: no notice of bob's arrival on alice's screen
    alice.sendline("MODE EDIT")
    alice.expect_bytes(OFFER)
    # The answers of telnet, split as a slow network might.
    naws = bytes((IAC, SB, NAWS, 0, 60, 0, 24, IAC, SE))
    for piece in (AGREE[:4], AGREE[4:] + naws[:3], naws[3:]):
        alice.send(piece)
        time.sleep(0.02)
    assert read_until(alice, b"alice> \r\x1b[7C").startswith(
        b"\r\x1b[KOK MODE EDIT plain: the server echoes and edits your line"
    )
    alice.send(b"BCST half a li")
    read_until(alice, b"alice> BCST half a li\r\x1b[21C")
    bob.command("BCST hello alice")
    assert read_until(alice, b"\r\x1b[21C") == (
        b"\r\x1b[KBCST bob: hello alice\r\n\r\x1b[Kalice> BCST half a li\r\x1b[21C"
    )
    alice.send(b"ne\r")
    read_until(alice, b"OK BCST 1\r\n")
    assert bob.read_line() == "BCST alice: half a line"
    alice.send(b"\x1b[A")  # Up
    read_until(alice, b"alice> BCST half a line\r\x1b[23C")
    alice.send(b"\x15QUIT\r")
    assert read_until(alice, GIVE_BACK).endswith(b"\r\x1b[K" + GIVE_BACK)
    alice.expect_eof()
    server.wait_for_log("alice turned edit mode on (plain)")


def test_a_socket_that_does_not_answer_keeps_line_mode(server: ChatServer) -> None:
    quiet = Client(server.port)
    quiet.join("quiet")
    quiet.sendline("MODE EDIT")
    quiet.sendline("LIST")
    quiet.expect_bytes(OFFER)
    assert quiet.read_line(timeout=WAIT).startswith("ERR Not A Terminal: your client did not")
    assert quiet.read_reply() == ["USER quiet", "OK LIST 1"]
    server.wait_for_log("quiet did not agree to edit mode (timeout)")


def negotiated(port: int, name: str) -> Client:
    """A raw socket registered as C{name}, in edit mode as telnet agrees to it."""
    client = Client(port)
    client.join(name)
    client.sendline("MODE EDIT")
    client.expect_bytes(OFFER)
    client.send(AGREE)
    read_until(client, f"{name}> \r\x1b[{len(name) + 2}C".encode())
    return client


def test_hostile_negotiation_and_keys_cost_nothing(server: ChatServer) -> None:
    """
    A subnegotiation that never ends, a flood of escape sequences and
    control keys, a line past --max-line: the row stays bounded, the server
    answers, and the others see nothing of it.
    """
    bob = Client(server.port)
    bob.join("bob")
    mallory = negotiated(server.port, "mallory")
    mallory.send(bytes((IAC, SB, NAWS)) + b"\x00" * 100_000 + bytes((IAC, SE)))
    mallory.send(b"\x1b[" + b"9" * 5000 + b"\x1b]0;x\x07\x00\x05\x1bO" * 500)
    mallory.send(b"BCST " + b"y" * 5000)  # --max-line is 4096: refused with bells
    screen = read_until(mallory, b"\r\x1b[78C")
    assert b"\x07" in screen
    mallory.send(b"\x15BCST still here\r")
    read_until(mallory, b"OK BCST 1\r\n")
    assert bob.read_line() == "BCST mallory: still here"


def test_tab_completes_a_name_of_another_node(nodes: Nodes) -> None:  # noqa: F811  (fixture)
    """In a cluster, Tab completes the names of the node's replica: every node's users."""
    first, second = nodes(2)
    carol = Client(second.port)
    carol.join("carol")
    alice = negotiated(first.port, "alice")
    deadline = time.monotonic() + WAIT
    while True:  # the replica learns of carol by an event from Redis
        alice.send(b"\x15MESG c\t")
        screen = read_until(alice, b"\r\x1b[")
        if b"MESG carol " in screen:
            break
        assert time.monotonic() < deadline, screen
        time.sleep(0.1)
    alice.send(b"hi\r")
    assert carol.read_line() == "MESG alice: hi"


# nc: no negotiation byte, ever, unless it asks


@pytest.fixture
def nc() -> str:
    return shutil.which("nc.openbsd") or program("nc", "netcat-openbsd")


def run_nc(nc: str, server: ChatServer, script: bytes) -> bytes:
    done = subprocess.run(
        [nc, "-N", "127.0.0.1", str(server.port)],
        input=script,
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_nc_sees_no_negotiation_bytes(nc: str, server: ChatServer) -> None:
    """Next to a user in edit mode, nc's bytes are what they always were."""
    editor = Client(server.port)
    editor.join("ed")
    editor.sendline("MODE EDIT TIME BELL COLOR")
    editor.expect_bytes(OFFER)
    editor.send(AGREE)
    read_until(editor, b"ed> ")
    out = run_nc(nc, server, b"JOIN netcat\nLIST\nBCST hi ed\nMESG ed hello\nQUIT\n")
    assert b"\xff" not in out and b"\x1b" not in out and b"\x07" not in out
    assert out.split(b"\r\n")[2:] == [
        b"OK JOIN netcat 2/10",
        b"USER ed",
        b"USER netcat",
        b"OK LIST 2",
        b"OK BCST 1",
        b"OK MESG ed delivered",
        b"OK QUIT Bye",
        b"",
    ]


def test_nc_typing_mode_edit_sees_the_offer_and_an_error(nc: str, server: ChatServer) -> None:
    out = run_nc(nc, server, b"JOIN netcat\nMODE EDIT\nLIST\n")
    lines = out.split(b"\r\n")[2:]
    assert lines[0] == b"OK JOIN netcat 1/10"
    assert lines[1].startswith(OFFER + b"ERR Not A Terminal: ")
    assert lines[2:] == [b"USER netcat", b"OK LIST 1", b""]
    assert out.count(b"\xff") == 3


# The real telnet program in a real terminal (tmux)


class Pane:
    """A tmux server of its own (C{-L}), one window running C{telnet}."""

    def __init__(self, tmux: str, command: str, columns: int = 80, rows: int = 24) -> None:
        self.name = f"chat-edit-{os.getpid()}-{next(_sessions)}"
        self.tmux = [tmux, "-L", self.name, "-f", "/dev/null"]
        # The pane stays once telnet has exited, to be read.
        self.run(
            "new-session",
            "-d",
            "-x",
            str(columns),
            "-y",
            str(rows),
            command,
            ";",
            "set-option",
            "-g",
            "remain-on-exit",
            "on",
        )

    def run(self, *args: str) -> str:
        return subprocess.run(
            [*self.tmux, *args], check=True, capture_output=True, text=True, timeout=10
        ).stdout

    def keys(self, *keys: str) -> None:
        self.run("send-keys", *keys)

    def screen(self) -> list[str]:
        return self.run("capture-pane", "-p").rstrip("\n").split("\n")

    def wait(self, predicate: Callable[[list[str]], bool]) -> list[str]:
        """The screen, once C{predicate} holds for it (polled: a terminal has no events)."""
        deadline = time.monotonic() + WAIT
        while True:
            screen = self.screen()
            if predicate(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError("the screen never showed it:\n" + "\n".join(screen))
            time.sleep(0.05)

    def kill(self) -> None:
        """Stop this pane's own tmux server, and remove its socket, which tmux leaves."""
        subprocess.run([*self.tmux, "kill-server"], check=False, capture_output=True, timeout=10)
        sockets = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (sockets / self.name).unlink(missing_ok=True)


@pytest.fixture
def telnet_pane(server: ChatServer) -> Iterator[Callable[..., Pane]]:
    tmux = program("tmux", "tmux")
    telnet = program("telnet", "telnet")
    panes: list[Pane] = []

    def open_pane(columns: int = 80, rows: int = 24) -> Pane:
        pane = Pane(tmux, f"{telnet} 127.0.0.1 {server.port}", columns, rows)
        panes.append(pane)
        pane.wait(lambda screen: any(line.startswith("INFO Usernames") for line in screen))
        return pane

    yield open_pane
    for pane in panes:
        pane.kill()


def test_telnet_in_edit_mode(telnet_pane: Callable[..., Pane], server: ChatServer) -> None:
    """
    The issue's scenario with the real telnet: half a line typed, a broadcast
    arrives above it, the half line intact below; Up, Tab, a resize.
    """
    pane = telnet_pane()
    pane.keys("JOIN alice", "Enter")
    pane.wait(lambda screen: "OK JOIN alice 1/10" in screen)
    pane.keys("MODE EDIT", "Enter")
    pane.wait(lambda screen: screen[-1] == "alice>" and "OK MODE EDIT" in screen[-2])
    bob = Client(server.port)
    bob.join("bob")
    pane.keys("BCST half a li")
    pane.wait(lambda screen: screen[-1] == "alice> BCST half a li")
    bob.command("BCST hello alice")
    screen = pane.wait(lambda screen: "BCST bob: hello alice" in screen)
    assert screen[-2:] == ["BCST bob: hello alice", "alice> BCST half a li"]
    pane.keys("ne", "Enter")
    assert bob.read_line() == "BCST alice: half a line"
    screen = pane.wait(lambda screen: screen[-1] == "alice>")
    assert screen[-3:] == ["alice> BCST half a line", "OK BCST 1", "alice>"]
    pane.keys("Up")
    pane.wait(lambda screen: screen[-1] == "alice> BCST half a line")
    pane.keys("C-u", "MESG b", "Tab")
    pane.wait(lambda screen: screen[-1] == "alice> MESG bob")
    pane.keys("hi", "Enter")
    assert bob.read_line() == "MESG alice: hi"
    # A long line scrolls sideways in one row; a narrower window redraws it whole.
    pane.keys("BCST " + "0123456789" * 9)
    screen = pane.wait(lambda screen: screen[-1].endswith("0123456789"))
    assert screen[-1].startswith("alice> ") and len(screen[-1]) == 78  # the cursor in 79
    pane.run("resize-window", "-x", "50", "-y", "20")
    screen = pane.wait(lambda screen: len(screen[-1]) == 48)
    assert screen[-1].startswith("alice> ") and screen[-1].endswith("0123456789")
    assert not any("0123456789" in line for line in screen[:-1]), screen
    pane.keys("C-u", "QUIT", "Enter")
    pane.wait(lambda screen: "Connection closed by foreign host." in screen)
