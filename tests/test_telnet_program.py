"""
The promise of the project: the real C{telnet} program is a usable client.

Driving C{telnet} through a pseudo-terminal checks what raw sockets cannot:
its option negotiation, its line discipline, and its Ctrl-C (C{IAC IP} then
C{IAC DO TIMING-MARK}: a server that never answers the mark leaves telnet
discarding everything it receives).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator

import pexpect
import pytest

from server import ChatServer

pytestmark = pytest.mark.usefixtures("time_limit")

TIMEOUT = 5


@pytest.fixture
def telnet_program() -> str:
    """
    The C{telnet} executable; missing is a failure, not a skip, because this
    test is the only proof that the server works with it.
    """
    path = shutil.which("telnet")
    if path is None:
        pytest.fail("the telnet program is not installed (apt-get install telnet)")
    return path


@pytest.fixture
def open_telnet(telnet_program: str, server: ChatServer) -> Iterator[Callable[[], pexpect.spawn]]:
    """Spawns telnet sessions to the server; kills any left at teardown."""
    sessions: list[pexpect.spawn] = []

    def spawn() -> pexpect.spawn:
        session = pexpect.spawn(
            telnet_program,
            ["127.0.0.1", str(server.port)],
            timeout=TIMEOUT,
            encoding="utf-8",
            codec_errors="replace",
            dimensions=(24, 200),
        )
        sessions.append(session)
        session.expect_exact("Escape character is '^]'.")
        session.expect_exact("INFO Welcome to chat. Register with: JOIN <username>")
        session.expect_exact("INFO Usernames are ")
        return session

    yield spawn
    for session in sessions:
        if session.isalive():
            session.terminate(force=True)
        session.close()


def test_two_telnet_sessions_chat(
    open_telnet: Callable[[], pexpect.spawn], server: ChatServer
) -> None:
    """Join, message each other, list, Ctrl-C, quit: all through real telnet."""
    alice = open_telnet()
    bob = open_telnet()

    alice.sendline("JOIN alice")
    alice.expect_exact("OK JOIN alice 1/10\r\n")
    bob.sendline("join Bob")
    bob.expect_exact("OK JOIN Bob 2/10\r\n")

    alice.sendline("MESG bob hello from telnet")
    alice.expect_exact("OK MESG Bob delivered\r\n")
    bob.expect_exact("MESG alice: hello from telnet\r\n")
    bob.sendline("MESG alice hi alice")
    bob.expect_exact("OK MESG alice delivered\r\n")
    alice.expect_exact("MESG Bob: hi alice\r\n")

    bob.sendline("BCST everyone")
    bob.expect_exact("OK BCST 1\r\n")
    alice.expect_exact("BCST Bob: everyone\r\n")

    alice.sendline("LIST")
    alice.expect(re.compile(r"USER alice\r\nUSER Bob\r\nOK LIST 2\r\n"))

    # Ctrl-C sends IAC IP IAC DO TIMING-MARK; output must keep flowing.
    bob.sendcontrol("c")
    bob.sendline("LIST")
    bob.expect(re.compile(r"USER alice\r\nUSER Bob\r\nOK LIST 2\r\n"))

    alice.sendline("QUIT")
    alice.expect_exact("OK QUIT Bye\r\n")
    alice.expect_exact("Connection closed by foreign host.")
    alice.expect(pexpect.EOF)

    bob.sendline("LIST")
    bob.expect(re.compile(r"USER Bob\r\nOK LIST 1\r\n"))
    bob.sendline("quit")
    bob.expect_exact("OK QUIT Bye\r\n")
    bob.expect_exact("Connection closed by foreign host.")
    bob.expect(pexpect.EOF)
    server.wait_for_log("Bob quit (0/10 users)")


def test_telnet_in_character_mode(
    open_telnet: Callable[[], pexpect.spawn], server: ChatServer
) -> None:
    """
    In character mode telnet sends each key as it is pressed: Backspace (the
    terminal's erase character), the cursor keys' escape sequences and the
    Enter key (CR NUL or CR LF) arrive as they are, and must edit the line
    as the terminal showed it.
    """
    typist, reader = open_telnet(), open_telnet()
    reader.sendline("JOIN reader")
    reader.expect_exact("OK JOIN reader 1/10\r\n")
    typist.sendcontrol("]")
    typist.expect_exact("telnet> ")
    typist.sendline("mode character")
    typist.send("JOIN typistx\x7f\r")  # DEL: the erase character of the pty
    typist.expect_exact("OK JOIN typist 2/10\r\n")
    typist.send("BCST hel\x1b[D\x1b[Clo\r")  # Left, Right: removed whole
    typist.expect_exact("OK BCST 1\r\n")
    reader.expect_exact("BCST typist: hello\r\n")
    typist.send("QUIT\r")
    typist.expect_exact("OK QUIT Bye\r\n")
    typist.expect(pexpect.EOF)
