"""atheris fuzz target for the messages of /peerloom/compute/1.0.0 (apps/compute/wire.py) and the volunteers'
capacity adverts on pub/sub (apps/compute/advert.py).

Run: `python tests/fuzz/fuzz_compute_wire.py [corpus dir] [-max_total_time=N]`. The first input byte picks the
target, the rest is its input. `decode` of a payload, and a FrameReader fed a byte stream under a small bound, may
raise only ComputeWireError; what decodes keeps its fields within their bounds and re-encodes to the same payload.
`decode_advert` may raise only AdvertError; an advert that decodes re-encodes to the same bytes.
"""

from __future__ import annotations

import harness

from peerloom.apps.compute.advert import MAX_ADDRS, Advert, AdvertError, decode_advert, encode_advert
from peerloom.apps.compute.wire import (
    MAX_CREDITS,
    MAX_KIND,
    MAX_TEXT,
    Blob,
    Capacity,
    ComputeWireError,
    Credit,
    Credits,
    FrameReader,
    GetBlob,
    Message,
    Refused,
    RunUnit,
    UnitDone,
    UnitFailed,
    decode,
    encode,
)
from peerloom.codec.multiaddr import Multiaddr

_FIELD = 4096


def _check(message: Message, payload: bytes) -> None:
    if isinstance(message, (RunUnit, Credits)):
        assert len(message.credits) <= MAX_CREDITS
    if isinstance(message, UnitFailed):
        assert len(message.kind.encode()) <= MAX_KIND and len(message.message.encode()) <= MAX_TEXT
    for data in (getattr(message, "input", None), getattr(message, "output", None), getattr(message, "data", None)):
        assert data is None or len(data) <= _FIELD
    assert encode(message)[-len(payload):] == payload  # the format has one spelling of each message


def _decode(data: bytes) -> None:
    _check(decode(data, _FIELD), data)


def _stream(data: bytes) -> None:
    reader = FrameReader(max_frame=_FIELD)
    for start in range(0, len(data), 7):
        reader.feed(data[start:start + 7])
        while (message := reader.next()) is not None:
            assert len(encode(message)) <= _FIELD + 10


def _advert(data: bytes) -> None:
    advert = decode_advert(data)
    assert len(advert.addrs) <= MAX_ADDRS and all(a.peer_id is None for a in advert.addrs)
    assert encode_advert(advert) == data


TestOneInput = harness.Pick(_decode, _stream, (_advert, AdvertError), allowed=ComputeWireError)


def seeds() -> list[bytes]:
    """Valid messages for both targets, to start a corpus from."""
    job = bytes(range(16))
    messages: list[Message] = [
        Capacity(2, 1 << 28, 3600, True),
        RunUnit(job, 3, b"\x01" * 32, b"\x02" * 32, 10**9, 1 << 24, 1000, 4096, b"input", (Credit(job, 1, 9),)),
        UnitDone(b"37 1.4e+04 14.8\n", 675920, 12),
        UnitFailed("Trap", "the module trapped", 3),
        Refused("busy"),
        GetBlob(b"\x03" * 32),
        Blob(b"\0asm\x01\0\0\0"),
        Credits((Credit(job, 0, 1),)),
    ]
    frames = [encode(m) for m in messages]
    payloads = [f[1:] for f in frames]  # every frame here is under 128 bytes: a one-byte length
    advert = encode_advert(Advert(2, 1 << 28, 86400, (Multiaddr("/ip4/127.0.0.1/tcp/4001"),
                                                     Multiaddr("/ip6/::1/tcp/4002"))))
    return [b"\x00" + p for p in payloads] + [b"\x01" + b"".join(frames), b"\x02" + advert]


if __name__ == "__main__":
    harness.main(TestOneInput)
