"""libp2p Noise (`/noise`): the XX handshake and the encrypted transport, sans-I/O.

The handshake is `Noise_XX_25519_ChaChaPoly_SHA256` (Noise Protocol Framework rev 34) with an empty
prologue, carrying the libp2p `NoiseHandshakePayload` (libp2p noise spec, "The libp2p Handshake
Payload"): the responder sends its payload in message 2, the initiator in message 3. Every handshake
and transport message is framed with a 2-byte big-endian length (libp2p noise spec, "Wire Format").
Only Ed25519 identity keys are accepted.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable, Iterator

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from peerloom.codec.protobuf import Field, ProtobufError, iter_fields
from peerloom.codec.protobuf import encode_bytes_field as _encode_field
from peerloom.errors import ProtocolError
from peerloom.identity import KeyEncodingError, decode_public_key
from peerloom.identity import encode_public_key as _encode_public_key

PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
MAX_FRAME = 65535  # largest Noise message (Noise section 3), also the 2-byte length prefix's limit
TAG_SIZE = 16
MAX_PLAINTEXT = MAX_FRAME - TAG_SIZE  # 65519 plaintext bytes per transport frame
MAX_REMOTE_MUXERS = 256

_DHLEN = 32
_HASHLEN = 32
_NONCE_LIMIT = 2**64 - 1  # Noise 5.1: n = 2^64-1 is reserved, so the last usable nonce is 2^64-2
_NONCE_PREFIX = bytes(4)  # Noise 12.3: 32 zero bits, then the 64-bit little-endian counter
_STATIC_KEY_SIG_PREFIX = b"noise-libp2p-static-key:"
_FRAME_OVERHEAD = 2 + TAG_SIZE


class NoiseError(ProtocolError):
    """The remote broke the Noise handshake or sent a frame that fails authentication; close the connection."""


# --- Noise primitives (Noise sections 4, 5.1, 5.2) ---------------------------------------------------------------


def _hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _hkdf(chaining_key: bytes, input_key_material: bytes, num_outputs: int) -> tuple[bytes, ...]:
    """HKDF of Noise section 4.3 with HMAC-SHA256: two or three 32-byte outputs."""
    temp_key = hmac.digest(chaining_key, input_key_material, "sha256")
    outputs: list[bytes] = []
    previous = b""
    for index in range(1, num_outputs + 1):
        previous = hmac.digest(temp_key, previous + bytes((index,)), "sha256")
        outputs.append(previous)
    return tuple(outputs)


def _nonce(counter: int) -> bytes:
    return _NONCE_PREFIX + counter.to_bytes(8, "little")


class _CipherState:
    """Noise 5.1 CipherState for handshake payloads: k (or none) and the nonce counter n."""

    __slots__ = ("_aead", "n")

    def __init__(self, key: bytes | None = None) -> None:
        self._aead = ChaCha20Poly1305(key) if key is not None else None
        self.n = 0

    @property
    def has_key(self) -> bool:
        return self._aead is not None

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if self._aead is None:
            return plaintext
        if self.n >= _NONCE_LIMIT:
            raise NoiseError("Noise nonce space exhausted")
        ciphertext = self._aead.encrypt(_nonce(self.n), plaintext, ad)
        self.n += 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        if self._aead is None:
            return ciphertext
        if self.n >= _NONCE_LIMIT:
            raise NoiseError("Noise nonce space exhausted")
        try:
            plaintext = self._aead.decrypt(_nonce(self.n), ciphertext, ad)
        except InvalidTag:
            raise NoiseError("Noise handshake message failed authentication") from None
        self.n += 1
        return plaintext


class _SymmetricState:
    """Noise 5.2 SymmetricState: chaining key ck, handshake hash h and the current CipherState."""

    __slots__ = ("_cipher", "ck", "h")

    def __init__(self, protocol_name: bytes) -> None:
        if len(protocol_name) <= _HASHLEN:
            self.h = protocol_name.ljust(_HASHLEN, b"\x00")
        else:
            self.h = _hash(protocol_name)
        self.ck = self.h
        self._cipher = _CipherState()

    @property
    def has_key(self) -> bool:
        return self._cipher.has_key

    def mix_key(self, input_key_material: bytes) -> None:
        self.ck, temp_key = _hkdf(self.ck, input_key_material, 2)
        self._cipher = _CipherState(temp_key)

    def mix_hash(self, data: bytes) -> None:
        self.h = _hash(self.h + data)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self._cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self._cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[bytes, bytes]:
        """Keys for initiator->responder and responder->initiator (Noise 5.2 Split)."""
        first, second = _hkdf(self.ck, b"", 2)
        return first, second


def _public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:  # a low-order point gives the all-zero secret, which `cryptography` refuses
        raise NoiseError("invalid X25519 public key from the remote") from None


class _XXState:
    """Noise 5.3 HandshakeState for the XX pattern, with payloads as opaque bytes.

    XX:  -> e
         <- e, ee, s, es
         -> s, se
    """

    __slots__ = ("_e", "_initiator", "_re", "_s", "_step", "_sym", "remote_static")

    def __init__(
        self,
        *,
        initiator: bool,
        static_key: X25519PrivateKey,
        prologue: bytes = b"",
        ephemeral_key: X25519PrivateKey | None = None,
    ) -> None:
        self._initiator = initiator
        self._s = static_key
        self._e = ephemeral_key
        self._re = b""
        self.remote_static: bytes | None = None
        self._step = 0
        self._sym = _SymmetricState(PROTOCOL_NAME)
        self._sym.mix_hash(prologue)

    @property
    def handshake_hash(self) -> bytes:
        return self._sym.h

    @property
    def finished(self) -> bool:
        return self._step == 3

    def _send_ephemeral(self) -> bytes:
        if self._e is None:
            self._e = X25519PrivateKey.generate()
        public = _public_bytes(self._e)
        self._sym.mix_hash(public)
        return public

    def write_message(self, payload: bytes) -> bytes:
        """Build the next message this side sends; payload is encrypted once a key exists."""
        sym = self._sym
        if self._step == 0 and self._initiator:
            parts = [self._send_ephemeral()]
        elif self._step == 1 and not self._initiator:
            parts = [self._send_ephemeral()]
            sym.mix_key(_dh(self._e, self._re))  # ee
            parts.append(sym.encrypt_and_hash(_public_bytes(self._s)))  # s
            sym.mix_key(_dh(self._s, self._re))  # es (responder side)
        elif self._step == 2 and self._initiator:
            parts = [sym.encrypt_and_hash(_public_bytes(self._s))]  # s
            sym.mix_key(_dh(self._s, self._re))  # se (initiator side)
        else:
            raise RuntimeError("not this side's turn to write a Noise handshake message")
        parts.append(sym.encrypt_and_hash(payload))
        self._step += 1
        return b"".join(parts)

    def read_message(self, message: bytes) -> bytes:
        """Process the remote's next message and return its decrypted payload (raises NoiseError)."""
        sym = self._sym
        if self._step == 0 and not self._initiator:
            if len(message) < _DHLEN:
                raise NoiseError("Noise message 1 is too short")
            self._re = message[:_DHLEN]
            sym.mix_hash(self._re)
            rest = message[_DHLEN:]
        elif self._step == 1 and self._initiator:
            if len(message) < 2 * _DHLEN + 2 * TAG_SIZE:
                raise NoiseError("Noise message 2 is too short")
            self._re = message[:_DHLEN]
            sym.mix_hash(self._re)
            sym.mix_key(_dh(self._e, self._re))  # ee
            remote_static = sym.decrypt_and_hash(message[_DHLEN : 2 * _DHLEN + TAG_SIZE])  # s
            sym.mix_key(_dh(self._e, remote_static))  # es (initiator side)
            self.remote_static = remote_static
            rest = message[2 * _DHLEN + TAG_SIZE :]
        elif self._step == 2 and not self._initiator:
            if len(message) < _DHLEN + 2 * TAG_SIZE:
                raise NoiseError("Noise message 3 is too short")
            remote_static = sym.decrypt_and_hash(message[: _DHLEN + TAG_SIZE])  # s
            sym.mix_key(_dh(self._e, remote_static))  # se (responder side)
            self.remote_static = remote_static
            rest = message[_DHLEN + TAG_SIZE :]
        else:
            raise RuntimeError("not this side's turn to read a Noise handshake message")
        payload = sym.decrypt_and_hash(rest)
        self._step += 1
        return payload

    def split(self) -> tuple[bytes, bytes]:
        """(send key, receive key) for this side once the third message is through."""
        if not self.finished:
            raise RuntimeError("the Noise handshake is not finished")
        to_responder, to_initiator = self._sym.split()
        return (to_responder, to_initiator) if self._initiator else (to_initiator, to_responder)


# --- protobuf: NoiseHandshakePayload ------------------------------------------------------------------------------


def _fields(data: bytes) -> Iterator[Field]:
    """The payload's protobuf fields; a malformed record is the remote's fault, so a NoiseError."""
    try:
        yield from iter_fields(data)
    except ProtobufError as exc:
        raise NoiseError(f"{exc} in the Noise payload") from None


def _bytes_field(field: Field, name: str) -> bytes:
    try:
        return field.as_bytes()
    except ProtobufError:
        raise NoiseError(f"Noise payload field {name} has the wrong wire type") from None


def _decode_public_key(data: bytes) -> Ed25519PublicKey:
    """The remote's Ed25519 identity key from its libp2p PublicKey protobuf; any fault is a NoiseError."""
    try:
        return decode_public_key(data)
    except KeyEncodingError as exc:
        raise NoiseError(f"bad identity key in the Noise payload: {exc}") from None


def _encode_payload(identity_key: bytes, identity_sig: bytes, stream_muxers: list[str]) -> bytes:
    """NoiseHandshakePayload {1 identity_key, 2 identity_sig, 4 extensions {2 stream_muxers}}."""
    payload = _encode_field(1, identity_key) + _encode_field(2, identity_sig)
    if stream_muxers:
        extensions = b"".join(_encode_field(2, muxer.encode()) for muxer in stream_muxers)
        payload += _encode_field(4, extensions)
    return payload


def _decode_payload(data: bytes) -> tuple[bytes, bytes, list[str]]:
    """(identity_key, identity_sig, stream_muxers) of a NoiseHandshakePayload; unknown fields are skipped."""
    identity_key = identity_sig = None
    muxers: list[str] = []
    for field in _fields(data):
        if field.number == 1:
            identity_key = _bytes_field(field, "identity_key")
        elif field.number == 2:
            identity_sig = _bytes_field(field, "identity_sig")
        elif field.number == 4:
            extensions = _bytes_field(field, "extensions")
            for extension in _fields(extensions):
                if extension.number == 2:
                    raw = _bytes_field(extension, "stream_muxers")
                    try:
                        muxers.append(raw.decode())
                    except UnicodeDecodeError:
                        raise NoiseError("a stream muxer name in the Noise payload is not UTF-8") from None
                    if len(muxers) > MAX_REMOTE_MUXERS:
                        raise NoiseError("too many stream muxers in the Noise payload")
    if identity_key is None or identity_sig is None:
        raise NoiseError("the Noise payload lacks the identity key or its signature")
    return identity_key, identity_sig, muxers


# --- the libp2p handshake -----------------------------------------------------------------------------------------


class _Stage(enum.Enum):
    START = "start"  # initiator before start()
    AWAIT_MSG1 = "await message 1"
    AWAIT_MSG2 = "await message 2"
    AWAIT_MSG3 = "await message 3"
    COMPLETE = "complete"
    FAILED = "failed"


def _frame(message: bytes) -> bytes:
    if len(message) > MAX_FRAME:
        raise ValueError("Noise handshake message exceeds 65535 bytes")
    return len(message).to_bytes(2, "big") + message


class NoiseHandshake:
    """Sans-I/O XX handshake, libp2p payload. Initiator sends msg1; responder msg2 (with its payload); initiator msg3.

    Feed received bytes to `receive` in any split; it returns framed bytes to send. Once `complete`,
    `transport()` gives the NoiseTransport, holding any bytes that arrived after the last handshake message.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        identity_key: Ed25519PrivateKey,
        static_key: X25519PrivateKey | None = None,
        stream_muxers: list[str] | None = None,
    ) -> None:
        static_key = static_key if static_key is not None else X25519PrivateKey.generate()
        self.initiator = initiator
        self._state = _XXState(initiator=initiator, static_key=static_key)
        # libp2p noise spec, "Static Key Authentication": sign the static public key with the identity key
        signature = identity_key.sign(_STATIC_KEY_SIG_PREFIX + _public_bytes(static_key))
        self._payload = _encode_payload(_encode_public_key(identity_key.public_key()), signature, stream_muxers or [])
        if len(self._payload) > MAX_FRAME - 2 * _DHLEN - 2 * TAG_SIZE:
            raise ValueError("the Noise handshake payload is too large")
        self._stage = _Stage.START if initiator else _Stage.AWAIT_MSG1
        self._buffer = bytearray()
        self.remote_identity: Ed25519PublicKey | None = None
        self.remote_identity_bytes: bytes | None = None
        self.remote_muxers: list[str] = []

    @property
    def complete(self) -> bool:
        return self._stage is _Stage.COMPLETE

    def start(self) -> bytes:
        """The initiator's framed message 1 (`-> e`, empty payload); b"" for the responder."""
        if not self.initiator:
            return b""
        if self._stage is not _Stage.START:
            raise RuntimeError("NoiseHandshake.start() called twice")
        self._stage = _Stage.AWAIT_MSG2
        return _frame(self._state.write_message(b""))

    def receive(self, data: bytes | bytearray | memoryview) -> bytes:
        """Take received bytes; return framed bytes to send (possibly b""). Raises NoiseError on bad input."""
        if self._stage is _Stage.FAILED:
            raise NoiseError("the Noise handshake has already failed")
        if self._stage is _Stage.START:
            raise RuntimeError("call NoiseHandshake.start() before receive()")
        if self._stage is _Stage.COMPLETE:
            raise RuntimeError("the Noise handshake is complete; use transport()")
        self._buffer += data
        out = []
        while self._stage is not _Stage.COMPLETE and len(self._buffer) >= 2:
            length = int.from_bytes(self._buffer[:2], "big")
            if len(self._buffer) < 2 + length:
                break
            message = bytes(self._buffer[2 : 2 + length])
            del self._buffer[: 2 + length]
            try:
                out.append(self._on_message(message))
            except NoiseError:
                self._fail()
                raise
        return b"".join(out)

    def _fail(self) -> None:
        self._stage = _Stage.FAILED
        self._buffer.clear()
        self.remote_identity = self.remote_identity_bytes = None
        self.remote_muxers = []

    def _on_message(self, message: bytes) -> bytes:
        """The handshake's transitions: one received message in, the framed reply out."""
        state = self._state
        if self._stage is _Stage.AWAIT_MSG1:  # responder: <- e, then -> e, ee, s, es + payload
            state.read_message(message)  # a plaintext payload in message 1 is allowed by Noise and ignored
            self._stage = _Stage.AWAIT_MSG3
            return _frame(state.write_message(self._payload))
        if self._stage is _Stage.AWAIT_MSG2:  # initiator: <- e, ee, s, es + payload, then -> s, se + payload
            self._verify(state.read_message(message))
            reply = _frame(state.write_message(self._payload))
            self._stage = _Stage.COMPLETE
            return reply
        if self._stage is _Stage.AWAIT_MSG3:  # responder: <- s, se + payload
            self._verify(state.read_message(message))
            self._stage = _Stage.COMPLETE
            return b""
        raise RuntimeError(f"no Noise message expected in stage {self._stage.value}")

    def _verify(self, payload: bytes) -> None:
        """Check the remote's signature over its static key (libp2p noise spec) before exposing anything."""
        identity_bytes, signature, muxers = _decode_payload(payload)
        identity = _decode_public_key(identity_bytes)
        try:
            identity.verify(signature, _STATIC_KEY_SIG_PREFIX + (self._state.remote_static or b""))
        except InvalidSignature:
            raise NoiseError("the remote's identity signature over its Noise static key is invalid") from None
        self.remote_identity = identity
        self.remote_identity_bytes = identity_bytes
        self.remote_muxers = muxers

    def transport(self) -> NoiseTransport:
        """The NoiseTransport for the finished handshake.

        Bytes received after the last handshake message are handed over: call `decrypt(b"")` once to
        get their plaintext without waiting for more data.
        """
        if not self.complete:
            raise RuntimeError("the Noise handshake is not complete")
        send_key, receive_key = self._state.split()
        leftover = bytes(self._buffer)
        self._buffer.clear()
        return NoiseTransport(send_key, receive_key, leftover)


# --- the transport ------------------------------------------------------------------------------------------------


class NoiseTransport:
    """Post-handshake framing+encryption; sans-I/O.

    Each frame is a 2-byte big-endian length and a ChaChaPoly ciphertext of up to 65519 plaintext bytes
    (libp2p noise spec, "Wire Format"); nonces are 64-bit counters (Noise 5.1, 12.3). `encrypt`/`decrypt`
    return one fresh `bytearray` per call, which the caller owns. `encrypt_into`/`decrypt_into` write into a
    buffer the caller passes instead: a driver that reuses its buffers spares the allocator and the page
    faults of a fresh megabyte per write or read.
    """

    __slots__ = ("_failed", "_pending", "_receive", "_receive_n", "_send", "_send_n")

    def __init__(self, send_key: bytes, receive_key: bytes, leftover: bytes = b"") -> None:
        self._send = ChaCha20Poly1305(send_key)
        self._receive = ChaCha20Poly1305(receive_key)
        self._send_n = 0
        self._receive_n = 0
        # handed-over bytes, then only ever an incomplete frame (at most 2 + MAX_FRAME bytes)
        self._pending = bytearray(leftover)
        self._failed = False

    @staticmethod
    def sealed_size(size: int) -> int:
        """Bytes on the wire for `size` plaintext bytes: each frame of up to 65519 adds a length and a tag."""
        return size + -(-size // MAX_PLAINTEXT) * _FRAME_OVERHEAD

    def encrypt(self, data: bytes | bytearray | memoryview) -> bytearray:
        """Frame and encrypt one write: frames of up to 65519 plaintext bytes, coalesced into one buffer."""
        view = memoryview(data).cast("B")
        size = len(view)
        if size == 0:
            return bytearray()
        count = -(-size // MAX_PLAINTEXT)
        n = self._send_n
        if n + count > _NONCE_LIMIT:
            raise NoiseError("Noise send nonce space exhausted; the connection must close")
        out = bytearray(size + count * _FRAME_OVERHEAD)
        with memoryview(out) as out_view:
            dst = 0
            for src in range(0, size, MAX_PLAINTEXT):
                dst = self._seal(view[src : src + MAX_PLAINTEXT], out_view, dst, n)
                n += 1
        self._send_n = n
        return out

    def _seal(self, plaintext: memoryview, out: memoryview, dst: int, n: int) -> int:
        """Write one frame (length, then the ciphertext of plaintext under nonce n) at out[dst:]; its end."""
        frame_len = len(plaintext) + TAG_SIZE
        out[dst] = frame_len >> 8
        out[dst + 1] = frame_len & 0xFF
        dst += 2
        self._send.encrypt_into(_NONCE_PREFIX + n.to_bytes(8, "little"), plaintext, None, out[dst : dst + frame_len])
        return dst + frame_len

    def encrypt_into(self, parts: Iterable[bytes | bytearray | memoryview], out: bytearray | memoryview) -> int:
        """Frame and encrypt the concatenation of `parts` into the start of `out`; return the bytes written.

        The frames are those `encrypt` makes of the joined parts. `out` must hold `sealed_size` of their total
        length. A frame whose plaintext spans parts (a yamux header and its payload) is gathered into a buffer
        of one frame, reused for the call, first; one that lies within a part is encrypted straight from it.
        """
        views = [memoryview(part).cast("B") for part in parts]
        size = sum(len(view) for view in views)
        if size == 0:
            return 0
        count = -(-size // MAX_PLAINTEXT)
        n = self._send_n
        if n + count > _NONCE_LIMIT:
            raise NoiseError("Noise send nonce space exhausted; the connection must close")
        total = size + count * _FRAME_OVERHEAD
        if len(out) < total:
            raise ValueError(f"encrypt_into needs {total} bytes of output, got {len(out)}")
        pieces = iter(views)
        current = memoryview(b"")
        gather: memoryview | None = None
        with memoryview(out) as base, base.cast("B") as out_view:
            dst = 0
            left = size
            while left:
                chunk = min(MAX_PLAINTEXT, left)
                if len(current) >= chunk:
                    plaintext = current[:chunk]
                    current = current[chunk:]
                else:
                    if gather is None:
                        gather = memoryview(bytearray(MAX_PLAINTEXT))
                    filled = 0
                    while filled < chunk:
                        while not current:
                            current = next(pieces)
                        take = min(chunk - filled, len(current))
                        gather[filled : filled + take] = current[:take]
                        current = current[take:]
                        filled += take
                    plaintext = gather[:chunk]
                dst = self._seal(plaintext, out_view, dst, n)
                n += 1
                left -= chunk
        self._send_n = n
        return dst

    def decrypt(self, data: bytes | bytearray | memoryview) -> bytearray:
        """Take received bytes; return the plaintext of every complete frame as one buffer (empty if none).

        A partial frame is kept for the next call. Raises NoiseError when a frame fails authentication,
        is shorter than the tag, or the nonce would overflow; the transport is then unusable.
        """
        if self._failed:
            raise NoiseError("the Noise transport has failed")
        view = memoryview(data).cast("B")
        pending = self._pending
        frames: list[tuple[memoryview, int, int]] = []  # (source, offset of ciphertext, ciphertext length)
        pos = 0
        if pending and len(pending) >= 2 and len(pending) >= 2 + (pending[0] << 8 | pending[1]):
            # whole frames handed over from the handshake: scan them with the new bytes
            view = memoryview(bytes(pending) + bytes(view))
            pending.clear()
        elif pending:
            # finish the frame begun in an earlier call with only the bytes it needs
            if len(pending) < 2:
                take = min(2 - len(pending), len(view))
                pending += view[:take]
                pos = take
            if len(pending) >= 2:
                length = pending[0] << 8 | pending[1]
                take = min(2 + length - len(pending), len(view) - pos)
                pending += view[pos : pos + take]
                pos += take
                if len(pending) == 2 + length:
                    frames.append((memoryview(pending), 2, length))
                    self._pending = pending = bytearray()  # the finished frame's buffer is read in place
            if pending:
                return bytearray()
        size = len(view)
        while pos + 2 <= size:
            length = view[pos] << 8 | view[pos + 1]
            if pos + 2 + length > size:
                break
            frames.append((view, pos + 2, length))
            pos += 2 + length
        if pos < size:
            pending += view[pos:]
        return self._open(frames)

    def _open_frame(self, n: int, ciphertext: memoryview, out: memoryview) -> None:
        """Authenticate and decrypt one frame with nonce `n` into `out`; a failure ends the transport."""
        try:
            self._receive.decrypt_into(_NONCE_PREFIX + n.to_bytes(8, "little"), ciphertext, None, out)
        except InvalidTag:
            self._failed = True
            raise NoiseError("Noise transport frame failed authentication") from None

    def _open(self, frames: list[tuple[memoryview, int, int]]) -> bytearray:
        n = self._receive_n
        if n + len(frames) > _NONCE_LIMIT:
            self._failed = True
            raise NoiseError("Noise receive nonce space exhausted; the connection must close")
        total = 0
        for _, _, length in frames:
            if length < TAG_SIZE:
                self._failed = True
                raise NoiseError("Noise transport frame shorter than its authentication tag")
            total += length - TAG_SIZE
        out = bytearray(total)
        with memoryview(out) as out_view:
            dst = 0
            for source, offset, length in frames:
                plain = length - TAG_SIZE
                self._open_frame(n, source[offset : offset + length], out_view[dst : dst + plain])
                n += 1
                dst += plain
        self._receive_n = n
        return out

    def take_pending(self) -> bytes:
        """Bytes received through `decrypt` (or handed over by the handshake) that are not decrypted yet.

        A driver that switches to `decrypt_into` takes them once and puts them in front of what it reads next.
        """
        pending = bytes(self._pending)
        self._pending.clear()
        return pending

    def decrypt_into(self, data: bytes | bytearray | memoryview, out: bytearray | memoryview) -> tuple[int, int]:
        """Decrypt the whole frames at the start of `data` into `out`; return (bytes of data used, bytes written).

        Stops before an incomplete frame, or a frame whose plaintext no longer fits in `out`: the caller keeps
        the unused bytes and passes them again, with what arrives next, in a later call. Nothing of `data` or
        `out` is kept. Raises NoiseError as `decrypt` does, and RuntimeError while `decrypt` holds bytes
        (see `take_pending`).
        """
        if self._failed:
            raise NoiseError("the Noise transport has failed")
        if self._pending:
            raise RuntimeError("take_pending() before decrypt_into(): decrypt() holds received bytes")
        n = self._receive_n
        pos = dst = 0
        with (
            memoryview(data) as data_base,
            data_base.cast("B") as view,
            memoryview(out) as out_base,
            out_base.cast("B") as out_view,
        ):
            size = len(view)
            room = len(out_view)
            while pos + 2 <= size:
                length = view[pos] << 8 | view[pos + 1]
                if pos + 2 + length > size:
                    break
                if length < TAG_SIZE:
                    self._failed = True
                    raise NoiseError("Noise transport frame shorter than its authentication tag")
                plain = length - TAG_SIZE
                if dst + plain > room:
                    if dst == 0:
                        raise ValueError(f"decrypt_into needs room for {plain} bytes, got {room}")
                    break
                if n >= _NONCE_LIMIT:
                    self._failed = True
                    raise NoiseError("Noise receive nonce space exhausted; the connection must close")
                self._open_frame(n, view[pos + 2 : pos + 2 + length], out_view[dst : dst + plain])
                n += 1
                self._receive_n = n
                pos += 2 + length
                dst += plain
        return pos, dst
