"""atheris fuzz target for the MSE/PE handshake (torrent/mse.py), both roles.

Run: `python tests/fuzz/fuzz_mse.py [corpus dir] [-max_total_time=N]`. The first input byte picks the target:
raw bytes to an answering or a dialling side (cut in pieces by the next byte), or the plaintext of message 3 or 4
after a genuine key exchange (encrypted here with the right RC4 stream, so the fuzzer reaches the crypto fields,
the pads, len(IA) and IA). Only MseError may escape; an established handshake is checked against the rules.
"""

from __future__ import annotations

import harness

from peerloom.torrent import mse
from peerloom.torrent.mse import PLAINTEXT, RC4, MseError, MseHandshake, Rc4

_INFO_HASH = bytes(range(20))
_XA = 0x1234567890ABCDEF1234567890ABCDEF12345678
_XB = 0xFEDCBA0987654321FEDCBA0987654321FEDCBA09
_SECRET = pow(2, _XA * _XB, mse.P).to_bytes(mse.KEY_LEN, "big")
_HANDSHAKE = b"\x13BitTorrent protocol" + bytes(8) + _INFO_HASH + bytes(20)


def _answering() -> MseHandshake:
    table = {mse.skey_hash(_INFO_HASH): _INFO_HASH}
    return MseHandshake(outgoing=False, find_skey=table.get, private_key=_XB, pad=bytes)


def _dialling(provide: int = PLAINTEXT | RC4) -> MseHandshake:
    return MseHandshake(
        outgoing=True, skey=_INFO_HASH, provide=provide, initial_payload=lambda: _HANDSHAKE, private_key=_XA, pad=bytes
    )


def _check(hs: MseHandshake, provide: int = PLAINTEXT | RC4) -> None:
    done = hs.established
    if done is None:
        return
    assert done.method in (PLAINTEXT, RC4) and done.method & provide
    assert (done.encrypt is None) == (done.decrypt is None) == (done.method == PLAINTEXT)


def _feed(hs: MseHandshake, data: bytes) -> None:
    if not data:
        return
    step, stream = 1 + data[0], data[1:]
    for at in range(0, len(stream), step):
        if hs.established is not None:
            return
        hs.receive(stream[at : at + step])
    _check(hs)


def _raw_to_answering(data: bytes) -> None:
    _feed(_answering(), data)


def _raw_to_dialling(data: bytes) -> None:
    hs = _dialling()
    hs.start()
    _feed(hs, data)


def _message3(data: bytes) -> None:
    """A genuine Ya and the sync hashes, then the fuzzer's plaintext of ENCRYPT(VC, crypto_provide, ..., IA)."""
    b = _answering()
    b.receive(pow(2, _XA, mse.P).to_bytes(mse.KEY_LEN, "big"))
    head = mse.sha1(b"req1", _SECRET) + bytes(
        x ^ y for x, y in zip(mse.skey_hash(_INFO_HASH), mse.sha1(b"req3", _SECRET), strict=True)
    )
    b.receive(head + Rc4(mse.sha1(b"keyA", _SECRET, _INFO_HASH)).update(data))
    _check(b)
    if b.established is not None:
        assert len(b.established.payload) <= len(data)


def _message4(data: bytes) -> None:
    """A genuine Yb, then the fuzzer's plaintext of ENCRYPT(VC, crypto_select, len(PadD), PadD) and payload."""
    provide = data[0] & 3 if data else PLAINTEXT | RC4
    a = _dialling(provide or RC4)
    a.start()
    a.receive(pow(2, _XB, mse.P).to_bytes(mse.KEY_LEN, "big"))
    a.receive(Rc4(mse.sha1(b"keyB", _SECRET, _INFO_HASH)).update(data[1:]))
    _check(a, provide or RC4)


def seeds() -> list[bytes]:
    ia = len(_HANDSHAKE).to_bytes(2, "big") + _HANDSHAKE
    m3 = mse.VC + (3).to_bytes(4, "big") + b"\x00\x04" + b"padc" + ia + b"\x00\x00\x00\x01\x02"
    m4 = mse.VC + (2).to_bytes(4, "big") + b"\x00\x02" + b"pd" + b"payload"
    return [b"\x00\x05" + bytes(700), b"\x01\x10" + bytes(700), b"\x02" + m3, b"\x03\x03" + m4, b"\x07\x01" + m4]


TestOneInput = harness.Pick(_raw_to_answering, _raw_to_dialling, _message3, _message4, allowed=MseError)


if __name__ == "__main__":
    harness.main(TestOneInput)
