"""Bitcoin transactions: legacy and segwit (BIP 144) serialization, txid and wtxid.

A segwit transaction is written `version | 0x00 marker | 0x01 flag | inputs | outputs | witnesses | locktime`;
its txid hashes the legacy form (no marker, flag or witnesses) and its wtxid the full form (BIP 141).
Parsing follows Bitcoin Core's `UnserializeTransaction`: an empty input list followed by a flag byte marks
the extended form, an unknown flag or a witness section that is entirely empty is rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .serialize import BtcError, Reader, compact_size, hash_hex, sha256d, var_bytes

MAX_TX_WIRE_BYTES = 4_000_000  # nothing larger fits in a block's weight (MAX_BLOCK_WEIGHT)
NULL_HASH = bytes(32)
NULL_INDEX = 0xFFFFFFFF
_MIN_INPUT_BYTES = 41  # 32 hash + 4 index + 1 script length + 4 sequence
_MIN_OUTPUT_BYTES = 9  # 8 value + 1 script length


@dataclass(frozen=True)
class OutPoint:
    """The output an input spends: a txid (internal byte order) and an output index."""

    txid: bytes
    index: int

    def is_null(self) -> bool:
        """The coinbase's outpoint (no previous output)."""
        return self.txid == NULL_HASH and self.index == NULL_INDEX


@dataclass(frozen=True)
class TxIn:
    prevout: OutPoint
    script_sig: bytes
    sequence: int
    witness: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class TxOut:
    value: int  # satoshis; signed on the wire (Core's CAmount), range-checked by validation, not by parsing
    script_pubkey: bytes


@dataclass(frozen=True)
class Transaction:
    version: int
    inputs: tuple[TxIn, ...]
    outputs: tuple[TxOut, ...]
    locktime: int

    @property
    def has_witness(self) -> bool:
        return any(txin.witness for txin in self.inputs)

    def is_coinbase(self) -> bool:
        return len(self.inputs) == 1 and self.inputs[0].prevout.is_null()

    def serialize(self, witness: bool = True) -> bytes:
        """The wire form: with marker, flag and witnesses when `witness` and any input has one (BIP 144)."""
        extended = witness and self.has_witness
        parts = [self.version.to_bytes(4, "little", signed=True)]
        if extended:
            parts.append(b"\x00\x01")
        parts.append(compact_size(len(self.inputs)))
        for txin in self.inputs:
            parts += (
                txin.prevout.txid,
                txin.prevout.index.to_bytes(4, "little"),
                var_bytes(txin.script_sig),
                txin.sequence.to_bytes(4, "little"),
            )
        parts.append(compact_size(len(self.outputs)))
        for txout in self.outputs:
            parts += (txout.value.to_bytes(8, "little", signed=True), var_bytes(txout.script_pubkey))
        if extended:
            for txin in self.inputs:
                parts.append(compact_size(len(txin.witness)))
                parts += (var_bytes(item) for item in txin.witness)
        parts.append(self.locktime.to_bytes(4, "little"))
        return b"".join(parts)

    @cached_property
    def txid(self) -> bytes:
        """The hash of the legacy serialization (internal byte order; `hash_hex` displays it)."""
        return sha256d(self.serialize(witness=False))

    @cached_property
    def wtxid(self) -> bytes:
        """The hash of the full serialization; equal to the txid for a transaction without witnesses."""
        return sha256d(self.serialize()) if self.has_witness else self.txid

    @property
    def txid_hex(self) -> str:
        return hash_hex(self.txid)

    def weight(self) -> int:
        """BIP 141 weight: 3 x the legacy size + the full size."""
        return 3 * len(self.serialize(witness=False)) + len(self.serialize())


def read_transaction(reader: Reader) -> Transaction:
    """One transaction from `reader` (which may hold more after it)."""
    version = reader.i32()
    inputs = _read_inputs(reader)
    flags = 0
    if not inputs:
        # BIP 144: an empty input vector is the marker; the next byte is the flag.
        flags = reader.u8()
        if flags == 0:
            raise BtcError("transaction without inputs")
        inputs = _read_inputs(reader)
    outputs = _read_outputs(reader)
    if flags & 1:
        flags ^= 1
        witnessed = []
        for txin in inputs:
            n = reader.count(1)
            stack = tuple(reader.var_bytes(MAX_TX_WIRE_BYTES) for _ in range(n))
            witnessed.append(TxIn(txin.prevout, txin.script_sig, txin.sequence, stack))
        inputs = witnessed
        if not any(txin.witness for txin in inputs):
            raise BtcError("superfluous witness record")
    if flags:
        raise BtcError("unknown transaction optional data")
    locktime = reader.u32()
    return Transaction(version, tuple(inputs), tuple(outputs), locktime)


def _read_inputs(reader: Reader) -> list[TxIn]:
    n = reader.count(_MIN_INPUT_BYTES)
    inputs = []
    for _ in range(n):
        prevout = OutPoint(reader.bytes(32), reader.u32())
        script = reader.var_bytes(MAX_TX_WIRE_BYTES)
        inputs.append(TxIn(prevout, script, reader.u32()))
    return inputs


def _read_outputs(reader: Reader) -> list[TxOut]:
    n = reader.count(_MIN_OUTPUT_BYTES)
    return [TxOut(reader.i64(), reader.var_bytes(MAX_TX_WIRE_BYTES)) for _ in range(n)]


def parse_transaction(data: bytes | memoryview) -> Transaction:
    """Exactly one transaction, no trailing bytes."""
    if len(data) > MAX_TX_WIRE_BYTES:
        raise BtcError(f"transaction of {len(data)} bytes is above {MAX_TX_WIRE_BYTES}")
    reader = Reader(data)
    tx = read_transaction(reader)
    reader.end()
    return tx
