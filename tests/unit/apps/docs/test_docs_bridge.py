"""The browser editor's messages (apps/docs/bridge): y-websocket's framing of y-protocols sync, awareness and auth
messages, peerloom's ack, and the checks on everything a browser sends."""

from __future__ import annotations

import pytest
from pycrdt import Doc, Text

from peerloom.apps.docs.bridge import (
    MAX_MESSAGE_SIZE,
    BridgeMessageError,
    Changes,
    Presence,
    StateVector,
    decode_browser_message,
    encode_ack,
    encode_awareness,
    encode_denied,
    encode_step1,
    encode_step2,
    encode_update,
)
from peerloom.apps.docs.updates import MAX_UPDATE_SIZE


def _update(text: str = "héllo 日本語 a😀b") -> tuple[Doc, bytes]:
    doc = Doc()
    doc.get("text", type=Text).insert(0, text)
    return doc, doc.get_update()


def test_sync_messages_are_framed_as_y_protocols_frames_them() -> None:
    doc, update = _update()
    vector = doc.get_state()
    # lib0: varUint(messageSync = 0) varUint(step) varUint8Array(payload)
    assert encode_step1(vector) == bytes([0, 0, len(vector)]) + vector
    assert encode_step2(update) == bytes([0, 1, len(update)]) + update
    assert encode_update(update) == bytes([0, 2, len(update)]) + update
    assert encode_awareness(b"\x01\x05\x01\x02{}") == b"\x01\x06\x01\x05\x01\x02{}"
    assert encode_denied("read-only") == b"\x02\x00\x09read-only"  # y-protocols auth: permission denied, reason
    assert encode_ack(300) == bytes([100, 0xAC, 0x02])


def test_a_browser_s_messages_decode_to_what_they_carry() -> None:
    doc, update = _update()
    assert decode_browser_message(encode_step1(doc.get_state())) == StateVector(doc.get_state())
    assert decode_browser_message(encode_update(update)) == Changes(update, empty=False)
    assert decode_browser_message(encode_step2(update)) == Changes(update, empty=False)
    assert decode_browser_message(encode_step2(b"\x00\x00")) == Changes(b"\x00\x00", empty=True)  # nothing new
    assert decode_browser_message(encode_awareness(b"\x00")) == Presence(b"\x00")


def test_a_long_update_s_length_takes_several_bytes() -> None:
    _, update = _update("x" * 1000)
    assert len(update) > 127
    assert decode_browser_message(encode_update(update)) == Changes(update, empty=False)


@pytest.mark.parametrize("data", [
    b"", b"\x05", b"\x02\x00\x01x",  # nothing, an unknown type, auth (the daemon's to send)
    b"\x00\x03\x00",  # unknown sync type
    b"\x00\x02\x05\x00\x00",  # the update is shorter than its length says
    b"\x00\x02\x02\x00\x00\x00",  # a byte after the update
    b"\x00\x02\x03\x00\x00\x07",  # a byte after the Yjs update inside the field (pycrdt would ignore it)
    b"\x00\x02\x03\x01\x01\x05",  # a Yjs update cut short
    b"\x00\x00\x02\x01\x05",  # a state vector cut short
    b"\x00\x02\xff\xff\xff\xff\xff\xff\xff\xff\x7f",  # a length varint over 8 bytes
])
def test_malformed_messages_are_refused(data: bytes) -> None:
    with pytest.raises(BridgeMessageError):
        decode_browser_message(data)


def test_sizes_are_bounded_before_anything_is_read() -> None:
    with pytest.raises(BridgeMessageError, match="over the limit"):
        decode_browser_message(b"\x00\x02" + bytes(MAX_MESSAGE_SIZE))
    claimed = MAX_UPDATE_SIZE + 1  # a field claiming more than an update may hold, in a short message
    with pytest.raises(BridgeMessageError, match="over the"):
        decode_browser_message(b"\x00\x02" + _varint(claimed) + b"\x00\x00")
    with pytest.raises(BridgeMessageError, match="over the"):
        decode_browser_message(b"\x01" + _varint(64 * 1024 + 1) + b"\x00")


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))
