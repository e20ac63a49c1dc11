"""A malicious peer against a running peerloom Bitcoin node: it announces and delivers a block with a bad
merkle root, a header without enough work, a block with an inflated coinbase, a block with a double spend, a
block with an invalid signature, then a malformed and an oversized message. Each time the node refuses it,
writes nothing to its chain state, disconnects and bans the peer (and refuses it when it comes back), and
stays up: an honest peer then delivers a valid block, which connects."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from support.btc_chain import NOW, P2wpkhKey, Tip, coinbase_out, dump, mine_block
from support.btc_rogue_peer import RoguePeer

from peerloom.apps.btc.block import Block
from peerloom.apps.btc.miner import solve
from peerloom.apps.btc.p2p import BlockMessage, GetData, GetHeaders, Headers, NotFound
from peerloom.apps.btc.params import REGTEST
from peerloom.apps.btc.runtime import BtcNode, open_chain
from peerloom.apps.btc.scriptcheck import InlineScriptChecker
from peerloom.apps.btc.serialize import sha256d
from peerloom.apps.btc.tx import Transaction, TxIn, TxOut
from peerloom.state import State

pytestmark = pytest.mark.timeout(300)
KEY = P2wpkhKey(b"\x22" * 32)


def build(home: Path) -> tuple[list[Block], Tip]:
    state = State(home / "state.sqlite")
    try:
        chain = open_chain(home, REGTEST, state, InlineScriptChecker())
        tip, blocks = Tip.genesis(), []
        for _ in range(102):
            block, tip = mine_block(tip, script=KEY.script, time_step=1)
            chain.add_block(block, NOW)
            blocks.append(block)
        return blocks, tip
    finally:
        state.close()


def signed_spend(block: Block, forge: bool = False, salt: int = 0) -> Transaction:
    outpoint, value = coinbase_out(block)
    tx = Transaction(2, (TxIn(outpoint, b"", 0xFFFFFFFE),), (TxOut(value - 1000 - salt, KEY.script),), 0)
    tx = KEY.sign_input(tx, 0, [TxOut(value, KEY.script)])
    if forge:
        sig, pub = tx.inputs[0].witness
        tx = Transaction(2, (TxIn(outpoint, b"", 0xFFFFFFFE, (sig[:8] + bytes([sig[8] ^ 1]) + sig[9:], pub)),),
                         tx.outputs, 0)
    return tx


async def deliver_block(peer: RoguePeer, *chain: Block) -> None:
    """Announce `chain` by its headers; hand the blocks over as the node asks for them (`notfound` for others)."""
    await peer.send(Headers(tuple(b.header for b in chain)))
    wanted = [b.hash for b in chain]
    while wanted:
        request = await peer.expect(GetData)
        for item in request.items:  # type: ignore[attr-defined]
            if item.hash in wanted:
                assert item.hash == wanted.pop(0)
                await peer.send(BlockMessage(next(b for b in chain if b.hash == item.hash)))
            else:
                await peer.send(NotFound((item,)))


async def test_each_misbehaviour_is_refused_and_banned_and_the_node_stays_up(tmp_path: Path) -> None:
    blocks, tip = build(tmp_path)
    spent_twice = [signed_spend(blocks[0]), signed_spend(blocks[0], salt=1)]
    bad_root = mine_block(tip, time_step=1)[0]
    bad_root = solve(Block(dataclasses.replace(bad_root.header, merkle_root=b"\x42" * 32, nonce=0),
                           bad_root.transactions), REGTEST.pow_limit)
    unworked = mine_block(tip, time_step=1)[0].header
    while unworked.check_proof_of_work(REGTEST.pow_limit):
        unworked = dataclasses.replace(unworked, nonce=unworked.nonce + 1)
    payload = b"\xff" * 9
    malformed = REGTEST.magic + b"headers".ljust(12, b"\0") + struct.pack("<I", 9) + sha256d(payload)[:4] + payload
    oversized = REGTEST.magic + b"block".ljust(12, b"\0") + struct.pack("<I", 4_000_001) + bytes(4)

    async def send_header(peer: RoguePeer) -> None:
        await peer.send(Headers((unworked,)))

    def block_case(block: Block) -> Callable[[RoguePeer], Awaitable[None]]:
        return lambda peer: deliver_block(peer, block)

    def raw_case(data: bytes) -> Callable[[RoguePeer], Awaitable[None]]:
        return lambda peer: peer.send_raw(data)

    # A block whose merkle root does not match may be a corrupted copy of a valid one: its header is not marked
    # failed (Core: BLOCK_MUTATED), so the node would ask the next peers for it; it goes last of the blocks.
    cases: dict[str, Callable[[RoguePeer], Awaitable[None]]] = {
        "too little work": send_header,
        "inflated coinbase": block_case(mine_block(tip, extra_reward=1, script=KEY.script, time_step=1)[0]),
        "double spend": block_case(mine_block(tip, spent_twice, fees=2001, script=KEY.script, time_step=1)[0]),
        "invalid signature": block_case(
            mine_block(tip, [signed_spend(blocks[1], forge=True)], fees=1000, script=KEY.script, time_step=1)[0]),
        "bad merkle root": block_case(bad_root),
        "malformed message": raw_case(malformed),
        "oversized message": raw_case(oversized),
    }
    async with BtcNode(tmp_path, REGTEST, listen=("127.0.0.1", 0), workers=0) as node:
        before = dump(node.chain)
        for name, misbehave in cases.items():
            peer = await RoguePeer.connect(node.port)
            try:
                await peer.expect(GetHeaders)  # the node syncs headers from every new peer first
                await peer.send(Headers(()))
                await misbehave(peer)
                assert await peer.hung_up(), name
            finally:
                await peer.close()
            assert "127.0.0.1" in node.book.bans, name
            assert dump(node.chain) == before, name
            assert node.chain.tip.hash == tip.hash, name
            with pytest.raises(ConnectionError):  # a banned address is refused at once
                await RoguePeer.connect(node.port)
            node.book.bans.clear()  # the next case comes from the same address
        # Still up, and still validating: an honest peer's two valid blocks (more work than the mutated block's
        # header, which the node would otherwise ask for first) connect, one spending block 1's coinbase.
        peer = await RoguePeer.connect(node.port)
        try:
            await peer.expect(GetHeaders)
            await peer.send(Headers(()))
            good, after = mine_block(tip, [signed_spend(blocks[0])], fees=1000, script=KEY.script, time_step=1)
            more, _ = mine_block(after, script=KEY.script, time_step=1)
            await deliver_block(peer, good, more)
            await node.wait_for_height(tip.height + 2)
            assert node.chain.tip.hash == more.hash and "127.0.0.1" not in node.book.bans
            assert node.chain.fetch_coins([coinbase_out(blocks[0])[0]]) == {}  # spent by `good`
        finally:
            await peer.close()
