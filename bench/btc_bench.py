"""Syncing the same regtest chain, peerloom against bcoin 1.0.2, in the same run: one JSON line.

    python bench/btc_bench.py [--blocks 2000] [--txs 10] [--workers 2]

peerloom mines the chain first (it is the origin: bcoin's own miner takes ~0.25 s a block here): from block 101
on, each block holds `--txs` + 1 signed P2PKH transactions (legacy, so bcoin's regtest, where segwit activates
by version bits only, accepts them). A peerloom node serves the chain on 127.0.0.1; then a second peerloom node
(`peerloom btc node --connect`, its own process, `--workers` script-checking processes) and a bcoin node
(`addpeer`, no workers) each sync it from that server, one after the other, timed from start to the last block
connected. Also signatures per second: over the whole peerloom sync (signatures / sync seconds), through the
script checker block validation uses (`--workers` processes, the chain's transactions in block-sized batches:
parsing, sighash, interpreter, libsecp256k1), and raw `coincurve` ECDSA verification on one core of the same
signatures.

Prints {"blocks", "transactions", "signatures", "peerloom_sync_s", "bcoin_sync_s", "bcoin_over_peerloom"
(above 1.0: peerloom is faster), "sync_sigs_per_s", "validation_sigs_per_s", "coincurve_verify_per_s",
"validation_over_coincurve", "workers"}.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

import coincurve  # noqa: E402
from support.bcoin_node import BcoinNode, ensure_installed  # noqa: E402

from peerloom.apps.btc.miner import assemble_block, solve  # noqa: E402
from peerloom.apps.btc.params import REGTEST  # noqa: E402
from peerloom.apps.btc.runtime import BtcNode, open_chain  # noqa: E402
from peerloom.apps.btc.scriptcheck import InlineScriptChecker, ProcessScriptChecker  # noqa: E402
from peerloom.apps.btc.sighash import legacy_sighash  # noqa: E402
from peerloom.apps.btc.status import running_status  # noqa: E402
from peerloom.apps.btc.tx import OutPoint, Transaction, TxIn, TxOut  # noqa: E402
from peerloom.apps.btc.validation import ScriptJob  # noqa: E402
from peerloom.state import State  # noqa: E402

KEY = coincurve.PrivateKey(b"\x07" * 32)
PUB = KEY.public_key.format(compressed=True)
P2PKH = b"\x76\xa9\x14" + hashlib.new("ripemd160", hashlib.sha256(PUB).digest()).digest() + b"\x88\xac"
FEE = 1000


def signed(prevout: OutPoint, value: int, outputs: int) -> Transaction:
    share = (value - FEE) // outputs
    tx = Transaction(1, (TxIn(prevout, b"", 0xFFFFFFFF),), tuple(TxOut(share, P2PKH) for _ in range(outputs)), 0)
    sig = KEY.sign(legacy_sighash(P2PKH, tx, 0, 1), hasher=None) + b"\x01"
    script_sig = bytes((len(sig),)) + sig + bytes((len(PUB),)) + PUB
    return Transaction(1, (TxIn(prevout, script_sig, 0xFFFFFFFF),), tx.outputs, 0)


def build(home: Path, blocks: int, txs: int) -> tuple[int, list[tuple[bytes, bytes]], list[ScriptJob]]:
    """Mine the chain into `home`; the number of transactions, (signature, digest) pairs of a sample, and the
    script jobs of every transaction (for the checker's own rate)."""
    state = State(home / "state.sqlite")
    sample: list[tuple[bytes, bytes]] = []
    jobs: list[ScriptJob] = []
    values: dict[OutPoint, int] = {}
    count = 0
    try:
        chain = open_chain(home, REGTEST, state, InlineScriptChecker())
        flags = chain.rules.script_flags(blocks, bytes(32))
        coinbases: list[tuple[OutPoint, int]] = []
        fan: Transaction | None = None
        for height in range(1, blocks + 1):
            body: list[Transaction] = []
            if height > 100:
                outpoint, value = coinbases[height - 101]
                new_fan = signed(outpoint, value, txs)
                body.append(new_fan)
                if fan is not None:
                    body += [signed(OutPoint(fan.txid, i), out.value, 1) for i, out in enumerate(fan.outputs)]
                fan = new_fan
            prev = chain.tip
            reward = chain.rules.subsidy(height) + FEE * len(body)
            block = assemble_block(prev.hash, height, prev.header.time + 600, prev.header.bits, body, P2PKH, reward,
                                   segwit=False)
            block = solve(block, REGTEST.pow_limit)
            chain.add_block(block, int(time.time()) + blocks * 600)
            cb = block.transactions[0]
            coinbases.append((OutPoint(cb.txid, 0), cb.outputs[0].value))
            count += len(body)
            for tx in block.transactions:
                values.update((OutPoint(tx.txid, i), o.value) for i, o in enumerate(tx.outputs))
            for tx in body:
                spent = (TxOut(values[tx.inputs[0].prevout], P2PKH),)
                jobs.append(ScriptJob(tx, spent, flags))
            if len(sample) < 2000:
                for tx in body:
                    sig = tx.inputs[0].script_sig[1 : 1 + tx.inputs[0].script_sig[0] - 1]
                    unsigned = Transaction(1, (TxIn(tx.inputs[0].prevout, b"", 0xFFFFFFFF),), tx.outputs, 0)
                    sample.append((sig, legacy_sighash(P2PKH, unsigned, 0, 1)))
    finally:
        state.close()
    return count, sample, jobs


def checker_rate(jobs: list[ScriptJob], workers: int) -> float:
    """Signatures per second through the script checker block connection uses (batches of 2,000 transactions,
    the size of a full block of one-input spends), workers started before the clock."""
    checker = ProcessScriptChecker(workers) if workers else InlineScriptChecker()
    try:
        checker.check(jobs[:200])  # start the worker processes
        start = time.perf_counter()
        for i in range(0, len(jobs), 2000):
            checker.check(jobs[i : i + 2000])
        return len(jobs) / (time.perf_counter() - start)
    finally:
        if isinstance(checker, ProcessScriptChecker):
            checker.close()


def coincurve_rate(sample: list[tuple[bytes, bytes]], seconds: float = 2.0) -> float:
    key = coincurve.PublicKey(PUB)
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for sig, digest in sample:
            assert key.verify(sig, digest, hasher=None)
        done += len(sample)
    return done / (time.perf_counter() - start)


async def peerloom_sync(home: Path, port: int, blocks: int, workers: int) -> float:
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "peerloom", "btc", "node", "--home", str(home), "--connect", f"127.0.0.1:{port}",
        "--workers", str(workers), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        while (running_status(home, REGTEST) or {}).get("height", -1) < blocks:
            if proc.returncode is not None:
                raise RuntimeError("the peerloom node exited")
            await asyncio.sleep(0.05)
        return time.perf_counter() - start
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()


async def bcoin_sync(port: int, blocks: int) -> float:
    async with BcoinNode.start(blocks=0) as node:
        start = time.perf_counter()
        await node.add_peer(port)
        while await node.current_height(timeout=60) < blocks:
            await asyncio.sleep(0.05)
        return time.perf_counter() - start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=2000)
    parser.add_argument("--txs", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not ensure_installed():
        raise SystemExit("bcoin is not installed (node and npm are needed)")
    work = Path(tempfile.mkdtemp(prefix="btc-bench-"))
    try:
        origin = work / "origin"
        transactions, sample, jobs = await asyncio.to_thread(build, origin, args.blocks, args.txs)
        async with BtcNode(origin, REGTEST, listen=("127.0.0.1", 0), workers=0) as server:
            ours = await peerloom_sync(work / "peerloom", server.port, args.blocks, args.workers)
            theirs = await bcoin_sync(server.port, args.blocks)
        raw = coincurve_rate(sample)
        validation = checker_rate(jobs, args.workers)
        signatures = transactions  # one input, one signature each
        print(json.dumps({
            "blocks": args.blocks, "transactions": transactions, "signatures": signatures,
            "peerloom_sync_s": round(ours, 2), "bcoin_sync_s": round(theirs, 2),
            "bcoin_over_peerloom": round(theirs / ours, 3),
            "sync_sigs_per_s": round(signatures / ours), "validation_sigs_per_s": round(validation),
            "coincurve_verify_per_s": round(raw), "validation_over_coincurve": round(validation / raw, 3),
            "workers": args.workers,
        }))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
