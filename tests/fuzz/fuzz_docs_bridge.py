"""atheris fuzz target for the messages a browser editor sends the daemon (apps/docs/bridge).

Run: `python tests/fuzz/fuzz_docs_bridge.py [corpus dir] [-max_total_time=N]`. The first input byte picks the
target: 0 decodes the rest as one editor message (a decoded update or state vector is exactly one well-formed Yjs
value, and an update re-encodes to the same message); 1 decodes the rest framed as a sync update, so the fuzzer
reaches the Yjs update reader through the bridge. Only BridgeMessageError escapes.
"""

from __future__ import annotations

import harness
from pycrdt import Doc, Text

from peerloom.apps.docs.bridge import (
    BridgeMessageError,
    Changes,
    Presence,
    StateVector,
    decode_browser_message,
    encode_awareness,
    encode_step1,
    encode_update,
)


def _message(data: bytes) -> None:
    message = decode_browser_message(data)
    if isinstance(message, Presence):
        assert encode_awareness(message.update) == data
    elif isinstance(message, StateVector):
        assert encode_step1(message.vector) == data


def _framed_update(data: bytes) -> None:
    message = decode_browser_message(encode_update(data))
    assert isinstance(message, Changes) and message.update == data


TestOneInput = harness.Pick(_message, _framed_update, allowed=BridgeMessageError)


def seeds() -> list[bytes]:
    """A state vector, an update and an awareness message as a browser sends them."""
    doc = Doc()
    doc.get("text", type=Text).insert(0, "héllo 日本語 a😀b")
    update = doc.get_update()
    awareness = bytes([1, 7, 1, 2]) + b"{}"
    return [b"\x00" + encode_step1(doc.get_state()), b"\x00" + encode_update(update),
            b"\x00" + encode_awareness(awareness), b"\x01" + update]


if __name__ == "__main__":
    harness.main(TestOneInput)
