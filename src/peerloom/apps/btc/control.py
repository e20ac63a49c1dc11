"""The running node's control port: how `peerloom btc balance|send` reach the node that owns the home's chain
state and mempool. One JSON request per line on 127.0.0.1 (the port is in the node's status file), one JSON
answer line:

    {"op": "wallet", "scripts": ["0014...", ...]}  ->  {"height": H, "coins": [[txid, vout, value, script,
                                                       height, coinbase], ...], "mempool": ["<raw tx>", ...]}
    {"op": "send", "tx": "<raw tx hex>"}           ->  {"txid": "<display hex>"} or {"error": "<reject reason>"}

`wallet` answers the confirmed coins paying the scripts and the mempool transactions touching them, read under
the sync lock (one consistent moment); `send` puts a transaction through mempool acceptance and relay, as one
from a peer but with the reason of a refusal sent back. The keys never leave the CLI's process; what the port
offers (read the UTXO set and the mempool, submit a transaction) is what the P2P port offers anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from dataclasses import dataclass
from typing import Any, Protocol

from .coins import Coin
from .mempool import MempoolReject
from .serialize import BtcError, hash_hex
from .tx import MAX_TX_WIRE_BYTES, OutPoint, Transaction, parse_transaction
from .wallet import WalletError, confirmed_coins, relevant_transactions

log = logging.getLogger(__name__)
MAX_LINE = 2 * MAX_TX_WIRE_BYTES + 1024  # a hex transaction, or the scripts of a large wallet
MAX_SCRIPTS = 10_000
MAX_SCRIPT_BYTES = 10_000
TIMEOUT = 60.0


class ControlError(BtcError):
    """A malformed control request."""


@dataclass(frozen=True)
class WalletQuery:
    scripts: tuple[bytes, ...]


@dataclass(frozen=True)
class SendTransaction:
    tx: Transaction


def _hex(value: Any, limit: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * limit:
        raise ControlError(f"{what}: not a hex string of at most {limit} bytes")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ControlError(f"{what}: not hex") from None


def parse_request(line: bytes) -> WalletQuery | SendTransaction:
    """One request line; `ControlError` for anything malformed."""
    if len(line) > MAX_LINE:
        raise ControlError("request too long")
    try:
        request = json.loads(line)
    except (ValueError, RecursionError):
        raise ControlError("request is not JSON") from None
    if not isinstance(request, dict):
        raise ControlError("request is not a JSON object")
    op = request.get("op")
    if op == "wallet":
        scripts = request.get("scripts")
        if not isinstance(scripts, list) or len(scripts) > MAX_SCRIPTS:
            raise ControlError(f"scripts: not a list of at most {MAX_SCRIPTS}")
        return WalletQuery(tuple(_hex(s, MAX_SCRIPT_BYTES, "script") for s in scripts))
    if op == "send":
        return SendTransaction(parse_transaction(_hex(request.get("tx"), MAX_TX_WIRE_BYTES, "tx")))
    raise ControlError(f"unknown op {str(op)[:40]!r}")


class ControlTarget(Protocol):
    """What the control port needs of the node: its chain state (`height`, `schema`), mempool (`entries`), the
    sync lock, and transaction submission (raising `MempoolReject`)."""

    chain: Any
    mempool: Any
    sync: Any

    async def submit_transaction(self, tx: Transaction, source: Any = None) -> list[Any]: ...


async def answer(node: ControlTarget, request: WalletQuery | SendTransaction) -> dict[str, Any]:
    if isinstance(request, SendTransaction):
        try:
            await node.submit_transaction(request.tx)
        except MempoolReject as exc:
            return {"error": f"the node refused the transaction: {exc.reason}"}
        return {"txid": hash_hex(request.tx.txid)}
    async with node.sync.lock:
        coins = await asyncio.to_thread(confirmed_coins, node.chain.schema, request.scripts)
        height = node.chain.height
        pool = [entry.tx for entry in node.mempool.entries.values()]
    txs = relevant_transactions(pool, request.scripts, [op for op, _ in coins])
    return {"height": height,
            "coins": [[op.txid.hex(), op.index, c.value, c.script_pubkey.hex(), c.height, c.coinbase]
                      for op, c in coins],
            "mempool": [tx.serialize().hex() for tx in txs]}


async def serve_control(node: ControlTarget) -> asyncio.Server:
    """Listen on 127.0.0.1 (any free port) for control requests to `node`."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), TIMEOUT)
            try:
                reply = await answer(node, parse_request(line))
            except BtcError as exc:
                reply = {"error": str(exc)}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (OSError, ValueError, TimeoutError) as exc:  # ValueError: a line over the reader's limit
            log.info("btc control: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(client, "127.0.0.1", 0, limit=MAX_LINE)


def call(port: int, request: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
    """Send one request to the control port of the node on this machine; its answer (`WalletError` if none)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(json.dumps(request).encode() + b"\n")
            chunks = []
            while data := sock.recv(1 << 16):
                chunks.append(data)
        reply = json.loads(b"".join(chunks))
    except (OSError, ValueError) as exc:
        raise WalletError(f"the btc node's control port {port} does not answer: {exc}") from None
    if not isinstance(reply, dict):
        raise WalletError("the btc node answered something else than a JSON object")
    if "error" in reply:
        raise WalletError(str(reply["error"]))
    return reply


def read_wallet_answer(reply: dict[str, Any]) -> tuple[int, list[tuple[OutPoint, Coin]], list[Transaction]]:
    """(height, confirmed coins, mempool transactions) of a `wallet` answer."""
    try:
        coins = [(OutPoint(bytes.fromhex(t), int(i)), Coin(int(v), bytes.fromhex(s), int(h), bool(cb)))
                 for t, i, v, s, h, cb in reply["coins"]]
        return int(reply["height"]), coins, [parse_transaction(bytes.fromhex(x)) for x in reply["mempool"]]
    except (KeyError, TypeError, ValueError, BtcError) as exc:
        raise WalletError(f"the btc node's wallet answer is damaged: {exc}") from None
