"""The chain state on a real state database: blocks mined here connect and the UTXO set follows them exactly
(compared with a model kept by the test), each consensus rule of block connection refuses a block with Core's
reason and writes nothing, reorgs disconnect to the fork and connect the most-work branch (the set equals a
fresh node's fed only that branch), a branch with an invalid block rolls back exactly, and a reopened state
continues from its stored tip."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from support.btc_chain import NOW, OP_TRUE, Tip, coinbase_out, dump, mine_block, spend

from peerloom.apps.btc.block import Block, BlockHeader, ConsensusError, merkle_root
from peerloom.apps.btc.blockfiles import BlockFiles
from peerloom.apps.btc.chainstate import MIGRATIONS, ChainState, ChainStateError
from peerloom.apps.btc.miner import solve
from peerloom.apps.btc.params import MAINNET, REGTEST
from peerloom.apps.btc.tx import OutPoint, Transaction, TxIn, TxOut
from peerloom.apps.btc.validation import ScriptJob
from peerloom.state import State


class SeamChecker:
    """A script checker for the seam: records every job and refuses the transactions in `refuse`."""

    def __init__(self) -> None:
        self.jobs: list[ScriptJob] = []
        self.refuse: set[bytes] = set()

    def check(self, jobs: Sequence[ScriptJob]) -> None:
        self.jobs += jobs
        for job in jobs:
            if job.tx.txid in self.refuse:
                raise ConsensusError("mandatory-script-verify-flag-failed (refused by the test)")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def open_chain(home: Path) -> Iterator:
    states: list[State] = []

    def opener(checker: SeamChecker | None = None, name: str = "state.sqlite") -> ChainState:
        state = State(home / name)
        states.append(state)
        return ChainState(REGTEST, state.schema("btc", MIGRATIONS), BlockFiles(home / f"blocks-{name}"),
                          checker or SeamChecker())

    yield opener
    for state in states:
        state.close()


def utxo(chain: ChainState) -> dict[OutPoint, int]:
    return {op: coin.value for op, coin in chain.coins()}


def mine_chain(chain: ChainState, tip: Tip, n: int, salt_script: bytes = OP_TRUE) -> tuple[list[Block], Tip]:
    blocks = []
    for _ in range(n):
        block, tip = mine_block(tip, script=salt_script)
        chain.add_block(block, NOW)
        blocks.append(block)
    return blocks, tip


def test_blocks_connect_and_the_utxo_set_follows_them(open_chain) -> None:
    checker = SeamChecker()
    chain = open_chain(checker)
    blocks, tip = mine_chain(chain, Tip.genesis(), 101)
    assert chain.height == 101 and chain.tip.hash == tip.hash
    model = dict(coinbase_out(b) for b in blocks)
    assert utxo(chain) == model
    # Block 102 spends block 1's coinbase (now mature) into two outputs, and one of them again in the same block.
    first = spend([coinbase_out(blocks[0])], n_out=2, fee=1000)
    second = spend([(OutPoint(first.txid, 1), first.outputs[1].value)], n_out=1, fee=500)
    block, tip = mine_block(tip, [first, second], fees=1500)
    result = chain.add_block(block, NOW)
    assert [b.hash for b in result.connected] == [block.hash]
    del model[coinbase_out(blocks[0])[0]]
    model[OutPoint(first.txid, 0)] = first.outputs[0].value
    model[OutPoint(second.txid, 0)] = second.outputs[0].value
    model[coinbase_out(block)[0]] = coinbase_out(block)[1]
    assert utxo(chain) == model
    assert coinbase_out(block)[1] == 50 * 10**8 + 1500  # the subsidy (halving at 150 on regtest) + fees
    assert [job.tx.txid for job in checker.jobs] == [first.txid, second.txid]
    assert checker.jobs[0].flags >= {"P2SH", "WITNESS", "TAPROOT", "DERSIG", "CHECKLOCKTIMEVERIFY",
                                     "CHECKSEQUENCEVERIFY", "NULLDUMMY"}
    # The witness commitment's OP_RETURN output is not a coin.
    assert all(coin.script_pubkey == OP_TRUE for _, coin in chain.coins())


def _with_coinbase_script(block: Block, script_sig: bytes) -> Block:
    cb = block.transactions[0]
    txin = TxIn(cb.inputs[0].prevout, script_sig, cb.inputs[0].sequence, cb.inputs[0].witness)
    new_cb = Transaction(cb.version, (txin,), cb.outputs, cb.locktime)
    txs = (new_cb, *block.transactions[1:])
    root, _ = merkle_root([tx.txid for tx in txs])
    h = block.header
    return solve(Block(BlockHeader(h.version, h.prev_hash, root, h.time, h.bits, 0), txs), REGTEST.pow_limit)


def test_each_connection_rule_refuses_the_block_and_writes_nothing(open_chain) -> None:
    chain = open_chain()
    blocks, tip = mine_chain(chain, Tip.genesis(), 102)
    spendable = coinbase_out(blocks[0])
    spent_tx = spend([spendable], n_out=1)
    block, tip = mine_block(tip, [spent_tx], fees=1000)
    chain.add_block(block, NOW)
    before = dump(chain)
    young = coinbase_out(blocks[-1])  # block 102's coinbase: 2 confirmations at height 104
    mtp = chain.headers.median_time_past(chain.tip)
    cases = {
        "bad-cb-amount": mine_block(tip, extra_reward=1)[0],
        "bad-txns-inputs-missingorspent": mine_block(tip, [spend([spendable])], fees=1000)[0],
        "bad-txns-premature-spend-of-coinbase": mine_block(tip, [spend([young])], fees=1000)[0],
        "bad-txns-in-belowout": mine_block(tip, [Transaction(2, (TxIn(OutPoint(spent_tx.txid, 0), b"", 0),),
                                                           (TxOut(spent_tx.outputs[0].value + 1, OP_TRUE),), 0)])[0],
        "bad-txns-nonfinal": mine_block(tip, [spend([coinbase_out(blocks[1])], locktime=tip.height + 1)],
                                        fees=1000)[0],
        "bad-cb-height": _with_coinbase_script(mine_block(tip)[0], b"\x02\x07\x00peer"),
    }
    # BIP 68: an input with a relative lock of 50 blocks on a coin confirmed 100+ blocks ago passes; 200 fails.
    cases["bad-txns-nonfinal-seq"] = mine_block(tip, [spend([coinbase_out(blocks[2])], sequence=200)],
                                                fees=1000)[0]
    # BIP 113: a time lock is compared with the median time past, not the block's own time.
    cases["bad-txns-nonfinal-mtp"] = mine_block(tip, [spend([coinbase_out(blocks[3])], locktime=mtp + 1)],
                                                fees=1000, time_step=100_000)[0]
    for reason, bad in cases.items():
        with pytest.raises(ConsensusError) as err:
            chain.add_block(bad, NOW)
        assert err.value.reason == reason.removesuffix("-seq").removesuffix("-mtp"), reason
        assert dump(chain) == before and chain.tip.hash == tip.hash
        assert chain.is_failed(bad.hash)
    ok = mine_block(tip, [spend([coinbase_out(blocks[2])], sequence=50)], fees=1000)[0]
    chain.add_block(ok, NOW)
    assert chain.tip.hash == ok.hash


def test_a_bip30_duplicate_and_a_block_after_a_failed_one_are_refused(open_chain) -> None:
    chain = open_chain()
    _, tip = mine_chain(chain, Tip.genesis(), 3)
    bad, bad_tip = mine_block(tip, extra_reward=5)
    with pytest.raises(ConsensusError, match="bad-cb-amount"):
        chain.add_block(bad, NOW)
    child, _ = mine_block(bad_tip)
    with pytest.raises(ConsensusError, match="bad-prevblk"):
        chain.add_block(child, NOW)
    with pytest.raises(ConsensusError, match="duplicate-invalid"):
        chain.add_block(bad, NOW)


def test_a_reorg_follows_the_most_work_branch_and_matches_a_fresh_node(open_chain) -> None:
    chain = open_chain(name="a.sqlite")
    blocks, fork = mine_chain(chain, Tip.genesis(), 101)
    # Branch A (2 blocks) spends block 1's coinbase; branch B (3 blocks) spends block 2's.
    a_tx = spend([coinbase_out(blocks[0])])
    a1, a_tip = mine_block(fork, [a_tx], fees=1000)
    a2, a_tip = mine_block(a_tip)
    b_tx = spend([coinbase_out(blocks[1])], n_out=3)
    b1, b_tip = mine_block(fork, [b_tx], fees=1000, time_step=601)
    b2, b_tip = mine_block(b_tip)
    b3, b_tip = mine_block(b_tip)
    for block in (a1, a2, b1, b2):
        chain.add_block(block, NOW)
    assert chain.tip.hash == a2.hash  # equal work: the first seen stays
    on_a = utxo(chain)
    result = chain.add_block(b3, NOW)
    assert chain.tip.hash == b3.hash
    assert [b.hash for b in result.disconnected] == [a2.hash, a1.hash]
    assert [b.hash for b in result.connected] == [b1.hash, b2.hash, b3.hash]
    fresh = open_chain(name="b.sqlite")
    for block in (*blocks, b1, b2, b3):
        fresh.add_block(block, NOW)
    assert utxo(chain) == utxo(fresh) and list(chain.coins()) == list(fresh.coins())
    # Branch A comes back with more work: the set is exactly what it was on A, plus A's new blocks.
    a3, a_tip = mine_block(a_tip)
    a4, a_tip = mine_block(a_tip)
    chain.add_block(a3, NOW)
    chain.add_block(a4, NOW)
    assert chain.tip.hash == a4.hash
    expected = dict(on_a) | dict(coinbase_out(b) for b in (a3, a4))
    assert utxo(chain) == expected


def test_an_invalid_block_in_a_heavier_branch_rolls_back_exactly(open_chain) -> None:
    checker = SeamChecker()
    chain = open_chain(checker)
    blocks, fork = mine_chain(chain, Tip.genesis(), 101)
    a_tx = spend([coinbase_out(blocks[0])])
    a1, _ = mine_block(fork, [a_tx], fees=1000)
    chain.add_block(a1, NOW)
    before = dump(chain)
    # B: b1 valid, b2 carries a transaction the script checker refuses, b3 on top. b1 alone is less work than A
    # ... equal: A stays; once b3 arrives, B is tried, fails at b2, and the state rolls back to A exactly.
    b1, b_tip = mine_block(fork, time_step=601)
    bad_tx = spend([coinbase_out(blocks[1])])
    checker.refuse.add(bad_tx.txid)
    b2, b_tip = mine_block(b_tip, [bad_tx], fees=1000)
    b3, _ = mine_block(b_tip)
    chain.add_block(b1, NOW)
    with pytest.raises(ConsensusError, match="mandatory-script-verify-flag-failed"):
        chain.add_block(b2, NOW)
    assert chain.tip.hash == a1.hash
    after = [r for r in dump(chain) if not (r[0] == "btc_blocks" and r[1] == b1.hash)]
    assert after == before  # only b1 (valid, on a side branch) was kept
    with pytest.raises(ConsensusError, match="bad-prevblk"):
        chain.add_block(b3, NOW)
    assert chain.tip.hash == a1.hash and chain.is_failed(b2.hash)


def test_a_reopened_chain_state_continues_from_its_tip(open_chain, home: Path) -> None:
    chain = open_chain()
    blocks, tip = mine_chain(chain, Tip.genesis(), 105)
    side, _ = mine_block(Tip(blocks[99].hash, 100, blocks[99].header.time), time_step=700)
    chain.add_block(side, NOW)
    coins = list(chain.coins())
    again = open_chain()
    assert again.tip.hash == tip.hash and again.height == 105 and list(again.coins()) == coins
    assert again.has_block(side.hash) and not again.on_chain(again.headers.get(side.hash))
    more, _ = mine_chain(again, tip, 2)
    assert again.height == 107
    assert utxo(again) == dict(coinbase_out(b) for b in (*blocks, *more))


def test_a_home_of_another_network_is_refused(home: Path) -> None:
    state = State(home / "state.sqlite")
    try:
        schema = state.schema("btc", MIGRATIONS)
        ChainState(REGTEST, schema, BlockFiles(home / "blocks"), SeamChecker())
        with pytest.raises(ChainStateError, match="regtest, not mainnet"):
            ChainState(MAINNET, schema, BlockFiles(home / "blocks"), SeamChecker())
    finally:
        state.close()


def test_blocks_to_fetch_follow_the_best_header_chain_without_a_failed_block(open_chain) -> None:
    chain = open_chain()
    _, tip = mine_chain(chain, Tip.genesis(), 3)
    bad, bad_tip = mine_block(tip, extra_reward=1)
    after_bad, _ = mine_block(bad_tip)
    good = []
    good_tip = tip
    for _ in range(3):
        block, good_tip = mine_block(good_tip, time_step=601)
        good.append(block)
    assert chain.add_headers([bad.header, after_bad.header], NOW).hash == after_bad.hash
    assert [e.hash for e in chain.blocks_to_fetch(10)] == [bad.hash, after_bad.hash]
    chain.add_headers([b.header for b in good[:1]], NOW)  # less work: the bad branch stays best
    assert [e.hash for e in chain.blocks_to_fetch(1)] == [bad.hash]
    with pytest.raises(ConsensusError, match="bad-cb-amount"):
        chain.add_block(bad, NOW)
    # The failed branch is skipped: the other one is fetched next, lowest first.
    assert [e.hash for e in chain.blocks_to_fetch(10)] == [good[0].hash]
    chain.add_headers([b.header for b in good[1:]], NOW)
    assert [e.hash for e in chain.blocks_to_fetch(2)] == [b.hash for b in good[:2]]
    for block in good:
        chain.add_block(block, NOW)
    assert chain.tip.hash == good[-1].hash and chain.blocks_to_fetch(10) == []
