"""Block headers and blocks: the genesis blocks of all four networks rebuilt from their parameters hash to the
well-known hashes; compact bits decode as Core's SetCompact does; the merkle root flags the CVE-2012-2459
duplicate-transaction mutation; BIP 141 witness commitments are checked."""

from __future__ import annotations

import pytest

from peerloom.apps.btc.block import (
    Block,
    BlockHeader,
    bits_to_target,
    merkle_root,
    parse_block,
    parse_header,
    target_to_bits,
    work_of,
)
from peerloom.apps.btc.params import MAINNET, NETWORKS
from peerloom.apps.btc.serialize import BtcError, sha256d
from peerloom.apps.btc.tx import OutPoint, Transaction, TxIn, TxOut

GENESIS_HEADER = (
    "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3"
    "888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c"
)


def test_the_mainnet_genesis_header_and_coinbase() -> None:
    header = parse_header(bytes.fromhex(GENESIS_HEADER))
    assert header.hash_hex == "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
    assert header.serialize().hex() == GENESIS_HEADER
    assert header.check_proof_of_work(MAINNET.pow_limit)
    genesis = MAINNET.genesis
    assert genesis.header == header
    assert genesis.transactions[0].txid_hex == "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
    assert genesis.transactions[0].is_coinbase()
    assert b"Chancellor on brink of second bailout" in genesis.transactions[0].inputs[0].script_sig
    assert parse_block(genesis.serialize()) == genesis and len(genesis.serialize()) == 285
    genesis.check_merkle_root()
    genesis.check_witness_commitment()


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_every_networks_genesis_hashes_to_its_published_hash(name: str) -> None:
    params = NETWORKS[name]
    assert params.genesis.hash == params.genesis_hash
    assert params.genesis.header.check_proof_of_work(params.pow_limit)
    assert bits_to_target(params.genesis.header.bits) <= params.pow_limit  # type: ignore[operator]


def test_proof_of_work_fails_for_a_changed_nonce_or_an_easier_limit() -> None:
    h = MAINNET.genesis.header
    other = BlockHeader(h.version, h.prev_hash, h.merkle_root, h.time, h.bits, h.nonce + 1)
    assert not other.check_proof_of_work(MAINNET.pow_limit)
    assert not h.check_proof_of_work(bits_to_target(0x1C00FFFF))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bits", "target"),
    [  # Bitcoin Core's arith_uint256 SetCompact cases
        (0x00123456, None), (0x01003456, None), (0x01123456, 0x12), (0x02123456, 0x1234), (0x03123456, 0x123456),
        (0x04123456, 0x12345600), (0x04923456, None), (0x05009234, 0x92340000), (0x1D00FFFF, 0xFFFF << 208),
        (0x20123456, 0x123456 << 232), (0xFF123456, None),
    ],
)
def test_bits_decode_like_core(bits: int, target: int | None) -> None:
    assert bits_to_target(bits) == target


def test_targets_encode_to_compact_bits() -> None:
    assert target_to_bits(0x12) == 0x01120000
    assert target_to_bits(0x80) == 0x02008000
    assert target_to_bits(0xFFFF << 208) == 0x1D00FFFF
    assert target_to_bits((1 << 255) - 1) == 0x207FFFFF
    assert work_of(0xFFFF << 208) == 0x100010001


def _tx(n: int, witness: tuple[bytes, ...] = ()) -> Transaction:
    return Transaction(1, (TxIn(OutPoint(bytes([n]) * 32, 0), b"", 0xFFFFFFFF, witness),), (TxOut(n, b"\x51"),), 0)


def test_merkle_root_and_the_duplicate_transaction_mutation() -> None:
    a, b, c = (sha256d(bytes([i])) for i in range(3))
    assert merkle_root([a]) == (a, False)
    assert merkle_root([a, b]) == (sha256d(a + b), False)
    three, mutated = merkle_root([a, b, c])
    assert three == sha256d(sha256d(a + b) + sha256d(c + c)) and not mutated
    # CVE-2012-2459: repeating the odd tail gives the same root, and is flagged.
    assert merkle_root([a, b, c, c]) == (three, True)
    # A duplicate pair deeper in the tree is caught at its level.
    assert merkle_root([a, b, c, c, a, b])[1]
    assert merkle_root([a, b, a, b])[1]  # equal subtrees are equal siblings one level up
    assert not merkle_root([a, b, c, a])[1]


def _coinbase(outputs: tuple[TxOut, ...], witness: tuple[bytes, ...] = ()) -> Transaction:
    return Transaction(1, (TxIn(OutPoint(bytes(32), 0xFFFFFFFF), b"\x01\x01", 0xFFFFFFFF, witness),), outputs, 0)


def _block(txs: tuple[Transaction, ...]) -> Block:
    root, _ = merkle_root([t.txid for t in txs])
    return Block(BlockHeader(4, bytes(32), root, 1, 0x207FFFFF, 0), txs)


def test_a_block_whose_transaction_list_is_mutated_is_rejected_though_the_root_matches() -> None:
    txs = (_coinbase((TxOut(1, b"\x51"),)), _tx(1), _tx(2))
    block = _block(txs)
    block.check_merkle_root()
    mutated = Block(block.header, (*txs, txs[-1]))
    with pytest.raises(BtcError, match="duplicate"):
        mutated.check_merkle_root()
    with pytest.raises(BtcError, match="mrklroot"):
        Block(block.header, txs[:2]).check_merkle_root()


def test_witness_commitment() -> None:
    spend = _tx(1, witness=(b"\x30" * 71, b"\x02" * 33))
    reserved = bytes(32)
    root, _ = merkle_root([bytes(32), spend.wtxid])
    commitment = bytes.fromhex("6a24aa21a9ed") + sha256d(root + reserved)
    good = _block((_coinbase((TxOut(50, b"\x51"), TxOut(0, commitment)), (reserved,)), spend))
    good.check_witness_commitment()
    assert good.witness_commitment_index() == 1
    assert parse_block(good.serialize()) == good

    wrong = _block((_coinbase((TxOut(0, commitment[:-1] + b"\x00"),), (reserved,)), spend))
    with pytest.raises(BtcError, match="witness-merkle-match"):
        wrong.check_witness_commitment()
    no_nonce = _block((_coinbase((TxOut(0, commitment),)), spend))
    with pytest.raises(BtcError, match="nonce-size"):
        no_nonce.check_witness_commitment()
    uncommitted = _block((_coinbase((TxOut(50, b"\x51"),)), spend))
    with pytest.raises(BtcError, match="unexpected-witness"):
        uncommitted.check_witness_commitment()


def test_malformed_blocks_raise_btc_error() -> None:
    raw = MAINNET.genesis.serialize()
    for bad in (raw[:-1], raw + b"\x00", raw[:80] + b"\xfe\xff\xff\xff\x00", raw[:79]):
        with pytest.raises(BtcError):
            parse_block(bad)
    with pytest.raises(BtcError):
        parse_header(bytes(79))
