"""A running Bitcoin node: the chain state in the home's state database, the block sync, the mempool and its
relay, outbound peers from `--connect` (redialled while not banned) and inbound peers on a listening port.

A peer that breaks a rule — a block or transaction that fails validation, a malformed or oversized message, a
protocol violation — is disconnected and banned (`PeerBook.ban`); the node carries on with the others. The
node writes its status (tip, peers, mempool) to HOME/btc/NETWORK/status.json for `peerloom btc tip|peers|
mempool` to read while it runs.

    async with BtcNode(home, REGTEST, connect=[("127.0.0.1", 18444)]) as node:
        await node.wait_for_height(500)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from peerloom.state import State

from .block import Block, ConsensusError
from .blockfiles import BlockFiles
from .chainstate import MIGRATIONS, Activation, ChainState
from .control import serve_control
from .mempool import Mempool, MempoolReject
from .miner import assemble_block, solve
from .p2p import MSG_TX, MSG_WTX, GetData, Inv, InvItem, Message, NotFound, TxMessage
from .params import NetworkParams
from .peer_driver import BtcPeer
from .peers import PeerBook, PeerInfo
from .scriptcheck import InlineScriptChecker, ProcessScriptChecker, ScriptChecker
from .serialize import BtcError, hash_hex
from .status import status_path
from .sync import BlockSync
from .validation import ScriptJob

log = logging.getLogger(__name__)
REDIAL_SECONDS = 2.0


def chain_dir(home: Path, params: NetworkParams) -> Path:
    return Path(home) / "btc" / params.name


def open_chain(home: Path, params: NetworkParams, state: State, checker: ScriptChecker) -> ChainState:
    """The home's chain state for `params`."""
    return ChainState(params, state.schema("btc", MIGRATIONS), BlockFiles(chain_dir(home, params) / "blocks"),
                      checker)


class BtcNode:
    def __init__(self, home: Path, params: NetworkParams, connect: Sequence[tuple[str, int]] = (),
                 listen: tuple[str, int] | None = None, workers: int = 2) -> None:
        self.home = Path(home)
        self.params = params
        self.book = PeerBook(addnodes=list(connect))
        self.mempool = Mempool()
        self._listen = listen
        self._tasks: set[asyncio.Task[Any]] = set()
        self._peers: dict[tuple[str, int], BtcPeer] = {}
        self._server: asyncio.Server | None = None
        self._control: asyncio.Server | None = None
        self.control_port = 0
        self._state: State | None = None
        self._checker_inline = InlineScriptChecker()
        self._checker: ScriptChecker = ProcessScriptChecker(workers) if workers > 0 else self._checker_inline
        self.chain: ChainState
        self.sync: BlockSync
        self.port = 0
        self.tip_changed = asyncio.Event()

    async def __aenter__(self) -> BtcNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        self._state = State(self.home / "state.sqlite")
        self.chain = await asyncio.to_thread(open_chain, self.home, self.params, self._state, self._checker)
        self.sync = BlockSync(self.chain, on_message=self._on_message)
        self.sync.on_activation.append(self._activated)
        if self._listen is not None:
            self._server = await asyncio.start_server(self._inbound, *self._listen)
            self.port = self._server.sockets[0].getsockname()[1]
        self._spawn(self._dialer())
        self._control = await serve_control(self)  # the wallet commands' way in (apps/btc/control.py)
        self.control_port = self._control.sockets[0].getsockname()[1]
        self.write_status()

    async def stop(self) -> None:
        for server in (self._server, self._control):
            if server is not None:
                server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if isinstance(self._checker, ProcessScriptChecker):
            self._checker.close()
        with contextlib.suppress(FileNotFoundError):
            status_path(self.home, self.params).unlink()  # no node runs on this home any more
        if self._state is not None:
            self._state.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- peers -------------------------------------------------------------------------------------------------

    async def _dialer(self) -> None:
        while True:
            for address in self.book.to_dial(int(time.time())):
                if address not in self._peers:
                    self._peers[address] = None  # type: ignore[assignment]  # dialling
                    self._spawn(self._outbound(address))
            await asyncio.sleep(REDIAL_SECONDS)

    async def _outbound(self, address: tuple[str, int]) -> None:
        try:
            peer = await BtcPeer.connect(*address, self.params, start_height=self.chain.height)
        except (OSError, BtcError, TimeoutError) as exc:
            log.info("btc: cannot connect to %s:%d: %s", *address, exc)
            self._peers.pop(address, None)
            return
        await self._serve(address, peer, outbound=True)

    async def _inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername")[:2]
        if not self.book.admits_inbound(address[0], int(time.time())):
            writer.close()
            return
        try:
            peer = await BtcPeer.accept(reader, writer, self.params, start_height=self.chain.height)
        except (OSError, BtcError, TimeoutError) as exc:
            log.info("btc: inbound handshake from %s failed: %s", address, exc)
            if isinstance(exc, BtcError):
                self.book.ban(address[0], str(exc), int(time.time()))
            return
        await self._serve(address, peer, outbound=False)

    async def _serve(self, address: tuple[str, int], peer: BtcPeer, outbound: bool) -> None:
        version = peer.session.features.version
        self._peers[address] = peer
        self.book.add(PeerInfo(address, outbound, version.user_agent if version else "",
                               version.start_height if version else 0, int(time.time())))
        self.write_status()
        try:
            await self.sync.run(peer)
        except BtcError as exc:
            log.warning("btc: peer %s:%d misbehaved, banned: %s", *address, exc)
            self.book.ban(address[0], str(exc), int(time.time()))
        except (OSError, ConnectionError, TimeoutError) as exc:
            log.info("btc: peer %s:%d gone: %s", *address, exc)
        finally:
            self._peers.pop(address, None)
            self.book.remove(address)
            await peer.close()
            self.write_status()

    # -- transactions ------------------------------------------------------------------------------------------

    async def _on_message(self, peer: BtcPeer, message: Message) -> None:
        if isinstance(message, Inv):
            wanted = [i for i in message.items if i.type in (MSG_TX, MSG_WTX) and self.mempool.get(i.hash) is None]
            if wanted:
                await peer.send(GetData(tuple(wanted)))
        elif isinstance(message, TxMessage):
            await self.submit_transaction(message.tx, source=peer)
        elif isinstance(message, GetData):
            missing = []
            for item in message.items:
                tx = self.mempool.get(item.hash) if item.type & 0xFF in (MSG_TX, MSG_WTX) else None
                if tx is not None:
                    await peer.send(TxMessage(tx))
                elif item.type & 0xFF in (MSG_TX, MSG_WTX):
                    missing.append(item)
            if missing:
                await peer.send(NotFound(tuple(missing)))

    async def submit_transaction(self, tx: Any, source: BtcPeer | None = None) -> list[Any]:
        """Validate `tx` for the mempool and announce what was accepted to the other peers. A transaction that
        breaks consensus (not mere policy) costs its sender the connection (raised as `ConsensusError`)."""
        mtp = self.chain.headers.median_time_past(self.chain.tip)
        try:
            async with self.sync.lock:
                added = await asyncio.to_thread(self.mempool.accept, tx, self.chain, self.chain.height, mtp,
                                                int(time.time()), self._verify_standard)
        except MempoolReject as exc:
            log.info("btc: transaction %s refused: %s", hash_hex(tx.txid), exc.reason)
            if source is not None and exc.reason.startswith(("mandatory-script-verify", "bad-txns")):
                raise ConsensusError(exc.reason) from None
            if source is None:
                raise
            return []
        for accepted in added:
            await self._announce(accepted, skip=source)
        self.write_status()
        return added

    def _verify_standard(self, job: ScriptJob) -> None:
        self._checker_inline.check([job])

    async def _announce(self, tx: Any, skip: BtcPeer | None) -> None:
        for peer in list(self._peers.values()):
            if peer is None or peer is skip or not peer.session.established:
                continue
            wtxid = peer.session.features.wtxid_relay
            item = InvItem(MSG_WTX, tx.wtxid) if wtxid else InvItem(MSG_TX, tx.txid)
            with contextlib.suppress(OSError, ConnectionError, RuntimeError):
                await peer.send(Inv((item,)))

    def _activated(self, result: Activation) -> None:
        for block in result.connected:
            self.mempool.block_connected(block)
        if result.connected:
            self.tip_changed.set()
            self.tip_changed = asyncio.Event()
            self.write_status()

    # -- mining and status --------------------------------------------------------------------------------------

    async def generate(self, count: int, script_pubkey: bytes) -> list[Block]:
        """Mine `count` blocks on the tip with the mempool's transactions (regtest: a few hashes each)."""
        mined = []
        for _ in range(count):
            tip = self.chain.tip
            txs = [e.tx for e in self.mempool.entries.values()]
            fees = sum(e.fee for e in self.mempool.entries.values())
            height = tip.height + 1
            mtp = self.chain.headers.median_time_past(tip)
            block = assemble_block(tip.hash, height, max(int(time.time()), mtp + 1), tip.header.bits, txs,
                                   script_pubkey, self.chain.rules.subsidy(height) + fees)
            block = await asyncio.to_thread(solve, block, self.params.pow_limit)
            await self.sync.add_block(block)
            mined.append(block)
            for peer in list(self._peers.values()):
                if peer is not None and peer.session.established:
                    with contextlib.suppress(OSError, ConnectionError, RuntimeError):
                        await peer.send(Inv((InvItem(2, block.hash),)))
        return mined

    async def wait_for_height(self, height: int, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while self.chain.height < height:
                await self.tip_changed.wait()

    def status(self) -> dict[str, Any]:
        return {
            "network": self.params.name,
            "pid": os.getpid(),
            "height": self.chain.height,
            "hash": self.chain.tip.header.hash_hex,
            "headers": self.chain.headers.height,
            "port": self.port,
            "control_port": self.control_port,
            "peers": [{"address": f"{p.address[0]}:{p.address[1]}", "outbound": p.outbound,
                       "user_agent": p.user_agent, "start_height": p.start_height}
                      for p in self.book.connected.values()],
            "banned": sorted(self.book.bans),
            "mempool": [{"txid": hash_hex(e.tx.txid), "fee": e.fee, "vsize": e.vsize}
                        for e in self.mempool.entries.values()],
        }

    def write_status(self) -> None:
        path = status_path(self.home, self.params)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status()))
        os.replace(tmp, path)
