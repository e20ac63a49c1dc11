"""`peerloom btc address|balance|send` from the command line on a regtest chain peerloom mined itself: addresses
of both kinds from a 0600 wallet, the balance read from the home's chain state (maturity counted) with no node
running, a taproot key-path payment sent through a running node's mempool (relayed to a second peerloom node) and
mined by it, the balances after each step, and one-line errors (no node, bad address, bad amount, insufficient
funds, dust, a malformed control request)."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

from support.cli import peerloom

from peerloom.apps.btc.params import COIN, REGTEST
from peerloom.apps.btc.runtime import BtcNode
from peerloom.apps.btc.wallet import wallet_path

SOMEONE = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"


async def btc(*args: str) -> dict:
    code, out, err = await peerloom("btc", *args, "--json", timeout=60)
    assert code == 0, err
    return json.loads(out)


async def one_line_error(*args: str, code: int = 1) -> str:
    got, _, err = await peerloom("btc", *args, timeout=60)
    assert got == code and len(err.strip().splitlines()) == 1, err
    return err


async def test_addresses_balance_and_a_taproot_payment_through_the_running_node(tmp_path: Path) -> None:
    home = str(tmp_path)
    assert "no regtest wallet" in await one_line_error("balance", "--home", home)
    taproot = await btc("address", "--type", "p2tr", "--home", home)
    segwit = await btc("address", "--home", home)
    assert taproot["address"].startswith("bcrt1p") and taproot["path"] == "m/86'/1'/0'/0/0"
    assert segwit["address"].startswith("bcrt1q") and segwit["path"] == "m/84'/1'/0'/0/0"
    assert (await btc("address", "--home", home))["path"] == "m/84'/1'/0'/0/1"
    assert stat.S_IMODE(wallet_path(tmp_path, REGTEST).stat().st_mode) == 0o600

    await btc("generate", "1", "--to-script", taproot["script"], "--home", home)
    await btc("generate", "100", "--home", home)
    await btc("generate", "1", "--to-script", segwit["script"], "--home", home)
    offline = await btc("balance", "--home", home)
    assert (offline["height"], offline["node_running"]) == (102, False)
    assert (offline["confirmed"], offline["immature"], offline["unconfirmed"]) == (50 * COIN, 50 * COIN, 0)
    assert "no btc node is running" in await one_line_error("send", SOMEONE, "1", "--home", home)

    async with (BtcNode(tmp_path, REGTEST, listen=("127.0.0.1", 0), workers=0) as node,
                BtcNode(tmp_path / "peer", REGTEST, connect=[("127.0.0.1", node.port)], workers=0) as peer):
        # `peer`: a second peerloom node, to see the payment relayed
        await peer.wait_for_height(102)
        assert "bad address for regtest" in await one_line_error(
            "send", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "1", "--home", home)
        assert "amount 'abc'" in await one_line_error("send", SOMEONE, "abc", "--home", home)
        assert "insufficient funds" in await one_line_error("send", SOMEONE, "60", "--home", home)
        assert "dust" in await one_line_error("send", SOMEONE, "100sat", "--home", home)

        sent = await btc("send", SOMEONE, "10", "--fee-rate", "5", "--home", home)
        assert sent["inputs"] == 1 and sent["fee"] >= 5 * sent["vsize"]
        pool = await btc("mempool", "--home", home)
        assert [e["txid"] for e in pool] == [sent["txid"]]
        tx = node.mempool.get(bytes.fromhex(sent["txid"])[::-1])
        assert tx is not None and len(tx.inputs[0].witness) == 1 and len(tx.inputs[0].witness[0]) == 64  # key path
        async with asyncio.timeout(30):  # relayed: inv, then getdata answered with the transaction
            while peer.mempool.get(tx.txid) is None:
                await asyncio.sleep(0.1)
        pending = await btc("balance", "--home", home)
        assert (pending["confirmed"], pending["immature"], pending["unconfirmed"]) == (0, 50 * COIN, sent["change"])

        (block,) = await node.generate(1, b"\x51")  # our own consensus rules (taproot active) accept it
        assert tx in block.transactions and len(node.mempool) == 0
        after = await btc("balance", "--home", home)
        assert (after["height"], after["confirmed"], after["unconfirmed"]) == (103, sent["change"], 0)
        assert after["confirmed"] == 40 * COIN - sent["fee"]
        await peer.wait_for_height(103)
        assert len(peer.mempool) == 0

        reader, writer = await asyncio.open_connection("127.0.0.1", node.control_port)
        writer.write(b'{"op": "send", "tx": "00"}\n')
        reply = json.loads(await reader.readline())
        writer.close()
        assert "error" in reply
