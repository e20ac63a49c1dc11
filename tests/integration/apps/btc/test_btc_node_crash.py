"""Crash safety and node-to-node sync: a peerloom node serves a 2,000-block regtest chain with transactions
(mined here); a second node, `peerloom btc node --connect` in its own process, syncs it, is killed with
SIGKILL part way, restarted on the same home, and must end on the same tip with exactly the same UTXO set as
the serving node (and a chain state that a third, in-process open agrees with)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from support.btc_chain import NOW, Tip, coinbase_out, mine_block, spend

from peerloom.apps.btc.params import REGTEST
from peerloom.apps.btc.runtime import BtcNode, chain_dir, open_chain
from peerloom.apps.btc.scriptcheck import InlineScriptChecker
from peerloom.apps.btc.tx import OutPoint
from peerloom.state import State

pytestmark = pytest.mark.timeout(600)
BLOCKS = 2000


def build_chain(home: Path) -> None:
    """2,000 blocks; from block 101 on, each spends an earlier coinbase into three outputs, and every tenth
    block spends outputs of those transactions again."""
    state = State(home / "state.sqlite")
    try:
        chain = open_chain(home, REGTEST, state, InlineScriptChecker())
        tip, blocks, pending = Tip.genesis(), [], []
        for height in range(1, BLOCKS + 1):
            txs = []
            if height > 100:
                first = spend([coinbase_out(blocks[height - 101])], n_out=3)
                txs.append(first)
                pending.append(first)
                if height % 10 == 0 and len(pending) > 2:
                    a, b = pending.pop(0), pending.pop(0)
                    txs.append(spend([(OutPoint(a.txid, 1), a.outputs[1].value),
                                      (OutPoint(b.txid, 2), b.outputs[2].value)], n_out=1))
            block, tip = mine_block(tip, txs, fees=1000 * len(txs), time_step=1)
            chain.add_block(block, NOW + BLOCKS)
            blocks.append(block)
    finally:
        state.close()


def stored(home: Path) -> tuple[int, str, list]:
    state = State(home / "state.sqlite")
    try:
        chain = open_chain(home, REGTEST, state, InlineScriptChecker())
        return chain.height, chain.tip.header.hash_hex, list(chain.coins())
    finally:
        state.close()


def status(home: Path) -> dict:
    try:
        return json.loads((chain_dir(home, REGTEST) / "status.json").read_text())
    except (OSError, ValueError):
        return {}


async def start_node(home: Path, port: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "peerloom", "btc", "node", "--home", str(home), "--connect", f"127.0.0.1:{port}",
        "--workers", "1", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


async def wait_height(home: Path, proc: asyncio.subprocess.Process, height: int, timeout: float) -> int:
    async with asyncio.timeout(timeout):
        while True:
            assert proc.returncode is None, "the node exited"
            current = status(home).get("height", -1)
            if current >= height and status(home).get("pid") == proc.pid:
                return current
            await asyncio.sleep(0.1)


async def test_sigkill_during_a_2000_block_sync_then_restart_ends_identical(tmp_path: Path) -> None:
    origin, syncing = tmp_path / "origin", tmp_path / "syncing"
    await asyncio.to_thread(build_chain, origin)
    expected = await asyncio.to_thread(stored, origin)
    assert expected[0] == BLOCKS
    async with BtcNode(origin, REGTEST, listen=("127.0.0.1", 0), workers=0) as server:
        proc = await start_node(syncing, server.port)
        try:
            reached = await wait_height(syncing, proc, 600, 240)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert reached < BLOCKS
        killed_at = (await asyncio.to_thread(stored, syncing))[0]
        assert 600 <= killed_at < BLOCKS  # stopped part way, at a block boundary
        proc = await start_node(syncing, server.port)
        try:
            await wait_height(syncing, proc, BLOCKS, 240)
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
    assert await asyncio.to_thread(stored, syncing) == expected
