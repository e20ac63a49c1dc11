"""atheris fuzz target for the Noise handshake, its payload parser and the transport framing.

Run: `python tests/fuzz/fuzz_noise.py [corpus dir] [-atheris_runs=N]`. The first input byte picks the
parser; everything after it is fed in (the handshake in two pieces; transport frames through both `decrypt` and
`decrypt_into`, which must agree). Only NoiseError may escape.
"""

from __future__ import annotations

import harness
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from peerloom.net.noise import (
    MAX_PLAINTEXT,
    NoiseError,
    NoiseHandshake,
    NoiseTransport,
    _decode_payload,
    _decode_public_key,
)

_IDENTITY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
_STATIC = X25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
_KEY_A, _KEY_B = bytes(range(64, 96)), bytes(range(96, 128))


def _handshake(initiator: bool, data: bytes) -> None:
    side = NoiseHandshake(initiator=initiator, identity_key=_IDENTITY, static_key=_STATIC)
    side.start()
    middle = len(data) // 2
    for piece in (data[:middle], data[middle:]):
        side.receive(piece)
        if side.complete:
            side.transport().decrypt(b"")
            return


def _transport(data: bytes) -> None:
    """The bytes through `decrypt`, and through `decrypt_into` as the connection drives it: both must agree."""
    middle = len(data) // 3
    pieces = (data[:middle], data[middle:])
    transport = NoiseTransport(_KEY_A, _KEY_B)
    try:
        whole = b"".join([transport.decrypt(piece) for piece in pieces])
    except NoiseError:
        whole = None
    into = NoiseTransport(_KEY_A, _KEY_B)
    out = bytearray(MAX_PLAINTEXT)
    pending = bytearray()
    plaintext = bytearray()
    try:
        for piece in pieces:
            pending += piece
            while True:
                used, size = into.decrypt_into(pending, out)
                plaintext += out[:size]
                del pending[:used]
                if not used:
                    break
    except NoiseError:
        assert whole is None
        raise
    assert whole == plaintext


def _payload(data: bytes) -> None:
    identity_key, _, muxers = _decode_payload(data)
    assert all(isinstance(muxer, str) for muxer in muxers)
    _decode_public_key(identity_key)


TestOneInput = harness.Pick(
    lambda data: _handshake(False, data),
    lambda data: _handshake(True, data),
    _transport,
    _payload,
    _decode_public_key,
    allowed=(NoiseError,),
)


if __name__ == "__main__":
    harness.main(TestOneInput)
