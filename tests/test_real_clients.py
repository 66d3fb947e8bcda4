"""
What real clients send, over real sockets: scripts, terminals, dropped links.

People reach the server with whatever they have: C{nc -N} fed a script (it
half-closes when the script ends), C{socat} on a raw terminal (Enter sends a
bare CR), a terminal's cursor keys and Backspace, an editor's byte order
mark, a last line without its line end, a connection that just drops. Each
test drives the real program, or sends the exact bytes such a client sends.
A missing program is a failure, not a skip: these tests are the only proof
that the server works with it (C{sh tests/run.sh} installs them).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pexpect
import pytest
from conftest import StartServer

from server import CRLF, ChatServer, Client, poll_until_gone, take_lines

pytestmark = pytest.mark.usefixtures("time_limit")

SCRIPT_TIMEOUT = 20
"""Seconds a script may take: 52 lines at the default flood pace take about 4."""

HINT_WAIT = 5.0
"""The line-end hint comes after about 2 s of quiet; this is the most we wait."""

TRANSIENT = ("ERR Username Taken", "ERR Too Many Users")
"""Refusals that last only until the server has seen a dropped connection."""


# Programs


def program(name: str, package: str) -> str:
    """The path of C{name}; missing is a test failure that says what to install."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (apt-get install {package}; or sh tests/run.sh)")
    return path


@pytest.fixture
def nc() -> str:
    """OpenBSD netcat, the one with C{-N}; another C{nc} may own the name."""
    if path := shutil.which("nc.openbsd"):
        return path
    path = program("nc", "netcat-openbsd")
    usage = subprocess.run(
        [path, "-h"], check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ).stdout
    if "-N" not in usage:
        pytest.fail(f"{path} has no -N (apt-get install netcat-openbsd)")
    return path


@pytest.fixture
def open_socat(server: ChatServer) -> Iterator[Callable[[], pexpect.spawn]]:
    """Spawns C{socat} on a raw pseudo-terminal to the server; closed at teardown."""
    socat = program("socat", "socat")
    sessions: list[pexpect.spawn] = []

    def spawn() -> pexpect.spawn:
        session = pexpect.spawn(
            socat,
            ["STDIO,raw,echo=0", f"TCP:127.0.0.1:{server.port}"],
            timeout=5,
            encoding="utf-8",
        )
        sessions.append(session)
        # Once the greeting shows, socat has made the terminal raw: Enter is CR.
        session.expect_exact("INFO Welcome")
        return session

    yield spawn
    for session in sessions:
        session.terminate(force=True)
        session.close()


def run_nc(nc: str, server: ChatServer, script: bytes) -> list[str]:
    """
    C{nc -N} with C{script} as input: everything the server sent until it
    closed the connection, without the greeting.
    """
    done = subprocess.run(
        [nc, "-N", "127.0.0.1", str(server.port)],
        input=script,
        capture_output=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,  # the assertion below shows what nc said
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout.decode("utf-8")
    assert output.endswith("\r\n"), f"unfinished last line: {output[-200:]!r}"
    lines = output.removesuffix("\r\n").split("\r\n")
    assert lines[0].startswith("INFO Welcome") and lines[1].startswith("INFO Usernames"), lines
    return lines[2:]


# Client helpers


def joined(server: ChatServer, *names: str) -> list[Client]:
    """A client registered under each of C{names}, in order."""
    clients = [Client(server.port) for _ in names]
    for client, name in zip(clients, names, strict=True):
        client.join(name)
    return clients


def lines_until_eof(client: Client) -> list[str]:
    """Every line the server sends until it closes the connection."""
    deadline = time.monotonic() + SCRIPT_TIMEOUT
    while client.fill(deadline):
        pass
    lines = take_lines(client)
    assert client.buffer == b"", f"unfinished last line: {client.buffer!r}"
    return lines


def join_when_free(client: Client, line: str, within: float = 3.0) -> str:
    """
    Send C{line} (a JOIN) until it is not refused for a name or a seat that a
    dropped connection still holds; its one-line answer.

    The server learns of a drop asynchronously, so a JOIN sent right after it
    may be refused; a name held for a grace period stays refused far longer.
    """
    deadline = time.monotonic() + within
    while True:
        [answer] = client.command(line)
        if not answer.startswith(TRANSIENT) or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


# 1. nc -N with a script


@pytest.mark.parametrize(
    ("ending", "last"), [(["QUIT"], ["OK QUIT Bye"]), ([], [])], ids=["quit", "no-quit"]
)
def test_nc_script_gets_every_answer(
    nc: str, server: ChatServer, ending: list[str], last: list[str]
) -> None:
    """
    A script piped into C{nc -N}, longer than the flood-control burst: nc
    half-closes when the script ends, and every line still gets its answer,
    at the flood pace, before the server closes; with or without a QUIT, the
    name is free once nc has exited.
    """
    [reader] = joined(server, "reader")
    count = 50
    script = ["JOIN scripter", *(f"BCST line {n}" for n in range(count)), *ending]
    answers = run_nc(nc, server, "".join(f"{line}\n" for line in script).encode())

    assert answers[0].startswith("OK JOIN scripter "), answers[:3]
    assert answers[1:] == ["OK BCST 1"] * count + last, (
        f"{answers.count('OK BCST 1')} of {count} OK BCST, then {answers[-1]!r}"
    )
    assert [reader.read_line() for _ in range(count)] == [
        f"BCST scripter: line {n}" for n in range(count)
    ]
    joined(server, "scripter")


# 2. The last line without a line end


def test_nc_last_line_without_line_end(nc: str, server: ChatServer) -> None:
    """C{printf 'JOIN x\\nLIST' | nc -N}: the unterminated LIST is answered, then the close."""
    answers = run_nc(nc, server, b"JOIN x\nLIST")
    assert answers[0].startswith("OK JOIN x "), answers
    assert answers[1:] == ["USER x", "OK LIST 1"]


def test_socket_last_line_without_line_end(server: ChatServer) -> None:
    """A script's socket that sends its last line bare and then C{shutdown(SHUT_WR)}."""
    client = Client(server.port)
    client.send(b"JOIN y\r\nLIST")
    client.sock.shutdown(socket.SHUT_WR)
    answers = lines_until_eof(client)
    assert answers[0].startswith("OK JOIN y "), answers
    assert answers[1:] == ["USER y", "OK LIST 1"]


# 3. A bare CR ends a line


def test_socat_on_a_raw_terminal(open_socat: Callable[[], pexpect.spawn]) -> None:
    """C{socat STDIO,raw} at a terminal: Enter sends a bare CR, which ends the command."""
    session = open_socat()
    session.send("JOIN sam\r")
    session.expect_exact("OK JOIN sam")
    session.send("LIST\r")
    session.expect_exact("USER sam")
    session.expect_exact("OK LIST 1")


def test_bare_cr_is_answered_at_once(server: ChatServer) -> None:
    """A client that ends its line with CR alone and waits gets its answer, not the hint."""
    client = Client(server.port)
    client.send(b"JOIN cr\r")
    line = client.read_line(timeout=1.5)
    assert line.startswith("OK JOIN cr "), line


@pytest.mark.parametrize("byte_by_byte", [False, True], ids=["one-write", "byte-by-byte"])
def test_cr_lf_and_cr_nul_are_one_line_end_each(server: ChatServer, byte_by_byte: bool) -> None:
    """CR LF (most clients) and CR NUL (telnet's bare CR) each end one line, however split."""
    client = Client(server.port, nodelay=True)
    data = b"JOIN a\r\nLIST\r\x00LIST\n"
    for piece in [data[i : i + 1] for i in range(len(data))] if byte_by_byte else [data]:
        client.send(piece)
        time.sleep(0.01)  # a read of its own for each piece, most of the time
    assert client.read_line().startswith("OK JOIN a ")
    assert [client.read_line() for _ in range(4)] == ["USER a", "OK LIST 1"] * 2
    client.assert_silent(0.5)


# 4, 5. Terminal editing: escape sequences, Backspace, DEL


@pytest.mark.parametrize(
    ("typed", "text"),
    [
        (b"hel\x1b[D\x1b[Clo\x1bOA", "hello"),  # left, right, up (application mode)
        (b"helo\x7flo", "hello"),  # DEL, what Backspace sends on most terminals
        (b"abx\x08c", "abc"),  # BS, Ctrl-H
    ],
    ids=["cursor-keys", "del", "backspace"],
)
def test_terminal_editing_in_a_broadcast(server: ChatServer, typed: bytes, text: str) -> None:
    """
    A raw terminal sends cursor keys and Backspace as bytes: escape sequences
    are removed whole and Backspace or DEL erases the character before it.
    """
    alice, bob = joined(server, "alice", "bob")
    assert alice.command(b"BCST " + typed) == ["OK BCST 1"]
    assert bob.read_line() == f"BCST alice: {text}"


def test_up_arrow_before_a_command(server: ChatServer) -> None:
    """Up-arrow (recalling nothing) then C{list}: the command runs, not C{ERR Unknown}."""
    alice, _ = joined(server, "alice", "bob")
    assert alice.command(b"\x1b[Alist") == ["USER alice", "USER bob", "OK LIST 2"]


# 5, 6. What a name is typed with


@pytest.mark.parametrize(
    ("sent", "name"),
    [(b"JOIN bobb\x08", "bob"), (b"\xef\xbb\xbfJOIN bom", "bom")],
    ids=["backspace", "utf8-bom"],
)
def test_join_typed_with_editing_or_a_bom(server: ChatServer, sent: bytes, name: str) -> None:
    """A corrected typo, or the byte order mark an editor put before a script's first line."""
    client = Client(server.port)
    [answer] = client.command(sent)
    assert answer.startswith(f"OK JOIN {name} "), answer
    assert client.list_names() == [name]


# 7. The hint for a line without a line end


def expect_line_end_hint(client: Client) -> None:
    """The one INFO line saying that the line sent has no line end yet."""
    sent = time.monotonic()
    line = client.read_line(timeout=HINT_WAIT)
    assert line.startswith("INFO ") and "line end" in line.lower(), line
    assert time.monotonic() - sent > 1.0, "the hint must wait for the client to be quiet"


def test_hint_for_a_line_without_line_end(server: ChatServer) -> None:
    """A client (a raw socket, a program) that sends C{JOIN late} without Enter and waits."""
    client = Client(server.port)
    client.send(b"JOIN late")
    expect_line_end_hint(client)
    client.assert_silent(1.0)
    client.send(CRLF)
    client.expect_line("OK JOIN late ")


def test_join_timeout_names_the_unfinished_line(start_server: StartServer) -> None:
    """Past the join timeout, a client whose JOIN never ended is told why."""
    server = start_server("--join-timeout", "3")
    client = Client(server.port)
    client.send(b"JOIN slow")
    expect_line_end_hint(client)
    bye = client.read_line()
    assert bye.startswith("BYE Join Timeout: "), bye
    assert "unfinished" in bye.lower() or "line end" in bye.lower(), bye
    client.expect_eof()


# 8. A dropped connection frees the name at once (default options)


@pytest.mark.parametrize("drop", [Client.close, Client.abort], ids=["fin", "rst"])
def test_dropped_user_is_gone_at_once(server: ChatServer, drop: Callable[[Client], None]) -> None:
    """
    A user whose connection drops without QUIT (closed window, lost link)
    leaves at once: no resume token is offered, and the name is free.
    """
    alice = Client(server.port)
    alice.sendline("JOIN alice")
    alice.expect_bytes(b"OK JOIN alice 1/10\r\n")
    [bob] = joined(server, "bob")
    drop(alice)
    assert poll_until_gone(bob, "alice") == ["bob"]
    joined(server, "alice")


def test_dropped_user_frees_the_seat(start_server: StartServer) -> None:
    """With one seat, the next user gets it as soon as the last one drops."""
    server = start_server("--max-users", "1")
    [first] = joined(server, "first")
    first.close()
    answer = join_when_free(Client(server.port), "JOIN second")
    assert answer.startswith("OK JOIN second 1/1"), answer


def test_nc_join_only_frees_the_name(nc: str, server: ChatServer) -> None:
    """C{echo JOIN ghost | nc -N}: nc exits once answered, and the name does not linger."""
    [answer] = run_nc(nc, server, b"JOIN ghost\n")
    assert answer.startswith("OK JOIN ghost "), answer
    joined(server, "ghost")


# 9. Resume, opt-in with --grace


def test_resume_token_is_renewed(start_server: StartServer) -> None:
    """
    With C{--grace 60}, a dropped user resumes with the token; each resume
    gives a new token and the old one no longer works.
    """
    server = start_server("--grace", "60")
    [alice] = joined(server, "alice")
    first = alice.token
    assert first is not None
    alice.abort()

    resumed = Client(server.port)
    answer = join_when_free(resumed, f"JOIN alice {first}")
    assert answer.startswith("OK JOIN alice "), answer
    second = resumed.token
    assert second is not None and second != first
    resumed.abort()

    again = Client(server.port)
    assert join_when_free(again, f"JOIN alice {first}").startswith("ERR Invalid Token")
    assert again.command(f"JOIN alice {second}")[0].startswith("OK JOIN alice ")
