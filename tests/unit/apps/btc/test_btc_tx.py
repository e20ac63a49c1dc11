"""Transactions: real mainnet transactions from Bitcoin Core's test data parse, re-serialize byte for byte and
hash to their known txids; BIP 143's segwit example has its marker, flag and witnesses handled (wtxid, txid of
the stripped form); malformed encodings are rejected with `BtcError`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peerloom.apps.btc.serialize import BtcError, compact_size, hash_hex
from peerloom.apps.btc.tx import OutPoint, Transaction, TxIn, TxOut, parse_transaction

VECTORS = json.loads((Path(__file__).parents[3] / "data" / "btc" / "tx_vectors.json").read_text())


@pytest.mark.parametrize("vector", VECTORS["legacy"], ids=lambda v: v["txid"][:8])
def test_real_transactions_round_trip_and_hash_to_their_txid(vector: dict[str, str]) -> None:
    raw = bytes.fromhex(vector["hex"])
    tx = parse_transaction(raw)
    assert tx.serialize() == raw
    assert tx.txid_hex == vector["txid"]
    assert tx.wtxid == tx.txid and not tx.has_witness
    assert tx.weight() == 4 * len(raw)


def test_the_bip143_segwit_example() -> None:
    vector = VECTORS["segwit_bip143_p2wpkh"]
    raw = bytes.fromhex(vector["signed"])
    tx = parse_transaction(raw)
    assert tx.serialize() == raw and raw[4:6] == b"\x00\x01"
    assert hash_hex(tx.wtxid) == vector["wtxid"]
    assert tx.inputs[0].witness == () and len(tx.inputs[1].witness) == 2
    # Without witnesses and scriptSigs it is BIP 143's unsigned transaction.
    bare = Transaction(
        tx.version, tuple(TxIn(i.prevout, b"", i.sequence) for i in tx.inputs), tx.outputs, tx.locktime
    )
    assert bare.serialize().hex() == vector["unsigned"]
    # The txid hashes the legacy form: no marker, flag or witness bytes in it.
    legacy = tx.serialize(witness=False)
    assert len(legacy) < len(raw) and parse_transaction(legacy).txid == tx.txid != tx.wtxid
    assert tx.weight() == 3 * len(legacy) + len(raw)


def _tx(witness: tuple[bytes, ...] = ()) -> Transaction:
    return Transaction(2, (TxIn(OutPoint(bytes(range(32)), 1), b"\x51", 0xFFFFFFFE, witness),),
                       (TxOut(5000, b"\x00\x14" + bytes(20)),), 7)


def test_witness_serialization_round_trips_and_an_empty_witness_record_is_rejected() -> None:
    tx = _tx((b"sig", b""))
    assert parse_transaction(tx.serialize()) == tx
    # Marker and flag followed by witnesses that are all empty: Core's "Superfluous witness record".
    empty = bytearray(_tx().serialize())
    body = bytes(empty[4:-4])
    forged = empty[:4] + b"\x00\x01" + body + b"\x00" + empty[-4:]
    with pytest.raises(BtcError, match="superfluous"):
        parse_transaction(bytes(forged))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda raw: raw[:-1],  # truncated locktime
        lambda raw: raw + b"\x00",  # trailing byte
        lambda raw: raw[:4] + b"\x00\x02" + raw[4:],  # unknown flag
        lambda raw: raw[:4] + b"\x00\x00" + raw[4:],  # marker without a flag: no inputs
        lambda raw: raw[:4] + compact_size(0x01000000) + raw[5:],  # input count beyond the buffer
    ],
    ids=["truncated", "trailing", "unknown-flag", "no-inputs", "huge-count"],
)
def test_malformed_transactions_raise_btc_error(mutate) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BtcError):
        parse_transaction(mutate(_tx().serialize()))
