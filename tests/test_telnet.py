"""Tests for L{chat.core.telnet.TelnetInput}: telnet commands never reach the chat."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chat.core.framing import LineSplitter
from chat.core.telnet import DO, DONT, EC, IAC, SB, SE, WILL, WONT, TelnetInput

IP, AYT, NOP = 244, 246, 241
TIMING_MARK, NAWS = 6, 31


def feed_all(chunks: list[bytes]) -> tuple[bytes, bytes]:
    telnet = TelnetInput()
    kept, replies = b"", b""
    for chunk in chunks:
        data, answer = telnet.feed(chunk)
        kept += data
        replies += answer
    return kept, replies


def test_plain_data_passes_through() -> None:
    assert feed_all([b"JOIN bob\r\n"]) == (b"JOIN bob\r\n", b"")


def test_ctrl_c_sequence_is_removed_and_timing_mark_refused() -> None:
    """What telnet sends on Ctrl-C: IAC IP, IAC DO TIMING-MARK."""
    kept, replies = feed_all([bytes([IAC, IP, IAC, DO, TIMING_MARK]) + b"LIST\r\n"])
    assert kept == b"LIST\r\n"
    assert replies == bytes([IAC, WONT, TIMING_MARK])


def test_will_is_refused_and_refusals_are_not_answered() -> None:
    kept, replies = feed_all([bytes([IAC, WILL, NAWS, IAC, WONT, 1, IAC, DONT, 3]) + b"x"])
    assert kept == b"x"
    assert replies == bytes([IAC, DONT, NAWS])


def test_subnegotiation_is_removed() -> None:
    data = b"JO" + bytes([IAC, SB, NAWS, 0, 80, IAC, IAC, 24, IAC, SE]) + b"IN a\n"
    assert feed_all([data]) == (b"JOIN a\n", b"")


def test_escaped_iac_is_a_data_byte() -> None:
    assert feed_all([bytes([65, IAC, IAC, 66])]) == (b"A\xffB", b"")


def test_two_byte_commands_are_removed() -> None:
    assert feed_all([bytes([IAC, AYT, 65, IAC, NOP, 66])]) == (b"AB", b"")


def test_line_ends_pass_as_they_are() -> None:
    """CR NUL and CR LF are the line splitter's, even split across reads."""
    assert feed_all([b"LIST\r", b"\x00QUIT\r\x00", b"A\r", b"\nB\rC\n"]) == (
        b"LIST\r\x00QUIT\r\x00A\r\nB\rC\n",
        b"",
    )


def test_a_cr_at_the_end_of_a_read_is_not_held_back() -> None:
    """A client that ends its line with a bare CR waits for the answer."""
    assert TelnetInput().feed(b"LIST\r") == (b"LIST\r", b"")


def test_commands_split_byte_by_byte() -> None:
    data = bytes([IAC, DO, TIMING_MARK, IAC, SB, 24, 1, IAC, SE]) + b"HI\r\x00"
    assert feed_all([bytes([b]) for b in data]) == (b"HI\r\x00", bytes([IAC, WONT, TIMING_MARK]))


def test_erase_character_becomes_a_backspace() -> None:
    assert feed_all([b"helo", bytes([IAC]), bytes([EC]) + b"lo\r\n"]) == (b"helo\x08lo\r\n", b"")


def test_erase_character_erases_like_a_backspace_typed() -> None:
    telnet, lines = TelnetInput(), LineSplitter(100)
    data, _ = telnet.feed(b"helo" + bytes([IAC, EC]) + b"lo\r\n")
    assert lines.feed(data) == [b"hello"]


def test_a_cr_nul_with_a_command_between_is_one_line_end() -> None:
    """The splitter sees the bytes the filter keeps, over any reads."""
    telnet, lines = TelnetInput(), LineSplitter(100)
    got = []
    for chunk in [b"LIST\r", bytes([IAC, NOP]), b"\x00QUIT\r", bytes([IAC, AYT]) + b"\n"]:
        data, _ = telnet.feed(chunk)
        got += lines.feed(data)
    assert got == [b"LIST", b"QUIT"]


@given(st.binary(), st.lists(st.integers(min_value=0, max_value=64)))
def test_any_segmentation_gives_the_same_result(data: bytes, cuts: list[int]) -> None:
    """The filter keeps its state across reads: how bytes arrive never matters."""
    chunks, rest = [], data
    for cut in cuts:
        chunks.append(rest[:cut])
        rest = rest[cut:]
    chunks.append(rest)
    whole = feed_all([data])
    assert feed_all(chunks) == whole


@given(st.binary().filter(lambda data: b"\xff" not in data))
def test_data_without_iac_passes_unchanged(data: bytes) -> None:
    """Without IAC nothing changes: line ends are the splitter's."""
    assert feed_all([data]) == (data, b"")


@given(st.binary())
def test_no_negotiation_byte_survives(data: bytes) -> None:
    """Whatever is sent, an IAC in the output can only come from IAC IAC."""
    kept, _ = feed_all([data])
    assert kept.count(b"\xff") <= data.count(b"\xff\xff")
