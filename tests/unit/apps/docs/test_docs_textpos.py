"""UTF-16 (Yjs) and UTF-8 (pycrdt) text positions."""

from __future__ import annotations

import pytest
from pycrdt import Doc, Text

from peerloom.apps.docs.textpos import (
    TextPositionError,
    delete_utf16,
    insert_utf16,
    utf8_to_utf16,
    utf16_length,
    utf16_to_utf8,
)

CASES = {  # text: [(utf16, utf8)] at every character boundary
    "héllo": [(0, 0), (1, 1), (2, 3), (3, 4), (4, 5), (5, 6)],
    "日本語": [(0, 0), (1, 3), (2, 6), (3, 9)],
    "a😀b": [(0, 0), (1, 1), (3, 5), (4, 6)],
}


@pytest.mark.parametrize("text", sorted(CASES))
def test_offsets_convert_both_ways(text: str) -> None:
    for u16, u8 in CASES[text]:
        assert utf16_to_utf8(text, u16) == u8 and utf8_to_utf16(text, u8) == u16
    assert utf16_length(text) == CASES[text][-1][0]


@pytest.mark.parametrize(("text", "utf16", "utf8"), [
    ("héllo", 6, 2), ("日本語", 4, 1), ("日本語", -1, 4), ("a😀b", 2, 2), ("a😀b", 5, 3), ("a😀b", 9, 7),
])
def test_offsets_inside_a_character_or_outside_the_text_are_errors(text: str, utf16: int, utf8: int) -> None:
    with pytest.raises(TextPositionError):
        utf16_to_utf8(text, utf16)
    with pytest.raises(TextPositionError):
        utf8_to_utf16(text, utf8)


@pytest.mark.parametrize(("text", "index", "expected"), [
    ("héllo", 2, "héXllo"), ("日本語", 2, "日本X語"), ("a😀b", 3, "a😀Xb"), ("a😀b", 4, "a😀bX"),
])
def test_inserts_land_where_yjs_puts_them(text: str, index: int, expected: str) -> None:
    ytext = Doc().get("t", type=Text)
    ytext.insert(0, text)
    insert_utf16(ytext, index, "X")
    assert str(ytext) == expected == text[:len(text.encode("utf-16-le")[:2 * index].decode("utf-16-le"))] + "X" + \
        text[len(text.encode("utf-16-le")[:2 * index].decode("utf-16-le")):]


def test_deletes_take_utf16_units() -> None:
    ytext = Doc().get("t", type=Text)
    ytext.insert(0, "a😀b日本語")
    delete_utf16(ytext, 1, 2)
    assert str(ytext) == "ab日本語"
    delete_utf16(ytext, 3, 1)
    assert str(ytext) == "ab日語"
    with pytest.raises(TextPositionError):
        delete_utf16(ytext, 0, 9)
