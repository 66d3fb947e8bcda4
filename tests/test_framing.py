"""Tests for L{chat.framing.LineSplitter}."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chat.framing import LINE_TOO_LONG, LineSplitter


def test_lf_crlf_and_pipelined_lines() -> None:
    assert LineSplitter(100).feed(b"a\nb\r\nc\r\n\n") == [b"a", b"b", b"c", b""]


def test_partial_line_waits_for_its_end() -> None:
    splitter = LineSplitter(100)
    assert splitter.feed(b"JO") == []
    assert splitter.feed(b"IN bob\r") == []
    assert splitter.feed(b"\nLI") == [b"JOIN bob"]
    assert splitter.feed(b"ST\n") == [b"LIST"]


def test_line_at_the_limit_is_accepted() -> None:
    assert LineSplitter(4).feed(b"abcd\r\nabcd\n") == [b"abcd", b"abcd"]


def test_line_over_the_limit_is_refused_and_the_next_line_kept() -> None:
    assert LineSplitter(4).feed(b"abcde\nok\n") == [LINE_TOO_LONG, b"ok"]


def test_overlong_partial_is_reported_at_once_and_its_tail_skipped() -> None:
    splitter = LineSplitter(4)
    assert splitter.feed(b"abcdefgh") == [LINE_TOO_LONG]
    assert splitter.feed(b"LIST still the same line") == []
    assert splitter.feed(b"...\nLIST\n") == [b"LIST"]


def test_buffer_never_exceeds_the_limit() -> None:
    splitter = LineSplitter(10)
    for _ in range(1000):
        splitter.feed(b"x" * 7)
        assert len(splitter._buffer) <= 11


@given(st.lists(st.binary(max_size=30), max_size=20), st.integers(1, 8), st.booleans())
def test_segmentation_never_changes_the_lines(lines: list[bytes], size: int, crlf: bool) -> None:
    lines = [line.replace(b"\n", b"") for line in lines]
    end = b"\r\n" if crlf else b"\n"  # CR LF throughout, or LF with CRs here and there
    stream = b"".join(line + end for line in lines)
    splitter = LineSplitter(16)
    got = []
    for i in range(0, len(stream), size):
        got += splitter.feed(stream[i : i + size])
    if not crlf:
        lines = [line.removesuffix(b"\r") for line in lines]
    assert got == [LINE_TOO_LONG if len(line) > 16 else line for line in lines]
