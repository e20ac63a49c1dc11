"""Text positions between Yjs (UTF-16 code units, as browsers count) and pycrdt 0.14.13 (UTF-8 bytes).

pycrdt's `Text` indexes by UTF-8 byte (pycrdt issue 308, fix unreleased) while Yjs and every browser editor index by
UTF-16 code unit. "a😀b": the 'b' is at 3 in Yjs and at 5 in pycrdt. An edit sent with the wrong unit lands
elsewhere, and one cut inside a character makes an update with an empty or split item that a Yjs client may never
integrate. Every position crossing the boundary goes through these functions; an offset that falls inside a
character (between the bytes of one code point, or between the halves of a surrogate pair) is a `TextPositionError`.
"""

from __future__ import annotations

from pycrdt import Text

from peerloom.apps.docs.keys import DocError


class TextPositionError(DocError):
    """An offset outside the text or inside one character."""


def _units(char: str) -> tuple[int, int]:
    """(UTF-16 units, UTF-8 bytes) of one code point."""
    code = ord(char)
    if code < 0x80:
        return 1, 1
    if code < 0x800:
        return 1, 2
    if code < 0x10000:
        return 1, 3
    return 2, 4


def utf16_to_utf8(text: str, offset: int) -> int:
    """The UTF-8 byte offset of the UTF-16 code-unit `offset` in `text`."""
    if offset < 0:
        raise TextPositionError(f"negative text offset {offset}")
    u16 = u8 = 0
    for char in text:
        if u16 == offset:
            return u8
        w16, w8 = _units(char)
        if u16 + w16 > offset:
            raise TextPositionError(f"UTF-16 offset {offset} is inside the surrogate pair of {char!r}")
        u16, u8 = u16 + w16, u8 + w8
    if u16 == offset:
        return u8
    raise TextPositionError(f"UTF-16 offset {offset} is past the end of the text ({u16} units)")


def utf8_to_utf16(text: str, offset: int) -> int:
    """The UTF-16 code-unit offset of the UTF-8 byte `offset` in `text`."""
    if offset < 0:
        raise TextPositionError(f"negative text offset {offset}")
    u16 = u8 = 0
    for char in text:
        if u8 == offset:
            return u16
        w16, w8 = _units(char)
        if u8 + w8 > offset:
            raise TextPositionError(f"UTF-8 offset {offset} is inside the encoding of {char!r}")
        u16, u8 = u16 + w16, u8 + w8
    if u8 == offset:
        return u16
    raise TextPositionError(f"UTF-8 offset {offset} is past the end of the text ({u8} bytes)")


def utf16_length(text: str) -> int:
    """Length of `text` in UTF-16 code units (what a Yjs `Y.Text.length` says)."""
    return sum(_units(char)[0] for char in text)


def insert_utf16(ytext: Text, index: int, content: str) -> None:
    """Insert `content` into a pycrdt Text at the UTF-16 offset `index` (where a Yjs client would)."""
    ytext.insert(utf16_to_utf8(str(ytext), index), content)


def delete_utf16(ytext: Text, index: int, length: int) -> None:
    """Delete `length` UTF-16 code units at `index` from a pycrdt Text (as Yjs `delete(index, length)`)."""
    if length < 0:
        raise TextPositionError(f"negative delete length {length}")
    current = str(ytext)
    start = utf16_to_utf8(current, index)
    end = utf16_to_utf8(current, index + length)
    if end > start:
        del ytext[start:end]
