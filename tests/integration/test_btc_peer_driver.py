"""Two peerloom Bitcoin peers over 127.0.0.1: one serves a mined regtest header chain (more than one `headers`
message long, with a fork), the other dials it, completes the handshake and syncs to the same most-work tip."""

from __future__ import annotations

import asyncio

from peerloom.apps.btc.block import BlockHeader
from peerloom.apps.btc.headers import HeaderChain, HeaderEntry
from peerloom.apps.btc.p2p import MAX_HEADERS_RESULTS
from peerloom.apps.btc.params import REGTEST
from peerloom.apps.btc.peer_driver import BtcPeer

NOW = REGTEST.genesis.header.time + 100_000_000


def mine_on(chain: HeaderChain, tip: HeaderEntry, count: int, salt: int) -> HeaderEntry:
    for _ in range(count):
        for nonce in range(1 << 16):
            header = BlockHeader(4, tip.hash, bytes([salt]) * 32, tip.header.time + 600, 0x207FFFFF, nonce)
            if header.check_proof_of_work(REGTEST.pow_limit):
                break
        tip = chain.connect(header, NOW)
    return tip


async def test_a_peer_syncs_a_served_chain_across_several_headers_messages() -> None:
    server_chain = HeaderChain(REGTEST)
    fork = mine_on(server_chain, server_chain.tip, 100, salt=1)
    mine_on(server_chain, fork, 50, salt=2)  # a shorter branch the syncing peer must not end on
    best = mine_on(server_chain, fork, MAX_HEADERS_RESULTS + 200, salt=3)
    assert server_chain.tip is best

    serving: list[asyncio.Task[None]] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = await BtcPeer.accept(reader, writer, REGTEST, start_height=server_chain.height)
        serving.append(asyncio.current_task())  # type: ignore[arg-type]
        async with peer:
            await peer.serve_headers(server_chain)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        async with await BtcPeer.connect("127.0.0.1", port, REGTEST) as client:
            version = client.session.features.version
            assert version is not None and version.start_height == best.height
            assert client.session.features.wtxid_relay and client.session.features.addrv2
            chain = HeaderChain(REGTEST)
            tip = await client.sync_headers(chain)
        assert (tip.height, tip.hash) == (best.height, best.hash)
        assert len(chain) == best.height + 1  # only the best branch was sent
        await asyncio.wait_for(asyncio.gather(*serving), 5)
