"""BIP 32 hierarchical deterministic keys: the master key of a seed, private and public child derivation,
paths such as m/84'/1'/0'/0/5, and the xprv/xpub (tprv/tpub) serialization.

    master = ExtendedKey.from_seed(seed)
    key = master.derive_path("m/84'/1'/0'/0/0")   # key.secret (32 bytes), key.public_key (33, compressed)

HMAC-SHA512 makes each child; libsecp256k1 (`coincurve`) adds the tweak to the parent's secret or point. A
child whose tweak is out of range (probability below 2^-127) is skipped as BIP 32 says, by the caller moving
to the next index: here it raises `ValueError`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from coincurve import PrivateKey, PublicKey

from peerloom.codec.multibase import b58encode

from .serialize import sha256d
from .signing import hash160

HARDENED = 0x80000000
ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
VERSIONS = {"mainnet": (0x0488ADE4, 0x0488B21E), "test": (0x04358394, 0x043587CF)}  # (private, public)


def parse_path(path: str) -> list[int]:
    """Child numbers of "m/84'/1'/0'/0/5" ("h" marks hardened too); ValueError for anything else."""
    parts = path.strip().split("/")
    if parts[0] != "m":
        raise ValueError(f"derivation path {path!r} does not start with m")
    indexes = []
    for part in parts[1:]:
        hardened = part[-1:] in ("'", "h", "H")
        digits = part[:-1] if hardened else part
        if not digits.isdigit() or int(digits) >= HARDENED:
            raise ValueError(f"bad derivation step {part!r} in {path!r}")
        indexes.append(int(digits) + (HARDENED if hardened else 0))
    return indexes


@dataclass(frozen=True)
class ExtendedKey:
    """A node of the tree: a private key (`secret`) or a public one (`secret` None), with its chain code."""

    chain_code: bytes
    public_key: bytes  # compressed, 33 bytes
    secret: bytes | None = None
    depth: int = 0
    parent_fingerprint: bytes = bytes(4)
    child_number: int = 0

    @classmethod
    def from_seed(cls, seed: bytes) -> ExtendedKey:
        if not 16 <= len(seed) <= 64:
            raise ValueError("a BIP 32 seed has 16 to 64 bytes")
        digest = hmac.digest(b"Bitcoin seed", seed, hashlib.sha512)
        secret = digest[:32]
        if not 0 < int.from_bytes(secret, "big") < ORDER:
            raise ValueError("seed gives an invalid master key")
        return cls(digest[32:], PrivateKey(secret).public_key.format(compressed=True), secret)

    @property
    def fingerprint(self) -> bytes:
        return hash160(self.public_key)[:4]

    def child(self, index: int) -> ExtendedKey:
        """Child `index` (hardened from 2^31, which needs the private key)."""
        if not 0 <= index <= 0xFFFFFFFF:
            raise ValueError(f"child index {index} out of range")
        if index >= HARDENED:
            if self.secret is None:
                raise ValueError("a hardened child needs the private key")
            data = b"\x00" + self.secret + index.to_bytes(4, "big")
        else:
            data = self.public_key + index.to_bytes(4, "big")
        digest = hmac.digest(self.chain_code, data, hashlib.sha512)
        tweak, chain_code = digest[:32], digest[32:]
        if int.from_bytes(tweak, "big") >= ORDER:
            raise ValueError(f"child {index} is invalid (BIP 32: use the next index)")
        common = {"chain_code": chain_code, "depth": self.depth + 1, "parent_fingerprint": self.fingerprint,
                  "child_number": index}
        if self.secret is not None:
            secret = (int.from_bytes(self.secret, "big") + int.from_bytes(tweak, "big")) % ORDER
            if secret == 0:
                raise ValueError(f"child {index} is invalid (BIP 32: use the next index)")
            key = PrivateKey(secret.to_bytes(32, "big"))
            return ExtendedKey(public_key=key.public_key.format(compressed=True), secret=key.secret, **common)
        point = PublicKey(self.public_key).add(tweak)
        return ExtendedKey(public_key=point.format(compressed=True), **common)

    def derive_path(self, path: str) -> ExtendedKey:
        key = self
        for index in parse_path(path):
            key = key.child(index)
        return key

    def neutered(self) -> ExtendedKey:
        """The same node without its private key."""
        return ExtendedKey(self.chain_code, self.public_key, None, self.depth, self.parent_fingerprint,
                           self.child_number)

    def serialize(self, mainnet: bool = True) -> str:
        """xprv/xpub (tprv/tpub on test networks) in base58check."""
        private_version, public_version = VERSIONS["mainnet" if mainnet else "test"]
        version, key = ((private_version, b"\x00" + self.secret) if self.secret is not None
                        else (public_version, self.public_key))
        data = (version.to_bytes(4, "big") + bytes((self.depth,)) + self.parent_fingerprint
                + self.child_number.to_bytes(4, "big") + self.chain_code + key)
        return b58encode(data + sha256d(data)[:4])
