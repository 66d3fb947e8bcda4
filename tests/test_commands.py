"""Tests for L{chat.core.text}: decoding, command words and names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.core.text import _CONTROLS, decode, fold, is_valid_name, split_command


def test_invalid_utf8_is_replaced() -> None:
    assert decode(b"hi \xff\xfe there") == "hi \ufffd\ufffd there"


def test_control_characters_are_removed_but_tab_kept() -> None:
    assert decode(b"a\x1b[31mred\x07\x00 b\tc\x7f\xc2\x9b") == "a[31mred b\tc"


@given(st.binary() | st.text().map(str.encode))
def test_the_ascii_fast_path_decodes_like_the_general_one(raw: bytes) -> None:
    general = raw.decode("utf-8", "replace").translate(_CONTROLS).strip()
    assert decode(raw) == general


@given(st.binary())
def test_decoded_text_has_no_control_characters(raw: bytes) -> None:
    text = decode(raw)
    assert not any(ord(c) < 0x20 and c != "\t" or 0x7F <= ord(c) < 0xA0 for c in text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("join bob", ("JOIN", "bob")),
        ("Join  bob ", ("JOIN", "bob")),
        ("MESG bob  two  spaces", ("MESG", "bob  two  spaces")),
        ("list", ("LIST", "")),
        ("bcst\thello", ("BCST", "hello")),
        ("j0in x", ("j0in", "x")),
        ("ǰoin x", ("ǰoin", "x")),
    ],
)
def test_split_command(text: str, expected: tuple[str, str]) -> None:
    assert split_command(text.strip()) == expected


@pytest.mark.parametrize("name", ["a", "Bob", "x1", "A" * 32, "0"])
def test_valid_names(name: str) -> None:
    assert is_valid_name(name)


@pytest.mark.parametrize("name", ["", "A" * 33, "bob!", "bo b", "bøb", "bob\n", "ｂob", "١"])
def test_invalid_names(name: str) -> None:
    assert not is_valid_name(name)


def test_fold_ignores_case_and_look_alikes() -> None:
    assert fold("Bob") == fold("BOB") == "bob"
    assert fold("alice") == fold("A1ICE") == fold("aIice") == fold("al1ce")
    assert fold("B0B") == fold("bob")
