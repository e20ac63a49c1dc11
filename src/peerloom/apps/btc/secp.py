"""Signature checks on secp256k1 through libsecp256k1 (`coincurve`'s bindings), as Bitcoin Core makes them:
ECDSA with Core's lax DER parser and low-S normalization (consensus accepts high S and sloppy BER that
OpenSSL once accepted; strictness is policy, checked by the interpreter per flags), BIP 340 Schnorr, and the
BIP 341 taproot tweak check. Also the encoding rules BIP 66 and BIP 62 define and BIP 340 tagged hashes.

Verification uses libsecp256k1's static context (verification needs no precomputed signing tables) and
calls the C functions directly: no Python key objects per check.
"""

from __future__ import annotations

import hashlib

from coincurve._libsecp256k1 import ffi, lib

_CTX = lib.secp256k1_context_static
_HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


def tagged_hash_prefix(tag: str) -> hashlib._Hash:
    """A SHA-256 state that has absorbed BIP 340's tag prefix: sha256(tag) twice. `.copy()` it per message."""
    tag_digest = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(tag_digest + tag_digest)


_TAP_TWEAK = tagged_hash_prefix("TapTweak")


def is_valid_der_encoding(sig: bytes) -> bool:
    """BIP 66's strict DER check of a signature with its trailing hash-type byte (Core's
    IsValidSignatureEncoding)."""
    size = len(sig)
    if size < 9 or size > 73 or sig[0] != 0x30 or sig[1] != size - 3:
        return False
    len_r = sig[3]
    if 5 + len_r >= size:
        return False
    len_s = sig[5 + len_r]
    if len_r + len_s + 7 != size:
        return False
    if sig[2] != 0x02 or len_r == 0 or sig[4] & 0x80:
        return False
    if len_r > 1 and sig[4] == 0 and not sig[5] & 0x80:
        return False
    if sig[len_r + 4] != 0x02 or len_s == 0 or sig[len_r + 6] & 0x80:
        return False
    return not (len_s > 1 and sig[len_r + 6] == 0 and not sig[len_r + 7] & 0x80)


def is_low_s(sig: bytes) -> bool:
    """S at most half the group order (BIP 62); `sig` must already be valid strict DER (with hash type)."""
    len_r = sig[3]
    len_s = sig[5 + len_r]
    s = int.from_bytes(sig[6 + len_r : 6 + len_r + len_s], "big")
    return s <= _HALF_ORDER


def is_compressed_or_uncompressed_pubkey(pubkey: bytes) -> bool:
    n = len(pubkey)
    if n < 33:
        return False
    if pubkey[0] == 0x04:
        return n == 65
    if pubkey[0] in (0x02, 0x03):
        return n == 33
    return False


def is_compressed_pubkey(pubkey: bytes) -> bool:
    return len(pubkey) == 33 and pubkey[0] in (0x02, 0x03)


def _lax_header(der: bytes, pos: int, tag: int, read_length: bool) -> tuple[int, int] | None:
    """A tag byte and a BER length as Core's lax parser reads them: (length, position after), or None. The
    sequence's long-form length is skipped unread (`read_length` False); an integer's may have leading zero
    bytes but at most 3 significant ones."""
    n = len(der)
    if pos == n or der[pos] != tag:
        return None
    pos += 1
    if pos == n:
        return None
    length = der[pos]
    pos += 1
    if not length & 0x80:
        return length, pos
    count = length - 0x80
    if count > n - pos:
        return None
    if not read_length:
        return 0, pos + count
    while count > 0 and der[pos] == 0:
        pos += 1
        count -= 1
    if count >= 4:
        return None
    return int.from_bytes(der[pos : pos + count], "big"), pos + count


def parse_der_lax(der: bytes) -> bytes | None:
    """Core's ecdsa_signature_parse_der_lax (pubkey.cpp): R and S as 64 bytes from BER-ish DER, or None.
    An R or S that overflows 32 bytes gives an all-zero signature, which never verifies (as in Core)."""
    header = _lax_header(der, 0, 0x30, read_length=False)
    if header is None:
        return None
    pos = header[1]
    values = []
    for _ in range(2):
        header = _lax_header(der, pos, 0x02, read_length=True)
        if header is None or header[0] > len(der) - header[1]:
            return None
        length, pos = header
        values.append(der[pos : pos + length].lstrip(b"\x00"))
        pos += length
    r, s = values
    if len(r) > 32 or len(s) > 32:
        return bytes(64)
    return r.rjust(32, b"\x00") + s.rjust(32, b"\x00")


def ecdsa_verify(der_sig: bytes, msg32: bytes, pubkey: bytes) -> bool:
    """Core's CPubKey::Verify: lax DER, S normalized to low, any pubkey libsecp256k1 parses (hybrid too)."""
    if not pubkey:
        return False
    key = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_ec_pubkey_parse(_CTX, key, pubkey, len(pubkey)):
        return False
    sig = ffi.new("secp256k1_ecdsa_signature *")
    # BIP 66 DER (every signature since 2015) parses the same in libsecp256k1's strict parser, in C. Other
    # encodings take the lax path: the C parser would read, e.g., an unpadded R as negative, not as Core does.
    strict = is_valid_der_encoding(der_sig + b"\x01")
    if not strict or not lib.secp256k1_ecdsa_signature_parse_der(_CTX, sig, der_sig, len(der_sig)):
        compact = parse_der_lax(der_sig)
        if compact is None:
            return False
        if not lib.secp256k1_ecdsa_signature_parse_compact(_CTX, sig, compact):
            sig = ffi.new("secp256k1_ecdsa_signature *")  # overflow: Core keeps the zeroed signature
    lib.secp256k1_ecdsa_signature_normalize(_CTX, sig, sig)
    return bool(lib.secp256k1_ecdsa_verify(_CTX, sig, msg32, key))


def schnorr_verify(sig64: bytes, msg: bytes, xonly: bytes) -> bool:
    """BIP 340 verification of a 64-byte signature of `msg` (32 bytes in Bitcoin) under a 32-byte x-only key."""
    key = ffi.new("secp256k1_xonly_pubkey *")
    if not lib.secp256k1_xonly_pubkey_parse(_CTX, key, xonly):
        return False
    return bool(lib.secp256k1_schnorrsig_verify(_CTX, sig64, msg, len(msg), key))


def taproot_tweak(internal: bytes, merkle_root: bytes) -> tuple[bytes, int] | None:
    """BIP 341's output key Q = P + H_TapTweak(P || root)·G, as (x-only bytes, parity); None if P is not a
    valid x-only key or the tweak is out of range."""
    key = ffi.new("secp256k1_xonly_pubkey *")
    if not lib.secp256k1_xonly_pubkey_parse(_CTX, key, internal):
        return None
    h = _TAP_TWEAK.copy()
    h.update(internal + merkle_root)
    out = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_xonly_pubkey_tweak_add(_CTX, out, key, h.digest()):
        return None
    xonly = ffi.new("secp256k1_xonly_pubkey *")
    parity = ffi.new("int *")
    lib.secp256k1_xonly_pubkey_from_pubkey(_CTX, xonly, parity, out)
    raw = ffi.new("unsigned char[32]")
    lib.secp256k1_xonly_pubkey_serialize(_CTX, raw, xonly)
    return bytes(raw), parity[0]
