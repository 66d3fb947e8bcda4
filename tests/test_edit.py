"""
Edit mode (issue 17), at protocol level: keys in, screen bytes out, over
StringTransport with a Clock; and the pieces alone (the negotiation filter,
the editor, the look of lines).

A screen is checked as the bytes the server writes: C{ROW} is what erases
the input row, C{row(prompt, text, column)} a row drawn with its cursor.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_web import WebSocketClient, web_factory
from twisted.internet.task import Clock

from chat.core.editmode import GIVE_BACK, OFFER
from chat.core.editor import Editor
from chat.core.limits import Limits
from chat.core.screen import Look, decorate, mentions, sender_colour, width
from chat.core.telnet import DO, DONT, ECHO, IAC, NAWS, SB, SE, SGA, WILL, WONT, NegotiatingTelnet
from chat.server.factory import ChatFactory
from harness import Client, connector, logged

AGREE = bytes((IAC, DO, ECHO, IAC, DO, SGA, IAC, WILL, NAWS))
REFUSE = bytes((IAC, DONT, ECHO, IAC, DONT, SGA, IAC, WONT, NAWS))
ROW = b"\r\x1b[K"
UP, DOWN, RIGHT, LEFT = b"\x1b[A", b"\x1b[B", b"\x1b[C", b"\x1b[D"
HOME, END, DELETE = b"\x1b[H", b"\x1b[F", b"\x1b[3~"


def naws(width: int, height: int) -> bytes:
    """IAC SB NAWS w w h h IAC SE, a value byte of 255 doubled."""
    values = bytes((width >> 8, width & 255, height >> 8, height & 255))
    return bytes((IAC, SB, NAWS)) + values.replace(b"\xff", b"\xff\xff") + bytes((IAC, SE))


def row(prompt: str, text: str, column: int | None = None) -> bytes:
    """The input row drawn: erased, prompt, text, cursor at C{column} (default: the end)."""
    if column is None:
        column = width(prompt + text)
    move = f"\r\x1b[{column}C" if column else "\r"
    return ROW + (prompt + text + move).encode()


@pytest.fixture
def factory(clock: Clock) -> ChatFactory:
    limits = Limits(max_line=64, max_outbound=100_000, rate=0, join_timeout=0)
    return ChatFactory(max_users=5, limits=limits, clock=clock)


@pytest.fixture
def connect(factory: ChatFactory) -> Callable[..., Client]:
    return connector(factory)


def editing(client: Client, options: str = "", size: tuple[int, int] | None = None) -> bytes:
    """Turn edit mode on, as the telnet program answers; the screen after it."""
    client.protocol.dataReceived(f"MODE EDIT {options}\r\n".encode())
    assert client.raw().endswith(OFFER)
    client.protocol.dataReceived(AGREE + (naws(*size) if size else b""))
    return client.raw()


def keys(client: Client, data: bytes) -> bytes:
    client.protocol.dataReceived(data)
    return client.raw()


# The negotiation


def test_mode_edit_offers_the_options_and_begins_when_the_client_agrees(connect, logs) -> None:
    alice = connect("alice")
    alice.protocol.dataReceived(b"MODE EDIT\r\n")
    assert alice.raw() == OFFER
    screen = keys(alice, AGREE)
    assert screen == (
        ROW
        + b"OK MODE EDIT plain: the server echoes and edits your line; MODE LINE goes back\r\n"
        + row("alice> ", "")
    )
    assert logged(logs, "alice turned edit mode on (plain)")


def test_the_window_size_is_read_across_reads_with_iac_doubled(connect) -> None:
    """NAWS of 255 columns (IAC IAC in the values), byte by byte: rows are drawn that wide."""
    alice = connect("alice")
    editing(alice)
    for byte in naws(255, 40):
        alice.protocol.dataReceived(bytes([byte]))
    alice.raw()
    text = "BCST " + "x" * 59  # 64 bytes, the most: fits in 255 columns, not in 80
    assert keys(alice, text.encode()) == row("alice> ", text)
    alice.protocol.dataReceived(naws(40, 24))
    shown = alice.raw()
    # Narrower: the row the terminal reflowed is erased from its first row, then
    # drawn scrolled sideways: the end of the line, the cursor after it, the
    # last column empty.
    assert shown == b"\r\x1b[1A\x1b[J" + row("alice> ", "x" * 31)


def test_timeout_keeps_line_mode_and_commands_wait_for_the_answer(connect, clock, logs) -> None:
    """nc typing MODE EDIT: the nine bytes of the offer, an error after 2 s, nothing else."""
    nc = connect("nc")
    nc.protocol.dataReceived(b"MODE EDIT\r\nLIST\r\n")
    assert nc.raw() == OFFER  # LIST waits: answers stay in the order of the commands
    clock.advance(1.9)
    assert nc.raw() == b""
    clock.advance(0.1)
    assert nc.lines() == [
        (
            "ERR Not A Terminal: your client did not answer the telnet negotiation within 2 "
            "seconds; MODE EDIT needs a telnet program (telnet HOST PORT); still in line mode"
        ),
        "USER nc",
        "OK LIST 1",
    ]
    assert logged(logs, "nc did not agree to edit mode (timeout)")
    # Line mode as before: a late agreement is refused as any option is.
    nc.protocol.dataReceived(AGREE + b"LIST\r\n")
    refusals = bytes((IAC, WONT, ECHO, IAC, WONT, SGA, IAC, DONT, NAWS))
    assert nc.raw() == refusals + b"USER nc\r\nOK LIST 1\r\n"


def test_a_client_that_refuses_keeps_line_mode(connect, clock) -> None:
    bob = connect("bob")
    bob.protocol.dataReceived(b"MODE EDIT\r\n")
    assert bob.raw() == OFFER
    assert keys(bob, REFUSE) == (
        b"ERR Not A Terminal: your client refused to let the server echo (DONT ECHO); "
        b"MODE EDIT needs a telnet program (telnet HOST PORT); still in line mode\r\n"
    )
    clock.advance(5)  # the timer was cancelled: nothing more
    assert bob.send("LIST") == ["USER bob", "OK LIST 1"]


def test_mode_line_gives_the_echo_back(connect, logs) -> None:
    alice = connect("alice")
    editing(alice)
    keys(alice, b"half")
    assert keys(alice, b"\x15MODE LINE\r") == (
        ROW
        + b"alice> MODE LINE\r\n"
        + row("alice> ", "")
        + ROW
        + GIVE_BACK
        + b"OK MODE LINE: your client echoes and edits lines again\r\n"
    )
    assert logged(logs, "alice left edit mode")
    assert alice.send("LIST") == ["USER alice", "OK LIST 1"]  # lines, no row
    assert alice.send("MODE LINE") == ["OK MODE LINE: already in line mode"]


def test_a_client_that_takes_the_echo_back_is_told(connect) -> None:
    alice = connect("alice")
    editing(alice)
    shown = keys(alice, bytes((IAC, DONT, ECHO)))
    assert shown.endswith(
        ROW + GIVE_BACK + b"INFO Edit mode ended: your telnet client echoes again\r\n"
    )
    assert alice.send("LIST") == ["USER alice", "OK LIST 1"]


def test_machine_mode_and_edit_mode(connect) -> None:
    """MODE EDIT is for people: refused in the machine format; MODE MACHINE leaves it."""
    robot = connect("robot")
    assert robot.send("MODE MACHINE") == ["OK MODE MACHINE 2"]
    assert robot.send("MODE EDIT") == ["ERR USAGE"]
    assert robot.send("MODE LINE") == ["OK MODE LINE"]
    assert robot.send("MODE HUMAN")[0].startswith("OK MODE HUMAN")
    editing(robot)
    shown = keys(robot, b"MODE MACHINE\r")
    assert shown.endswith(ROW + GIVE_BACK + b"OK MODE MACHINE 2\r\n")
    assert robot.send("LIST") == ["USER robot here 0 -", "OK LIST 1"]


@pytest.mark.parametrize("words", ["EDIT COLOUR", "EDIT TIME LOUD", "EDITS"])
def test_unknown_words_get_the_usage(connect, words: str) -> None:
    alice = connect("alice")
    reply = alice.send(f"MODE {words}")
    assert len(reply) == 1 and reply[0].startswith("ERR Usage: ")
    assert "MODE EDIT [TIME] [BELL] [COLOR] | MODE LINE" in reply[0]
    assert alice.raw() == b""  # no offer


def test_options_in_any_order_and_changed_while_on(connect, logs) -> None:
    alice = connect("alice")
    assert b"OK MODE EDIT TIME BELL COLOR:" in editing(alice, "color bell TIME")
    shown = keys(alice, b"MODE EDIT\r")
    assert b"OK MODE EDIT plain:" in shown and not shown.endswith(GIVE_BACK)
    assert logged(logs, "alice changed edit mode (plain)")


def test_not_on_a_websocket(connect) -> None:
    """A browser's WebSocket carries lines, not a terminal: refused, nothing sent."""
    page = connect("page")
    page.transport.terminal = False  # what chat.web.socket.WebSocketTransport says
    assert page.send("MODE EDIT") == [
        ("ERR Usage: MODE EDIT is for people at a telnet terminal (human format, not a WebSocket)")
    ]


def test_not_on_a_real_websocket(factory: ChatFactory) -> None:
    """The web transport says so: the page's user gets the error, and no negotiation byte."""
    page = WebSocketClient(web_factory(factory), 7000)
    page.messages()
    assert page.command("MODE EDIT") == [
        "ERR Usage: MODE EDIT is for people at a telnet terminal (human format, not a WebSocket)"
    ]
    assert page.transport.value() == b""


def test_help_lists_the_mode_words(connect) -> None:
    text = "\n".join(connect().send("HELP"))
    assert "MODE EDIT [<options>]" in text and "TIME" in text and "MODE LINE" in text


# The screen


def test_a_broadcast_while_half_a_line_is_typed(connect) -> None:
    """The message above, the half line below, intact, the cursor where it was."""
    alice, bob = connect("alice"), connect("bob")
    editing(alice)
    assert keys(alice, b"BCST half a li") == row("alice> ", "BCST half a li")
    keys(alice, LEFT * 3)
    bob.send("BCST hello alice")
    assert alice.raw() == (
        ROW + b"BCST bob: hello alice\r\n" + row("alice> ", "BCST half a li", 18)
    )
    assert keys(alice, RIGHT * 3 + b"ne\r") == (
        ROW + b"alice> BCST half a line\r\nOK BCST 1\r\n" + row("alice> ", "")
    )
    assert bob.lines() == ["BCST alice: half a line"]


def test_the_prompt_shows_the_name_after_join(connect) -> None:
    guest = connect()
    editing(guest)
    assert keys(guest, b"JOIN carol\r") == (
        ROW + b"> JOIN carol\r\nOK JOIN carol 1/5\r\n" + row("carol> ", "")
    )


@pytest.mark.parametrize(
    ("typed", "text", "column"),
    [
        (b"helo" + LEFT + b"l", "hello", 4),
        (b"hello\x7f\x7f", "hel", None),  # DEL
        (b"hello\x08", "hell", None),  # BS
        (b"hello" + HOME + DELETE, "ello", 0),
        (b"hello" + HOME + b"\x04", "ello", 0),  # Ctrl-D
        (b"hello" + HOME + END + b"!", "hello!", None),
        (b"hello\x01X\x05Y", "XhelloY", None),  # Ctrl-A, Ctrl-E
        (b"say hello there" + LEFT * 6 + b"\x15", " there", 0),  # Ctrl-U
        (b"say hello there" + LEFT * 6 + b"\x0b", "say hello", None),  # Ctrl-K
        (b"say hello there  \x17", "say hello ", None),  # Ctrl-W
        (b"say hello\x03", "", None),  # Ctrl-C
        (b"ab\x1b[1~c\x1b[4~d\x1bOHe\x1bOFf", "ecabdf", None),  # VT and SS3 Home/End
        (b"a\x1b[5~b\x1b[200~c\x1bxd\x00e", "abcde", None),  # other keys do nothing
        (b"caf\xc3\xa9\x7fe", "cafe", None),  # Backspace erases a character
        (b"\xe4\xbd\xa0\xe5\xa5\xbd" + LEFT + b"!", "\u4f60!\u597d", 3),  # wide characters
        (b"a\x1b[31mb\xc2\x9b1mc", "ab1mc", None),  # a sequence removed, a C1 control too
    ],
)
def test_editing_keys(connect, typed: bytes, text: str, column: int | None) -> None:
    alice = connect("alice")
    editing(alice)
    assert keys(alice, typed) == row("alice> ", text, None if column is None else 7 + column)


def test_keys_split_across_reads(connect) -> None:
    """An escape sequence or a UTF-8 character cut by the network still counts once."""
    alice = connect("alice")
    editing(alice)
    for byte in b"h\xc3\xa9" + HOME + DELETE + b"\r\n":
        alice.protocol.dataReceived(bytes([byte]))
    shown = alice.raw()
    assert b"alice> \xc3\xa9\r\n" in shown
    assert shown.count(b"ERR") == 1  # the line sent once: an unknown command


def test_telnet_answers_go_out_as_they_are(connect) -> None:
    """Ctrl-C in telnet (IAC IP, IAC DO TIMING-MARK): the refusal is sent raw, before the row."""
    alice = connect("alice")
    editing(alice)
    assert keys(alice, b"ab" + bytes((IAC, 244, IAC, DO, 6))) == (
        bytes((IAC, WONT, 6)) + row("alice> ", "ab")
    )


def test_enter_in_every_form_sends_one_line(connect) -> None:
    alice = connect("alice")
    editing(alice)
    shown = keys(alice, b"LIST\r\nLIST\r\x00LIST\rLIST\n")
    assert shown.count(b"OK LIST 1") == 4
    assert shown.count(b"alice> LIST\r\n") == 4


def test_history_up_and_down(connect) -> None:
    alice = connect("alice")
    editing(alice)
    keys(alice, b"LIST\rSTATUS\rLIST\r")
    assert keys(alice, b"draft" + UP) == row("alice> ", "LIST")
    assert keys(alice, UP) == row("alice> ", "STATUS")
    assert keys(alice, UP) == row("alice> ", "LIST")
    assert keys(alice, UP) == b"\x07" + row("alice> ", "LIST")  # the oldest: a bell
    assert keys(alice, DOWN + DOWN) == row("alice> ", "LIST")
    assert keys(alice, DOWN) == row("alice> ", "draft")
    assert keys(alice, DOWN) == b"\x07" + row("alice> ", "draft")
    assert keys(alice, b"\x03\x10") == row("alice> ", "LIST")  # Ctrl-P


def test_a_password_is_neither_shown_nor_recalled(connect) -> None:
    alice = connect("alice")
    editing(alice)
    shown = keys(alice, b"LIST\rOPER alice secret\r")
    assert b"secret" not in shown and b"alice> OPER ***\r\n" in shown
    assert keys(alice, UP) == row("alice> ", "LIST")


def test_tab_completes_names(connect) -> None:
    alice = connect("alice")
    for name in ("bob", "Bobby", "carol"):
        connect(name)
    editing(alice)
    assert keys(alice, b"MESG c\t") == row("alice> ", "MESG carol ")
    assert keys(alice, b"\x15MESG B\t") == row("alice> ", "MESG bob")  # the common beginning
    assert keys(alice, b"\t") == b"\x07" + row("alice> ", "MESG bob")  # several: a bell
    assert keys(alice, b"\t") == ROW + b"INFO Names: bob, Bobby\r\n" + row("alice> ", "MESG bob")
    assert keys(alice, b"b\t") == row("alice> ", "MESG Bobby ")
    assert keys(alice, b"\x15BCST hi CA\t") == row("alice> ", "BCST hi carol ")
    assert keys(alice, b"\x15BCST hi x\t") == b"\x07" + row("alice> ", "BCST hi x")
    assert keys(alice, b"\x15LI\t") == b"\x07" + row("alice> ", "LI")  # the command: no


def test_the_line_is_bounded_by_max_line_with_a_bell(connect) -> None:
    alice, bob = connect("alice"), connect("bob")
    editing(alice, size=(200, 24))
    text = "BCST " + "x" * 70  # 75 bytes typed, 64 allowed
    shown = keys(alice, text.encode())
    assert shown == b"\x07" + row("alice> ", text[:64])
    assert keys(alice, "é".encode()) == b"\x07" + row("alice> ", text[:64])
    keys(alice, b"\r")
    assert bob.lines() == ["BCST alice: " + "x" * 59]


def test_others_control_characters_never_reach_the_screen(connect) -> None:
    """Escapes, BEL, C1 and bidi controls in a message: only the server's own sequences show."""
    alice, bob = connect("alice"), connect("bob")
    editing(alice, "COLOR")
    keys(alice, b"half")
    bob.send(b"BCST \x1b[2J\x07evil\xc2\x9b31m\xe2\x80\xae text\x1b]0;title\x07\r\n")
    shown = alice.raw()
    ours = re.sub(rb"\x1b\[[0-9;]*[mKC]|\r\n|\r", b"", shown)
    assert not re.search(rb"[\x00-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80\xae", ours), shown
    assert b"evil" in shown and b"half" in shown


def test_a_line_mode_client_gets_exactly_the_bytes_of_today(connect) -> None:
    """Next to a user in edit mode (with every option), a line-mode user sees no change."""
    alice, bob = connect("alice"), connect("bob")
    editing(alice, "TIME BELL COLOR")
    keys(alice, b"BCST hi bob\rMESG bob psst\r")
    assert bob.raw() == b"BCST alice: hi bob\r\nMESG alice: psst\r\n"
    assert bob.protocol.dataReceived(b"BCST hello\r\nMESG alice hi\r\nLIST\r\n") is None
    assert bob.raw() == (
        b"OK BCST 1\r\nOK MESG alice delivered\r\nUSER alice\r\nUSER bob\r\nOK LIST 2\r\n"
    )


def test_closing_halfway_through_a_line_sends_nothing(connect) -> None:
    """A person who closes telnet without Enter did not send the line (nc -N's last line is)."""
    alice, bob = connect("alice"), connect("bob")
    editing(alice)
    keys(alice, b"BCST half a li")
    alice.protocol.readConnectionLost()
    assert alice.closed
    assert bob.lines() == []


def test_quit_gives_the_echo_back(connect) -> None:
    alice = connect("alice")
    editing(alice)
    shown = keys(alice, b"QUIT\r")
    assert shown.endswith(b"OK QUIT Bye\r\n" + row("> ", "") + ROW + GIVE_BACK)
    assert alice.closed


def test_an_unregistered_client_in_edit_mode_can_make_room(clock) -> None:
    """At --max-connections, a connection that has not joined gives its place, edit mode or not."""
    limits = Limits(max_line=64, rate=0, join_timeout=0, max_connections=2)
    connect = connector(ChatFactory(max_users=5, limits=limits, clock=clock))
    first = connect()
    editing(first)
    connect("bob")
    connect()
    assert first.closed


# The look (MODE EDIT TIME BELL COLOR)


def test_time_stamps_are_the_server_clock_in_utc(connect, clock) -> None:
    alice, bob = connect("alice"), connect("bob")
    clock.advance(13 * 3600 + 7 * 60 + 59)
    editing(alice, "TIME")
    bob.send("BCST hi")
    assert alice.raw() == ROW + b"13:07 BCST bob: hi\r\n" + row("alice> ", "")


def test_bell_on_private_messages_and_mentions_only(connect) -> None:
    alice, bob = connect("alice"), connect("bob")
    editing(alice, "BELL")
    bob.send("MESG alice psst")
    assert alice.raw() == ROW + b"\x07MESG bob: psst\r\n" + row("alice> ", "")
    bob.send("BCST ALICE, look")
    assert alice.raw().startswith(ROW + b"\x07BCST bob: ALICE, look")
    bob.send("BCST malice and alicex")
    assert b"\x07" not in alice.raw()
    bob.send("ME waves at alice")
    assert alice.raw().startswith(ROW + b"\x07* bob waves at alice")


def test_no_bell_without_the_option(connect) -> None:
    alice, bob = connect("alice"), connect("bob")
    editing(alice, "TIME COLOR")
    bob.send("MESG alice psst")
    assert b"\x07" not in alice.raw()


def test_colours_by_kind_and_by_sender(connect) -> None:
    alice, bob = connect("alice"), connect("bob")
    editing(alice, "COLOR")
    bob.send("BCST hi")
    name = sender_colour("bob").encode()
    assert alice.raw() == (
        ROW + b"\x1b[1mBCST\x1b[0m " + name + b"bob\x1b[0m: hi\r\n" + row("alice> ", "")
    )
    assert keys(alice, b"frob\r").startswith(ROW + b"alice> frob\r\n\x1b[31mERR Unknown Message")


def test_look_is_monochrome_by_default() -> None:
    plain = Look()
    assert decorate("MESG bob: hi alice", plain, 0, "alice") == "MESG bob: hi alice"
    assert decorate("ERR Usage: x", plain, 0, None) == "ERR Usage: x"


def test_sender_colours_are_stable_and_varied() -> None:
    assert sender_colour("bob") == sender_colour("BOB")
    assert len({sender_colour(f"user{n}") for n in range(50)}) > 5


@pytest.mark.parametrize(
    ("text", "found"),
    [("hi alice", True), ("ALICE!", True), ("malice", False), ("alice2", False), ("", False)],
)
def test_mentions_are_whole_words(text: str, found: bool) -> None:
    assert mentions(text, "alice") is found


# The negotiation filter and the editor alone


class Recorder:
    def __init__(self) -> None:
        self.events: list[object] = []

    def agreed(self) -> None:
        self.events.append("agreed")

    def refused(self) -> None:
        self.events.append("refused")

    def resized(self, width: int, height: int) -> None:
        self.events.append((width, height))


def test_negotiating_filter_accepts_its_options_and_refuses_the_others() -> None:
    recorder = Recorder()
    telnet = NegotiatingTelnet(recorder)
    data = AGREE + naws(255, 65535) + b"x" + bytes((IAC, DO, 24, IAC, WILL, 32))
    assert telnet.feed(data) == (b"x", bytes((IAC, WONT, 24, IAC, DONT, 32)))
    assert recorder.events == ["agreed", (255, 65535)]


def test_a_long_or_other_subnegotiation_is_skipped() -> None:
    recorder = Recorder()
    telnet = NegotiatingTelnet(recorder)
    long = bytes((IAC, SB, NAWS)) + b"\x00" * 40 + bytes((IAC, SE))
    other = bytes((IAC, SB, 24, 0, 1, 2, 3, IAC, SE))
    assert telnet.feed(long + other + b"ok") == (b"ok", b"")
    assert recorder.events == []


@given(st.lists(st.integers(min_value=1, max_value=16), max_size=12))
def test_naws_in_any_segmentation(cuts: list[int]) -> None:
    data = naws(300, 255) + b"a" + naws(80, 24)
    recorder, telnet, kept = Recorder(), NegotiatingTelnet(Recorder()), b""
    telnet._negotiation = recorder
    rest = data
    for cut in cuts:
        kept += telnet.feed(rest[:cut])[0]
        rest = rest[cut:]
    kept += telnet.feed(rest)[0]
    assert kept == b"a"
    assert recorder.events == [(300, 255), (80, 24)]


class Owner:
    def __init__(self, names: list[str]) -> None:
        self._names = names
        self.shown: list[str] = []

    def names(self) -> list[str]:
        return self._names

    def typed(self, line: str) -> None:
        self.shown.append(line)

    def notice(self, text: str) -> None:
        self.shown.append(text)

    def changed(self) -> None:
        pass


@given(st.binary(max_size=300))
def test_the_editor_takes_any_bytes(data: bytes) -> None:
    """Whatever arrives: lines within the bound, no control character in them."""
    editor = Editor(64, Owner(["bob"]))
    lines = editor.feed(data)
    assert editor.end() == []
    for line in lines:
        assert isinstance(line, bytes) and len(line) <= 64
        assert not re.search(rb"[\x00-\x1f\x7f]", line)


@given(st.text(max_size=80), st.integers(min_value=0, max_value=200))
def test_the_row_is_always_one_row(text: str, columns: int) -> None:
    editor = Editor(4096, Owner([]))
    editor.feed(text.encode())
    drawn = editor.row("alice> ", columns)
    shown = re.sub(r"\x1b\[[0-9]*[KC]|\r|\x07", "", drawn)
    assert width(shown) < max(columns, 8)
