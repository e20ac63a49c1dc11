"""Signing transaction inputs: P2WPKH (BIP 143 ECDSA) and taproot key-path (BIP 341 Schnorr with the tweaked
key), the two spends a wallet makes, plus the output scripts they spend. libsecp256k1 (through `coincurve`)
makes the signatures: ECDSA with RFC 6979 nonces and low S, Schnorr with BIP 340's nonce function."""

from __future__ import annotations

import hashlib

from coincurve import PrivateKey

from .secp import tagged_hash_prefix
from .sighash import SIGHASH_ALL, SIGHASH_DEFAULT, PrecomputedTx, segwit_v0_sighash, taproot_sighash

_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_TAP_TWEAK = tagged_hash_prefix("TapTweak")


def hash160(data: bytes) -> bytes:
    return hashlib.new("ripemd160", hashlib.sha256(data).digest()).digest()


def p2wpkh_script(pubkey: bytes) -> bytes:
    """OP_0 <HASH160(compressed pubkey)>."""
    return b"\x00\x14" + hash160(pubkey)


def p2tr_script(output_key: bytes) -> bytes:
    """OP_1 <32-byte x-only output key>."""
    return b"\x51\x20" + output_key


def taproot_tweaked_secret(secret: bytes, merkle_root: bytes = b"") -> PrivateKey:
    """The secret of BIP 341's output key: d (negated if P = d·G has odd y) + H_TapTweak(P || root)."""
    key = PrivateKey(secret)
    point = key.public_key.format(compressed=True)
    d = int.from_bytes(secret, "big")
    if point[0] == 3:
        d = _ORDER - d
    h = _TAP_TWEAK.copy()
    h.update(point[1:] + merkle_root)
    tweaked = (d + int.from_bytes(h.digest(), "big")) % _ORDER
    return PrivateKey(tweaked.to_bytes(32, "big"))


def taproot_output_key(secret: bytes, merkle_root: bytes = b"") -> bytes:
    """The x-only output key a key-path spend of `secret` signs for."""
    return taproot_tweaked_secret(secret, merkle_root).public_key.format(compressed=True)[1:]


def sign_p2wpkh(pre: PrecomputedTx, index: int, secret: bytes, hash_type: int = SIGHASH_ALL) -> tuple[bytes, bytes]:
    """The witness (signature + hash type, compressed pubkey) spending a P2WPKH output of `secret`."""
    key = PrivateKey(secret)
    pubkey = key.public_key.format(compressed=True)
    script_code = b"\x76\xa9\x14" + hash160(pubkey) + b"\x88\xac"
    amount = pre.spent_outputs[index].value
    digest = segwit_v0_sighash(script_code, pre, index, amount, hash_type)
    return key.sign(digest, hasher=None) + bytes((hash_type,)), pubkey


def sign_taproot_key_path(
    pre: PrecomputedTx, index: int, secret: bytes, hash_type: int = SIGHASH_DEFAULT, merkle_root: bytes = b""
) -> tuple[bytes]:
    """The witness (one Schnorr signature; 64 bytes for SIGHASH_DEFAULT) of a key-path spend."""
    digest = taproot_sighash(pre, index, hash_type)
    if digest is None:
        raise ValueError(f"hash type {hash_type:#x} cannot sign input {index}")
    sig = taproot_tweaked_secret(secret, merkle_root).sign_schnorr(digest)
    return (sig if hash_type == SIGHASH_DEFAULT else sig + bytes((hash_type,)),)
