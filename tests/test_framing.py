"""
Tests for L{chat.core.framing.LineSplitter} and the line editing it applies
(L{chat.core.terminal}).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.core.framing import BYTE_ORDER_MARK, LINE_TOO_LONG, LineSplitter, _LineTooLong
from chat.core.terminal import edit

Line = bytes | _LineTooLong


def feed_all(chunks: list[bytes], max_length: int = 100) -> list[Line]:
    splitter = LineSplitter(max_length)
    got: list[Line] = []
    for chunk in chunks:
        got += splitter.feed(chunk)
    return got


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    """C{data} in pieces of the given sizes, and the rest."""
    chunks = []
    for size in cuts:
        chunks.append(data[:size])
        data = data[size:]
    return [*chunks, data]


# Line ends


def test_lf_crlf_and_pipelined_lines() -> None:
    assert LineSplitter(100).feed(b"a\nb\r\nc\r\n\n") == [b"a", b"b", b"c", b""]


def test_partial_line_waits_for_its_end() -> None:
    splitter = LineSplitter(100)
    assert splitter.feed(b"JO") == []
    assert splitter.feed(b"IN bob") == []
    assert splitter.feed(b"\nLI") == [b"JOIN bob"]
    assert splitter.feed(b"ST\r\n") == [b"LIST"]


def test_a_bare_cr_ends_a_line_at_once() -> None:
    """C{socat STDIO,raw} sends CR on Enter, then waits for the answer."""
    splitter = LineSplitter(100)
    assert splitter.feed(b"JOIN bob\r") == [b"JOIN bob"]
    assert splitter.feed(b"LIST\rMESG bob hi\r") == [b"LIST", b"MESG bob hi"]


@pytest.mark.parametrize("second", [b"\n", b"\x00"])
def test_cr_lf_and_cr_nul_split_across_reads_are_one_line_end(second: bytes) -> None:
    splitter = LineSplitter(100)
    assert splitter.feed(b"LIST\r") == [b"LIST"]
    assert splitter.feed(second + b"QUIT\r" + second) == [b"QUIT"]
    assert splitter.feed(b"\r") == [b""]


def test_only_one_byte_after_a_cr_is_part_of_its_line_end() -> None:
    assert LineSplitter(100).feed(b"a\r\n\nb\r\x00\x00c\n") == [b"a", b"", b"b", b"\x00c"]


def test_the_byte_after_a_cr_may_come_after_empty_reads() -> None:
    """An empty read (a read of telnet commands only) keeps the CR pending."""
    assert feed_all([b"LIST\r", b"", b"", b"\nQUIT\n"]) == [b"LIST", b"QUIT"]


def test_cr_nul_in_one_read() -> None:
    assert LineSplitter(100).feed(b"LIST\r\x00QUIT\r\x00") == [b"LIST", b"QUIT"]


def test_a_cr_before_a_cr_lf_ends_an_empty_line() -> None:
    assert LineSplitter(100).feed(b"a\r\r\nb\n") == [b"a", b"", b"b"]


def test_a_nul_after_an_lf_is_data() -> None:
    """Only a CR takes a NUL with it; the NUL is left for decode() to remove."""
    assert LineSplitter(100).feed(b"a\n\x00b\n") == [b"a", b"\x00b"]


def test_seen_line_end() -> None:
    splitter = LineSplitter(100)
    assert not splitter.seen_line_end
    splitter.feed(b"JOIN bob")
    assert not splitter.seen_line_end
    splitter.feed(b"\r")
    assert splitter.seen_line_end


def test_a_line_end_that_ends_an_overlong_line_is_seen() -> None:
    splitter = LineSplitter(4)
    assert splitter.feed(b"abcdefgh") == [LINE_TOO_LONG]
    assert not splitter.seen_line_end
    assert splitter.feed(b"ijk\r") == []
    assert splitter.seen_line_end


# The length limit


def test_line_at_the_limit_is_accepted() -> None:
    assert LineSplitter(4).feed(b"abcd\r\nabcd\nabcd\rabcd\r\x00") == [b"abcd"] * 4


def test_line_over_the_limit_is_refused_and_the_next_line_kept() -> None:
    assert LineSplitter(4).feed(b"abcde\nok\n") == [LINE_TOO_LONG, b"ok"]
    assert LineSplitter(4).feed(b"abcde\rok\r") == [LINE_TOO_LONG, b"ok"]


def test_overlong_partial_is_reported_at_once_and_its_tail_skipped() -> None:
    splitter = LineSplitter(4)
    assert splitter.feed(b"abcdefgh") == [LINE_TOO_LONG]
    assert splitter.feed(b"LIST still the same line") == []
    assert splitter.feed(b"...\nLIST\n") == [b"LIST"]


def test_an_overlong_line_is_reported_as_soon_as_the_limit_is_passed() -> None:
    splitter = LineSplitter(4)
    assert splitter.feed(b"abcd") == []
    assert splitter.feed(b"e") == [LINE_TOO_LONG]


def test_an_overlong_line_ended_by_a_cr_takes_its_lf_in_the_next_read() -> None:
    splitter = LineSplitter(4)
    assert splitter.feed(b"abcdefgh") == [LINE_TOO_LONG]
    assert splitter.feed(b"ijk\r") == []
    assert splitter.feed(b"\nLIST\r\x00QUIT\r\n") == [b"LIST", b"QUIT"]


def test_the_limit_is_on_the_bytes_as_sent() -> None:
    """Erasures and escape sequences count: the limit bounds memory."""
    assert LineSplitter(4).feed(b"ab\x7f\x7f\n\x1b[1;2Ax\n") == [b"", LINE_TOO_LONG]


def test_buffer_never_exceeds_the_limit() -> None:
    splitter = LineSplitter(10)
    for _ in range(1000):
        splitter.feed(b"x" * 7)
        assert len(splitter._buffer) <= 10
        assert splitter.pending <= 10


# Escape sequences


@pytest.mark.parametrize(
    ("line", "edited"),
    [
        (b"\x1b[Alist", b"list"),  # up arrow, then a command
        (b"hel\x1b[Dlo", b"hello"),  # left arrow
        (b"a\x1b[1;5Cb", b"ab"),  # ctrl-right: parameters
        (b"a\x1b[?25hb", b"ab"),  # private parameters
        (b"a\x1b[2 qb", b"ab"),  # an intermediate byte
        (b"a\x1b[3~b", b"ab"),  # the Delete key sends a sequence, not DEL
        (b"a\x1bOAb", b"ab"),  # SS3: an arrow in application mode
        (b"a\x1bOPb", b"ab"),  # SS3: F1
        (b"a\x1b]0;title\x07b", b"ab"),  # OSC ended by BEL
        (b"a\x1b]8;;http://x/\x1b\\b", b"ab"),  # OSC ended by ST
        (b"a\x1b]0;title", b"a"),  # OSC ended by the end of the line
        (b"a\x1bP1$r\x1b\\b", b"ab"),  # DCS
        (b"a\x1bXsos\x1b\\b", b"ab"),  # SOS
        (b"a\x1b^pm\x1b\\b", b"ab"),  # PM
        (b"a\x1b_apc\x07b", b"ab"),  # APC
        (b"a\x1b]0;x\x1b[Ab", b"ab"),  # an ESC ends a string and starts a sequence
        (b"a\x1b(Bb", b"ab"),  # nF: designate a character set
        (b"a\x1b=b", b"ab"),  # two bytes: keypad mode
        (b"a\x1b7b\x1b8", b"ab"),  # two bytes: save and restore the cursor
        (b"a\x1bcb", b"ab"),  # two bytes: reset
        (b"abc\x1b", b"abc"),  # a lone ESC at the end
        (b"abc\x1b[", b"abc"),  # a CSI cut short by the end of the line
        (b"abc\x1b[1;", b"abc"),
        (b"a\x1b\x1b[Ab", b"ab"),  # ESC ESC: the first is alone
        (b"a\x1b[1\xc3\xa9", b"a\xc3\xa9"),  # a CSI cut short by text keeps the text
        (b"a\x1b\xc3\xa9", b"a\xc3\xa9"),  # a lone ESC before UTF-8
        (b"\x1b[A\x1b[B\x1b[C\x1b[D", b""),
    ],
)
def test_escape_sequences_are_removed_whole(line: bytes, edited: bytes) -> None:
    assert edit(line) == edited
    assert LineSplitter(100).feed(line + b"\r\n") == [edited]


def test_an_escape_sequence_split_across_reads() -> None:
    assert feed_all([b"hel\x1b", b"[D", b"lo\r", b"\n"]) == [b"hello"]
    assert feed_all([b"\x1b", b"[", b"A", b"list\r\n"]) == [b"list"]


def test_an_escape_sequence_never_crosses_a_line_end() -> None:
    assert LineSplitter(100).feed(b"a\x1b]0;title\r\nLIST\r\n") == [b"a", b"LIST"]
    assert LineSplitter(100).feed(b"a\x1b\nLIST\n") == [b"a", b"LIST"]


# Backspace and DEL


@pytest.mark.parametrize(
    ("line", "edited"),
    [
        (b"helo\x7flo", b"hello"),
        (b"helo\x08lo", b"hello"),
        (b"ab\x08\x08\x08c", b"c"),  # nothing to erase at the start
        (b"\x7f\x7fx", b"x"),
        (b"caf\xc3\xa9\x7fe", b"cafe"),  # a two-byte character
        (b"\xe2\x82\xac\x08$", b"$"),  # three bytes
        (b"a\xf0\x9f\x98\x80\x7f", b"a"),  # four bytes
        (b"\xc3\xa9\xc3\xa9\x7f\x7f", b""),
        (b"a\x01\x08", b"a"),  # a control character is a character too
        (b"ab\x1b[D\x7f", b"a"),  # escape sequences go first
        (b"a\x1b]0;\x08\x08\x07b", b"ab"),  # so a BS inside one erases nothing
        (b"a\x1b[1\x08", b""),  # a BS ends a CSI, then erases the "a"
    ],
)
def test_backspace_and_del_erase_the_character_before(line: bytes, edited: bytes) -> None:
    assert edit(line) == edited
    assert LineSplitter(100).feed(line + b"\r") == [edited]


def test_erasures_split_across_reads() -> None:
    assert feed_all([b"h", b"e", b"l", b"o", b"\x7f", b"l", b"o", b"\r"]) == [b"hello"]


def test_a_line_without_editing_bytes_is_the_same_object() -> None:
    line = b"MESG bob hello"
    assert edit(line) is line


# The byte order mark


def test_a_byte_order_mark_at_the_start_is_removed() -> None:
    assert LineSplitter(100).feed(BYTE_ORDER_MARK + b"JOIN bob\r\n") == [b"JOIN bob"]


def test_a_byte_order_mark_split_over_three_reads() -> None:
    splitter = LineSplitter(100)
    assert splitter.feed(b"\xef") == []
    assert splitter.feed(b"\xbb") == []
    assert splitter.feed(b"\xbfLIST\r") == [b"LIST"]


def test_a_byte_order_mark_alone_leaves_nothing_pending() -> None:
    splitter = LineSplitter(100)
    assert splitter.feed(BYTE_ORDER_MARK) == []
    assert splitter.pending == 0
    assert splitter.end() == []


def test_only_the_first_byte_order_mark_is_removed() -> None:
    assert feed_all([BYTE_ORDER_MARK * 2 + b"a\n" + BYTE_ORDER_MARK + b"b\n"]) == [
        BYTE_ORDER_MARK + b"a",
        BYTE_ORDER_MARK + b"b",
    ]


def test_a_byte_order_mark_after_empty_reads_is_still_at_the_start() -> None:
    assert feed_all([b"", b"\xef\xbb", b"", b"\xbfa\n"]) == [b"a"]


def test_the_start_of_a_byte_order_mark_that_is_not_one_is_kept() -> None:
    assert feed_all([b"\xef", b"\xbb", b"x\n"]) == [b"\xef\xbbx"]
    assert feed_all([b"\xef", b"\n"]) == [b"\xef"]


def test_no_byte_order_mark_after_the_first_bytes() -> None:
    assert feed_all([b"\n", BYTE_ORDER_MARK + b"a\n"]) == [b"", BYTE_ORDER_MARK + b"a"]


# end() and pending


def test_end_gives_the_unfinished_line_edited() -> None:
    splitter = LineSplitter(100)
    assert splitter.feed(b"LIST\r\nQUIT\x1b[A") == [b"LIST"]
    assert splitter.pending == len(b"QUIT\x1b[A")
    assert splitter.end() == [b"QUIT"]
    assert splitter.pending == 0
    assert splitter.end() == []


def test_end_gives_nothing_without_an_unfinished_line() -> None:
    splitter = LineSplitter(100)
    assert splitter.end() == []
    splitter = LineSplitter(100)
    assert splitter.feed(b"LIST\r") == [b"LIST"]
    assert splitter.pending == 0
    assert splitter.end() == []


def test_end_gives_an_unfinished_line_that_edits_to_nothing() -> None:
    """Like a complete line that edits to nothing: an empty line."""
    splitter = LineSplitter(100)
    splitter.feed(b"\x1b[A")
    assert splitter.end() == [b""]


def test_end_gives_nothing_for_an_overlong_line_being_skipped() -> None:
    splitter = LineSplitter(4)
    assert splitter.feed(b"abcdefgh") == [LINE_TOO_LONG]
    assert splitter.pending == 0
    assert splitter.end() == []


def test_end_gives_the_start_of_a_byte_order_mark_as_a_line() -> None:
    splitter = LineSplitter(100)
    splitter.feed(b"\xef\xbb")
    assert splitter.pending == 2
    assert splitter.end() == [b"\xef\xbb"]


# Properties: an independent, byte-at-a-time reference


def reference_edit(line: bytes) -> bytes:
    """
    The editing rules as a byte-at-a-time state machine (ECMA-48's forms):
    written apart from L{chat.core.terminal}, which uses a regular expression.
    """
    kept = bytearray()
    state = "text"
    for byte in line:
        while True:  # a byte that cannot continue a sequence is read again as text
            if state == "text":
                if byte == 0x1B:
                    state = "esc"
                elif byte in (0x08, 0x7F):
                    count = 0
                    while kept and 0x80 <= kept[-1] <= 0xBF:
                        kept.pop()
                        count += 1
                    if kept and (count == 0 or kept[-1] >= 0xC0):
                        kept.pop()
                else:
                    kept.append(byte)
            elif state == "esc":
                if byte == ord("["):
                    state = "csi"
                elif byte in b"]PX^_":
                    state = "string"
                elif byte == ord("O"):
                    state = "ss3"
                elif 0x20 <= byte <= 0x2F:
                    state = "nf"
                elif 0x30 <= byte <= 0x7E:
                    state = "text"
                else:
                    state = "text"
                    continue
            elif state in ("csi", "csi-intermediate"):
                if state == "csi" and 0x30 <= byte <= 0x3F:
                    pass
                elif 0x20 <= byte <= 0x2F:
                    state = "csi-intermediate"
                elif 0x40 <= byte <= 0x7E:
                    state = "text"
                else:
                    state = "text"
                    continue
            elif state == "ss3":
                state = "text"
                if not 0x20 <= byte <= 0x7E:
                    continue
            elif state == "nf":
                if 0x30 <= byte <= 0x7E:
                    state = "text"
                elif not 0x20 <= byte <= 0x2F:
                    state = "text"
                    continue
            elif state == "string":
                if byte == 0x07:
                    state = "text"
                elif byte == 0x1B:
                    state = "string-esc"
            else:  # "string-esc"
                if byte == ord("\\"):
                    state = "text"
                else:
                    state = "esc"
                    continue
            break
    return bytes(kept)


class Reference:
    """The splitting rules, one byte at a time."""

    def __init__(self, stream: bytes, max_length: int) -> None:
        stream = stream.removeprefix(BYTE_ORDER_MARK)
        self.lines: list[Line] = []
        self.seen_line_end = False
        line = bytearray()
        after_cr = discarding = False
        for byte in stream:
            if after_cr:
                after_cr = False
                if byte in (0x0A, 0x00):
                    continue
            if byte in (0x0D, 0x0A):
                if not discarding:
                    self.lines.append(reference_edit(bytes(line)))
                line.clear()
                discarding = False
                after_cr = byte == 0x0D
                self.seen_line_end = True
            elif not discarding:
                line.append(byte)
                if len(line) > max_length:
                    self.lines.append(LINE_TOO_LONG)
                    line.clear()
                    discarding = True
        self.pending = len(line)
        self.end = [reference_edit(bytes(line))] if line else []


def test_the_reference_follows_the_examples() -> None:
    assert Reference(b"a\r\nb\r\x00c\rd\ne\r\r\n\x00", 100).lines == [
        b"a",
        b"b",
        b"c",
        b"d",
        b"e",
        b"",
    ]
    assert reference_edit(b"hel\x1b[Dlo\x1b]0;t\x07 x\x7f\xc3\xa9\x08!") == b"hello !"


# Bytes that matter to the rules, and a few others, so that the rules meet.
STREAM_BYTES = st.binary(max_size=80) | st.lists(
    st.sampled_from(
        [
            *b"\r\n\x00\x1b\x08\x7f\x07",
            *b"[]OPX^_\\(;1 Aa",
            *BYTE_ORDER_MARK,
            0xC3,
            0xA9,
            0xFF,
        ]
    ),
    max_size=80,
).map(bytes)


@given(
    st.booleans(),
    STREAM_BYTES,
    st.lists(st.integers(min_value=0, max_value=12)),
    st.integers(min_value=2, max_value=20),
)
def test_any_stream_in_any_reads_follows_the_reference(
    bom: bool, data: bytes, cuts: list[int], max_length: int
) -> None:
    """
    Read after read, the lines given so far are the reference's for the
    bytes so far: a line is given as soon as its line end arrives, and the
    segmentation never matters.
    """
    stream = (BYTE_ORDER_MARK if bom else b"") + data
    splitter = LineSplitter(max_length)
    got: list[Line] = []
    sent = b""
    for chunk in cut(stream, cuts):
        got += splitter.feed(chunk)
        sent += chunk
        expected = Reference(sent, max_length)
        assert got == expected.lines
        assert splitter.pending == expected.pending
        assert splitter.seen_line_end == expected.seen_line_end
        assert len(splitter._buffer) <= max_length
    assert splitter.end() == Reference(stream, max_length).end


TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=8).map(str.encode)
ESCAPE_SEQUENCES = st.sampled_from(
    [
        b"\x1b[A",
        b"\x1b[1;5D",
        b"\x1b[?2004h",
        b"\x1b[2 q",
        b"\x1bOB",
        b"\x1b]0;title\x07",
        b"\x1b]8;;http://x/\x1b\\",
        b"\x1bP1$r\x1b\\",
        b"\x1b_apc\x1b\\",
        b"\x1b(B",
        b"\x1b=",
        b"\x1b",
        b"\x1b[",
        b"\x1b]cut short",
    ]
)
ERASURES = st.sampled_from([b"\x08", b"\x7f"])
OTHER_BYTES = st.binary(max_size=4).map(lambda data: data.translate(None, b"\r\n"))
LINES = st.lists(st.lists(TEXT | ESCAPE_SEQUENCES | ERASURES | OTHER_BYTES).map(b"".join))
LINE_ENDS = st.sampled_from([b"\n", b"\r\n", b"\r\x00", b"\r"])


@given(
    st.data(),
    LINES,
    st.booleans(),
    st.lists(st.integers(min_value=0, max_value=12)),
    st.integers(min_value=1, max_value=40),
)
def test_lines_with_any_line_ends_in_any_reads(
    data: st.DataObject, lines: list[bytes], bom: bool, cuts: list[int], max_length: int
) -> None:
    """
    Lines of text, escape sequences, erasures and UTF-8 with any mix of line
    ends, the last one perhaps unterminated: each line is given as the
    reference edits it, whatever the segmentation.
    """
    ends = [data.draw(LINE_ENDS) for _ in lines]
    unterminated = data.draw(st.booleans()) and lines
    if unterminated:
        ends[-1] = b""
    stream = (BYTE_ORDER_MARK if bom else b"") + b"".join(map(bytes.__add__, lines, ends))
    expected: list[Line] = []
    after_bare_cr = False
    for index, (line, end) in enumerate(zip(lines, ends, strict=True)):
        if after_bare_cr and line.startswith(b"\x00"):
            line = line[1:]  # the CR and this NUL are a CR NUL
        elif after_bare_cr and not line and end == b"\n":
            after_bare_cr = False  # the CR and this LF are a CR LF
            continue
        if index == 0 and not bom and line.startswith(BYTE_ORDER_MARK):
            line = line[len(BYTE_ORDER_MARK) :]  # a U+FEFF the text began with
        after_bare_cr = end == b"\r"
        if len(line) > max_length:
            expected.append(LINE_TOO_LONG)
        elif end or line:
            expected.append(reference_edit(line))
    splitter = LineSplitter(max_length)
    got: list[Line] = []
    for chunk in cut(stream, cuts):
        got += splitter.feed(chunk)
    got += splitter.end()
    assert got == expected
    whole = LineSplitter(max_length)
    assert whole.feed(stream) + whole.end() == expected
