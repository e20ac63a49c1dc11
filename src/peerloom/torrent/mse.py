"""Message Stream Encryption (MSE/PE), the Vuze/libtorrent obfuscation of the BitTorrent peer wire: sans-I/O.

The handshake (A dials, B answers; HASH is SHA-1, S the Diffie-Hellman secret, SKEY the torrent's info-hash):

    1 A->B: Ya, PadA
    2 B->A: Yb, PadB
    3 A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
            ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
    4 B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload)
    5 A->B: ENCRYPT2(payload)

ENCRYPT is RC4 keyed with HASH('keyA', S, SKEY) from A to B and HASH('keyB', S, SKEY) from B to A, its first 1024
bytes of keystream discarded; ENCRYPT2 is the same RC4 stream continued if crypto_select chose RC4, nothing if it
chose plaintext. Pads are 0-512 random bytes, so each side finds where the other's encrypted part starts by
searching for a known pattern within a bounded window: B for HASH('req1', S), A for ENCRYPT(VC).

`MseHandshake` is one side of it: bytes in (`receive`), bytes out, and once `established` the chosen method, the
payload that arrived with the handshake (the initial payload IA, and anything after) and the RC4 streams. Beyond
what one call hands it, it holds at most what the current step may need (the sync windows, a pad of at most 512
bytes, an IA of at most 64 KiB), and any malformed input raises `MseError`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
from cryptography.hazmat.primitives.ciphers import Cipher

from peerloom.errors import ProtocolError

# the specification's 768-bit safe prime (it opens like RFC 2409's Oakley group 1 but is not that one), generator 2
P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563",
    16,
)
G = 2
KEY_LEN = 96  # Ya, Yb and S travel as 96-byte big-endian numbers
PRIVATE_BITS = 160  # Xa, Xb: the specification asks for at least 128 bits; libtorrent uses 160
MAX_PAD = 512
VC = bytes(8)  # the verification constant
PLAINTEXT = 0x01
RC4 = 0x02
MAX_INITIAL_PAYLOAD = 0xFFFF  # len(IA) is a 16-bit field
DROP = 1024  # RC4-drop1024: the first keystream bytes leak the key and are thrown away
# how far each side searches for the other's sync pattern: its key, the longest pad, and the pattern itself
REQ1_WINDOW = KEY_LEN + MAX_PAD + 20  # 628
VC_WINDOW = KEY_LEN + MAX_PAD + len(VC)  # 616
PLAIN_PREFIX = b"\x13BitTorrent protocol"  # how a plaintext BitTorrent handshake opens


class MseError(ProtocolError):
    """The peer broke the encrypted handshake (or offered nothing we accept)."""


def sha1(*parts: bytes) -> bytes:
    h = hashlib.sha1()
    for part in parts:
        h.update(part)
    return h.digest()


def skey_hash(skey: bytes) -> bytes:
    """HASH('req2', SKEY): what an answering side matches its torrents' info-hashes against."""
    return sha1(b"req2", skey)


def looks_plaintext(prefix: bytes) -> bool | None:
    """Whether the first bytes of an incoming connection are a plaintext BitTorrent handshake (True), an encrypted
    one (False), or too few to tell (None). A random Ya opening with those 20 bytes has odds of 2^-160."""
    n = min(len(prefix), len(PLAIN_PREFIX))
    if prefix[:n] != PLAIN_PREFIX[:n]:
        return False
    return True if n == len(PLAIN_PREFIX) else None


class Rc4:
    """One direction of RC4-drop1024. `update` returns new bytes; `update_into` writes into a buffer of the same
    length, `update_in_place` transforms a writable buffer (no allocation: on the hot path, fresh megabyte buffers
    cost a page fault per page)."""

    __slots__ = ("_ctx",)

    def __init__(self, key: bytes) -> None:
        self._ctx = Cipher(ARC4(key), mode=None).encryptor()
        self._ctx.update(bytes(DROP))

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        return self._ctx.update(data)

    def update_into(self, data: bytes | bytearray | memoryview, out: bytearray | memoryview) -> None:
        self._ctx.update_into(data, out)

    def update_in_place(self, buf: bytearray | memoryview) -> None:
        self._ctx.update_into(buf, buf)


@dataclass
class Established:
    """The outcome of a handshake: the method, the payload that came with it (already decrypted), and the RC4
    streams when RC4 was chosen (`encrypt` for what we send, `decrypt` for what we receive)."""

    method: int
    payload: bytes
    encrypt: Rc4 | None
    decrypt: Rc4 | None


def _public_key(private: int) -> bytes:
    return pow(G, private, P).to_bytes(KEY_LEN, "big")


def _shared_secret(private: int, remote: bytes) -> bytes:
    y = int.from_bytes(remote, "big")
    if not 1 < y < P - 1:  # 0, 1 and P-1 would force a known secret
        raise MseError("degenerate Diffie-Hellman key")
    return pow(y, private, P).to_bytes(KEY_LEN, "big")


def random_pad() -> bytes:
    """0 to 512 random bytes: the pads hide the handshake's length pattern."""
    return secrets.token_bytes(secrets.randbelow(MAX_PAD + 1))


class MseHandshake:
    """One side of the MSE handshake (see the module docstring).

    Outgoing (A): give `skey` (the info-hash the dialled torrent is known by), `provide` (the crypto_provide bits)
    and `initial_payload`, called once when message 3 is built (the BitTorrent handshake goes in IA). Incoming (B):
    give `find_skey` (HASH('req2', SKEY) -> SKEY, or None for a torrent we do not have) and `accept` (the methods we
    take); when A offers both, B selects RC4 if `prefer_rc4`, else plaintext (libtorrent's setting of that name,
    which is off there by default: the obfuscated handshake is what defeats traffic shaping, and plaintext after it
    costs no CPU). `private_key` and `pad` are for tests.
    """

    def __init__(
        self,
        *,
        outgoing: bool,
        skey: bytes = b"",
        provide: int = PLAINTEXT | RC4,
        initial_payload: Callable[[], bytes] = bytes,
        find_skey: Callable[[bytes], bytes | None] | None = None,
        accept: int = PLAINTEXT | RC4,
        prefer_rc4: bool = True,
        private_key: int | None = None,
        pad: Callable[[], bytes] = random_pad,
    ) -> None:
        if outgoing and (len(skey) != 20 or not provide & (PLAINTEXT | RC4)):
            raise ValueError("an outgoing handshake needs a 20-byte SKEY and something to provide")
        if not outgoing and find_skey is None:
            raise ValueError("an incoming handshake needs find_skey")
        self.outgoing = outgoing
        self._skey = skey
        self._provide = provide
        self._initial_payload = initial_payload
        self._find_skey = find_skey
        self._accept = accept
        self._prefer_rc4 = prefer_rc4
        self._pad = pad
        self._private = private_key if private_key is not None else secrets.randbits(PRIVATE_BITS) | 1 << 159
        self._buf = bytearray()
        self._secret = b""
        self._step = self._read_remote_key
        self._encrypt: Rc4 | None = None
        self._decrypt: Rc4 | None = None
        self._pad_len = 0  # the remote pad still to skip (PadC or PadD), once its length is known
        self._ia_len = 0
        self._method = 0
        self._vc_pattern = b""
        self.established: Established | None = None

    def start(self) -> bytes:
        """What to send first: Ya and PadA for A; nothing for B, which answers Ya."""
        return _public_key(self._private) + self._pad() if self.outgoing else b""

    def receive(self, data: bytes | bytearray | memoryview) -> bytes:
        """Take bytes from the peer; return the bytes to send. Once `established` is set, nothing more is read
        here: what followed the handshake is in `established.payload`. Raises MseError."""
        if self.established is not None:
            raise MseError("the handshake is over")
        self._buf += data
        out = bytearray()
        while self.established is None:
            sent = self._step()
            if sent is None:
                break
            out += sent
        return bytes(out)

    # -- the steps: each returns bytes to send (b"" to go on) or None to wait for more input --------------------
    def _read_remote_key(self) -> bytes | None:
        if len(self._buf) < KEY_LEN:
            return None
        self._secret = _shared_secret(self._private, bytes(self._buf[:KEY_LEN]))
        del self._buf[:KEY_LEN]
        if self.outgoing:
            self._step = self._sync_vc
            return self._message3()
        self._step = self._sync_req1
        return _public_key(self._private) + self._pad()

    def _keys(self, skey: bytes) -> None:
        key_a, key_b = sha1(b"keyA", self._secret, skey), sha1(b"keyB", self._secret, skey)
        self._encrypt = Rc4(key_a if self.outgoing else key_b)
        self._decrypt = Rc4(key_b if self.outgoing else key_a)

    def _message3(self) -> bytes:
        self._keys(self._skey)
        assert self._encrypt is not None and self._decrypt is not None
        self._vc_pattern = self._decrypt.update(VC)  # VC is zeros: its encryption is B's first keystream bytes
        ia = self._initial_payload()
        if len(ia) > MAX_INITIAL_PAYLOAD:
            raise ValueError("the initial payload is longer than len(IA) can say")
        pad = self._pad()
        head = sha1(b"req1", self._secret) + _xor(skey_hash(self._skey), sha1(b"req3", self._secret))
        crypto = VC + self._provide.to_bytes(4, "big") + len(pad).to_bytes(2, "big") + pad + len(ia).to_bytes(2, "big")
        return head + self._encrypt.update(crypto + ia)

    def _sync_vc(self) -> bytes | None:
        """A: find ENCRYPT(VC) after PadB (within PadB's bound), then read crypto_select and len(PadD)."""
        assert self._decrypt is not None
        at = self._buf.find(self._vc_pattern, 0, VC_WINDOW - KEY_LEN)
        if at < 0:
            if len(self._buf) >= VC_WINDOW - KEY_LEN:
                raise MseError("no verification constant within the pad's bound")
            return None
        del self._buf[: at + len(VC)]
        self._step = self._read_select
        return b""

    def _read_select(self) -> bytes | None:
        if len(self._buf) < 6:
            return None
        assert self._decrypt is not None
        fields = self._decrypt.update(bytes(self._buf[:6]))
        del self._buf[:6]
        select, self._pad_len = int.from_bytes(fields[:4], "big"), int.from_bytes(fields[4:], "big")
        if select not in (PLAINTEXT, RC4) or not select & self._provide:
            raise MseError(f"crypto_select {select:#x} is not one we provided")
        if self._pad_len > MAX_PAD:
            raise MseError("PadD is longer than 512 bytes")
        self._method = select
        self._step = self._skip_pad_d
        return b""

    def _skip_pad_d(self) -> bytes | None:
        if len(self._buf) < self._pad_len:
            return None
        assert self._decrypt is not None
        self._decrypt.update(bytes(self._buf[: self._pad_len]))
        del self._buf[: self._pad_len]
        self._finish(b"")
        return b""

    def _sync_req1(self) -> bytes | None:
        """B: find HASH('req1', S) after PadA (within PadA's bound), then the obfuscated SKEY and the crypto fields."""
        at = self._buf.find(sha1(b"req1", self._secret), 0, REQ1_WINDOW - KEY_LEN)
        if at < 0:
            if len(self._buf) >= REQ1_WINDOW - KEY_LEN:
                raise MseError("no synchronisation hash within the pad's bound")
            return None
        del self._buf[: at + 20]
        self._step = self._read_skey
        return b""

    def _read_skey(self) -> bytes | None:
        if len(self._buf) < 20 + 14:  # the obfuscated SKEY, then VC, crypto_provide and len(PadC)
            return None
        assert self._find_skey is not None
        skey = self._find_skey(_xor(bytes(self._buf[:20]), sha1(b"req3", self._secret)))
        if skey is None:
            raise MseError("unknown info-hash")
        self._keys(skey)
        assert self._decrypt is not None
        fields = self._decrypt.update(bytes(self._buf[20:34]))
        del self._buf[:34]
        if fields[:8] != VC:
            raise MseError("bad verification constant")
        provide, self._pad_len = int.from_bytes(fields[8:12], "big"), int.from_bytes(fields[12:], "big")
        if self._pad_len > MAX_PAD:
            raise MseError("PadC is longer than 512 bytes")
        both = provide & self._accept
        if not both & (PLAINTEXT | RC4):
            raise MseError(f"crypto_provide {provide:#x} offers nothing we accept")
        self._method = RC4 if both & RC4 and (self._prefer_rc4 or not both & PLAINTEXT) else PLAINTEXT
        self._step = self._read_ia_length
        return b""

    def _read_ia_length(self) -> bytes | None:
        if len(self._buf) < self._pad_len + 2:
            return None
        assert self._decrypt is not None
        plain = self._decrypt.update(bytes(self._buf[: self._pad_len + 2]))  # PadC, then len(IA)
        del self._buf[: self._pad_len + 2]
        self._ia_len = int.from_bytes(plain[-2:], "big")
        self._step = self._read_initial_payload
        return b""

    def _read_initial_payload(self) -> bytes | None:
        if len(self._buf) < self._ia_len:
            return None
        assert self._decrypt is not None and self._encrypt is not None
        ia = self._decrypt.update(bytes(self._buf[: self._ia_len]))  # IA is RC4 whatever the method (ENCRYPT(IA))
        del self._buf[: self._ia_len]
        pad = self._pad()
        reply = self._encrypt.update(VC + self._method.to_bytes(4, "big") + len(pad).to_bytes(2, "big") + pad)
        self._finish(ia)
        return reply

    def _finish(self, initial: bytes) -> None:
        rest = bytes(self._buf)
        self._buf = bytearray()
        rc4 = self._method == RC4
        if rc4 and rest:
            assert self._decrypt is not None
            rest = self._decrypt.update(rest)
        self.established = Established(
            self._method, initial + rest, self._encrypt if rc4 else None, self._decrypt if rc4 else None
        )
        self._step = self._over

    def _over(self) -> bytes | None:
        return None


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")
