"""Context-free consensus checks: Core's CheckTransaction vectors from tx_valid.json pass; each rule's boundary
fails with Core's reject reason (amounts, duplicate inputs — CVE-2018-17144 —, coinbase length, null prevouts);
blocks need proof of work, a matching unmutated merkle root and exactly one coinbase, first."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from peerloom.apps.btc.block import Block, BlockHeader, ConsensusError, merkle_root
from peerloom.apps.btc.checks import MAX_MONEY, check_block, check_transaction
from peerloom.apps.btc.params import MAINNET, REGTEST
from peerloom.apps.btc.tx import NULL_HASH, NULL_INDEX, OutPoint, Transaction, TxIn, TxOut, parse_transaction

VECTORS = json.loads((Path(__file__).parents[3] / "data" / "btc" / "tx_vectors.json").read_text())


@pytest.mark.parametrize("vector", VECTORS["check_transaction_valid"], ids=lambda v: v["comment"])
def test_cores_check_transaction_vectors_pass(vector: dict[str, str]) -> None:
    check_transaction(parse_transaction(bytes.fromhex(vector["hex"])))


@pytest.mark.parametrize("vector", VECTORS["legacy"], ids=lambda v: v["txid"][:8])
def test_real_transactions_pass(vector: dict[str, str]) -> None:
    check_transaction(parse_transaction(bytes.fromhex(vector["hex"])))


def _spend(*outputs: int, inputs: tuple[OutPoint, ...] = (OutPoint(b"\x01" * 32, 0),)) -> Transaction:
    return Transaction(1, tuple(TxIn(p, b"", 0xFFFFFFFF) for p in inputs), tuple(TxOut(v, b"\x51") for v in outputs), 0)


def _coinbase(script_sig: bytes = b"\x01\x01") -> Transaction:
    return Transaction(1, (TxIn(OutPoint(NULL_HASH, NULL_INDEX), script_sig, 0xFFFFFFFF),), (TxOut(0, b"\x51"),), 0)


@pytest.mark.parametrize(
    ("tx", "reason"),
    [
        (Transaction(1, (), (TxOut(1, b""),), 0), "bad-txns-vin-empty"),
        (_spend(), "bad-txns-vout-empty"),
        (_spend(-1), "bad-txns-vout-negative"),
        (_spend(MAX_MONEY + 1), "bad-txns-vout-toolarge"),
        (_spend(MAX_MONEY, 1), "bad-txns-txouttotal-toolarge"),
        (_spend(1, inputs=(OutPoint(b"\x01" * 32, 0), OutPoint(b"\x01" * 32, 0))), "bad-txns-inputs-duplicate"),
        (_coinbase(b"\x51"), "bad-cb-length"),
        (_coinbase(b"\x51" * 101), "bad-cb-length"),
        (_spend(1, inputs=(OutPoint(b"\x01" * 32, 0), OutPoint(NULL_HASH, NULL_INDEX))), "bad-txns-prevout-null"),
        (Transaction(1, (TxIn(OutPoint(b"\x01" * 32, 0), bytes(1_000_000), 0),), (TxOut(1, b""),), 0),
         "bad-txns-oversize"),
    ],
)
def test_each_transaction_rule_fails_with_cores_reason(tx: Transaction, reason: str) -> None:
    with pytest.raises(ConsensusError) as err:
        check_transaction(tx)
    assert err.value.reason == reason


def test_the_boundaries_themselves_pass() -> None:
    check_transaction(_spend(MAX_MONEY, 0))
    check_transaction(_coinbase(b"\x51" * 100))
    check_transaction(_spend(0, inputs=(OutPoint(b"\x01" * 32, 0), OutPoint(b"\x01" * 32, 1))))


def _mined(txs: tuple[Transaction, ...]) -> Block:
    root, _ = merkle_root([t.txid for t in txs])
    for nonce in range(1 << 16):
        header = BlockHeader(4, REGTEST.genesis_hash, root, 1_300_000_000, 0x207FFFFF, nonce)
        if header.check_proof_of_work(REGTEST.pow_limit):
            return Block(header, txs)
    raise AssertionError("no nonce")


def test_block_checks() -> None:
    check_block(MAINNET.genesis, MAINNET.pow_limit)
    good = _mined((_coinbase(), _spend(5), _spend(6)))
    check_block(good, REGTEST.pow_limit)
    cases = {
        "high-hash": Block(dataclasses.replace(good.header, bits=0x1D00FFFF), good.transactions),
        "bad-txnmrklroot": Block(good.header, (good.transactions[0], _spend(7))),
        "bad-txns-duplicate": Block(good.header, (*good.transactions, good.transactions[-1])),  # CVE-2012-2459
        "bad-cb-missing": _mined((_spend(5), _spend(6))),
        "bad-cb-multiple": _mined((_coinbase(), _coinbase(b"\x02\x02"))),
        "bad-txns-vout-negative": _mined((_coinbase(), _spend(-5))),
    }
    for reason, block in cases.items():
        with pytest.raises(ConsensusError) as err:
            check_block(block, REGTEST.pow_limit)
        assert err.value.reason == reason, reason
