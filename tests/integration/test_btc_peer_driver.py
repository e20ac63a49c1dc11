"""Two peerloom Bitcoin peers over 127.0.0.1: one serves a mined regtest header chain (more than one `headers`
message long, with a fork), the other dials it, completes the handshake and syncs to the same most-work tip;
peers that break the protocol make the driver raise and close the connection."""

from __future__ import annotations

import asyncio

import pytest

from peerloom.apps.btc.block import BlockHeader
from peerloom.apps.btc.headers import HeaderChain, HeaderEntry
from peerloom.apps.btc.p2p import MAX_HEADERS_RESULTS, Verack, WtxidRelay, encode_message
from peerloom.apps.btc.params import MAINNET, REGTEST
from peerloom.apps.btc.peer_driver import BtcPeer
from peerloom.apps.btc.serialize import BtcError
from peerloom.apps.btc.session import PeerMisbehaved

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


async def test_a_peer_speaking_another_network_or_breaking_the_handshake_is_refused() -> None:
    """Mainnet magic on a regtest connection, and wtxidrelay after verack: `BtcError`, the socket closed."""
    closed: list[bool] = []

    async def wrong_network(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        writer.write(encode_message(MAINNET.magic, Verack()))
        await writer.drain()
        closed.append(await reader.read(1) == b"")
        writer.close()

    server = await asyncio.start_server(wrong_network, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(BtcError, match="magic"):
            await BtcPeer.connect("127.0.0.1", port, REGTEST, timeout=5)
        await asyncio.sleep(0.1)
    assert closed == [True]

    async def late_wtxidrelay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = await BtcPeer.accept(reader, writer, REGTEST)
        await asyncio.sleep(0.05)
        writer.write(encode_message(REGTEST.magic, WtxidRelay()))
        await writer.drain()
        await reader.read(1)
        await peer.close()

    server = await asyncio.start_server(late_wtxidrelay, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        async with await BtcPeer.connect("127.0.0.1", port, REGTEST) as client:
            with pytest.raises(PeerMisbehaved, match="after verack"):
                await asyncio.wait_for(client.receive(), 5)
