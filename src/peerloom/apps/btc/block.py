"""Bitcoin block headers and blocks: the 80-byte header and its hash, compact `bits` and the target they
encode, the proof-of-work check, the merkle root with Core's mutation check (CVE-2012-2459) and the BIP 141
witness commitment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from .serialize import BtcError, Reader, compact_size, hash_hex, sha256d
from .tx import Transaction, read_transaction

HEADER_BYTES = 80
MAX_BLOCK_WIRE_BYTES = 4_000_000  # MAX_BLOCK_SERIALIZED_SIZE (consensus.h)
_MIN_TX_BYTES = 60  # version, 1 input (41), 1 output (9), locktime: the least a transaction takes
WITNESS_COMMITMENT_HEADER = bytes.fromhex("6a24aa21a9ed")  # OP_RETURN, push 36, 0xaa21a9ed (BIP 141)


class ConsensusError(BtcError):
    """A transaction or block that breaks a consensus rule; `reason` is Core's reject code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def bits_to_target(bits: int) -> int | None:
    """The target a compact `bits` value encodes, or None when it is negative, zero or overflows 256 bits
    (Core's `arith_uint256::SetCompact` flags, which `CheckProofOfWork` rejects)."""
    size = bits >> 24
    mantissa = bits & 0x007FFFFF
    if mantissa == 0:
        return None
    if bits & 0x00800000:
        return None  # negative
    if size <= 3:
        target = mantissa >> (8 * (3 - size))
    else:
        if (mantissa > 0xFF and size > 32) or (mantissa > 0xFFFF and size > 33) or size > 34:
            return None  # overflow
        target = mantissa << (8 * (size - 3))
    return target or None


def target_to_bits(target: int) -> int:
    """The compact form of `target` (Core's `GetCompact`): 3 mantissa bytes, kept positive."""
    size = (target.bit_length() + 7) // 8
    mantissa = target << (8 * (3 - size)) if size <= 3 else target >> (8 * (size - 3))
    if mantissa & 0x00800000:
        mantissa >>= 8
        size += 1
    return (size << 24) | mantissa


def work_of(target: int) -> int:
    """The expected number of hashes to meet `target`: 2^256 / (target + 1) (Core's `GetBlockProof`)."""
    return (1 << 256) // (target + 1)


@dataclass(frozen=True)
class BlockHeader:
    version: int
    prev_hash: bytes
    merkle_root: bytes
    time: int
    bits: int
    nonce: int

    def serialize(self) -> bytes:
        return b"".join((
            self.version.to_bytes(4, "little", signed=True),
            self.prev_hash,
            self.merkle_root,
            self.time.to_bytes(4, "little"),
            self.bits.to_bytes(4, "little"),
            self.nonce.to_bytes(4, "little"),
        ))

    @cached_property
    def hash(self) -> bytes:
        """The block hash (internal byte order)."""
        return sha256d(self.serialize())

    @property
    def hash_hex(self) -> str:
        return hash_hex(self.hash)

    def check_proof_of_work(self, pow_limit: int) -> bool:
        """Whether `bits` is a valid target no easier than `pow_limit` and the hash meets it."""
        target = bits_to_target(self.bits)
        if target is None or target > pow_limit:
            return False
        return int.from_bytes(self.hash, "little") <= target


def read_header(reader: Reader) -> BlockHeader:
    return BlockHeader(reader.i32(), reader.bytes(32), reader.bytes(32), reader.u32(), reader.u32(), reader.u32())


def parse_header(data: bytes) -> BlockHeader:
    if len(data) != HEADER_BYTES:
        raise BtcError(f"a block header is {HEADER_BYTES} bytes, not {len(data)}")
    return read_header(Reader(data))


def merkle_root(hashes: Sequence[bytes]) -> tuple[bytes, bool]:
    """The merkle root of `hashes` and whether the tree is mutated: two equal siblings at any level, the
    ambiguity of CVE-2012-2459 (a list whose odd tail is duplicated gives the same root), which Core's
    `ComputeMerkleRoot` flags so that such a block is rejected as mutated, not marked invalid."""
    if not hashes:
        return bytes(32), False
    level = list(hashes)
    mutated = False
    while len(level) > 1:
        for i in range(0, len(level) - 1, 2):
            if level[i] == level[i + 1]:
                mutated = True
        if len(level) & 1:
            level.append(level[-1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0], mutated


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    transactions: tuple[Transaction, ...]

    @property
    def hash(self) -> bytes:
        return self.header.hash

    def serialize(self, witness: bool = True) -> bytes:
        parts = [self.header.serialize(), compact_size(len(self.transactions))]
        parts += (tx.serialize(witness) for tx in self.transactions)
        return b"".join(parts)

    def check_merkle_root(self) -> None:
        """Core's `CheckMerkleRoot`: the header commits to these transactions, and the list is not mutated."""
        root, mutated = merkle_root([tx.txid for tx in self.transactions])
        if root != self.header.merkle_root:
            raise ConsensusError("bad-txnmrklroot")
        if mutated:
            raise ConsensusError("bad-txns-duplicate")  # a mutated merkle tree

    def witness_commitment_index(self) -> int | None:
        """The index of the coinbase output holding the witness commitment: the last one that matches (BIP 141)."""
        if not self.transactions:
            return None
        found = None
        for i, out in enumerate(self.transactions[0].outputs):
            script = out.script_pubkey
            if len(script) >= 38 and script[:6] == WITNESS_COMMITMENT_HEADER:
                found = i
        return found

    def check_witness_commitment(self) -> None:
        """BIP 141: with a commitment, the coinbase witness is one 32-byte reserved value and
        sha256d(witness merkle root || reserved value) is the committed hash (the coinbase's wtxid counts as
        zero); without one, no transaction may carry witness data."""
        index = self.witness_commitment_index()
        if index is None:
            if any(tx.has_witness for tx in self.transactions):
                raise ConsensusError("unexpected-witness")
            return
        coinbase = self.transactions[0]
        stack = coinbase.inputs[0].witness
        if len(stack) != 1 or len(stack[0]) != 32:
            raise ConsensusError("bad-witness-nonce-size")
        root, _ = merkle_root([bytes(32)] + [tx.wtxid for tx in self.transactions[1:]])
        committed = coinbase.outputs[index].script_pubkey[6:38]
        if sha256d(root + stack[0]) != committed:
            raise ConsensusError("bad-witness-merkle-match")


def read_block(reader: Reader) -> Block:
    header = read_header(reader)
    n = reader.count(_MIN_TX_BYTES)
    return Block(header, tuple(read_transaction(reader) for _ in range(n)))


def parse_block(data: bytes | memoryview) -> Block:
    """Exactly one block, no trailing bytes."""
    if len(data) > MAX_BLOCK_WIRE_BYTES:
        raise BtcError(f"block of {len(data)} bytes is above {MAX_BLOCK_WIRE_BYTES}")
    reader = Reader(data)
    block = read_block(reader)
    reader.end()
    return block
