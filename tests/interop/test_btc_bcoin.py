"""peerloom's Bitcoin P2P layer against bcoin 1.0.2 (a full node in JavaScript) on regtest, over 127.0.0.1.

bcoin mines more than one `headers` message worth of blocks (2,000 per reply) — past segwit's activation, so
its blocks carry BIP 141 witness commitments; peerloom dials it, completes the version handshake, syncs every
header with getheaders (checking proof of work, bits, median time past on each) and must end on bcoin's own
tip hash and height; it fetches early and recent blocks with their witnesses and checks them as consensus does
without context (proof of work, merkle root, coinbase, transactions) and their witness commitments; when bcoin
mines more, peerloom follows its announcements to the new tip.
"""

from __future__ import annotations

import time

import pytest
from support.bcoin_node import BcoinNode, ensure_installed

from peerloom.apps.btc.checks import check_block
from peerloom.apps.btc.headers import HeaderChain
from peerloom.apps.btc.p2p import MAX_HEADERS_RESULTS, Headers, Inv
from peerloom.apps.btc.params import REGTEST
from peerloom.apps.btc.peer_driver import BtcPeer
from peerloom.apps.btc.serialize import hash_from_hex
from peerloom.apps.btc.session import USER_AGENT

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]

BLOCKS = MAX_HEADERS_RESULTS + 100  # two getheaders rounds


@pytest.fixture(scope="module")
def bcoin_ready() -> None:
    res = ensure_installed()
    if not res:
        pytest.skip(res.reason)


async def test_peerloom_syncs_a_bcoin_regtest_chain_and_follows_new_blocks(bcoin_ready: None) -> None:
    async with BcoinNode.start(blocks=BLOCKS) as node:
        assert node.height == BLOCKS
        async with await BtcPeer.connect("127.0.0.1", node.port, REGTEST) as peer:
            version = peer.session.features.version
            assert version is not None and version.user_agent == "/bcoin:v1.0.2/"
            assert version.start_height == BLOCKS
            chain = HeaderChain(REGTEST)
            tip = await peer.sync_headers(chain)
            seen = await node.wait_for("peer", agent=USER_AGENT)
            assert seen["version"] == 70016
            assert (tip.height, tip.header.hash_hex) == (node.height, node.tip_hash)
            assert len(chain) == BLOCKS + 1 and chain.tip is tip

            for height in (1, 2, *range(BLOCKS - 20, BLOCKS + 1)):  # early blocks and the last ones
                entry = chain.at_height(height)
                assert entry is not None
                block = await peer.get_block(entry.hash)
                assert block.header == entry.header
                check_block(block, REGTEST.pow_limit)
                block.check_witness_commitment()
            # Segwit is active by now: the tip's coinbase commits to its witnesses with the reserved value.
            assert block.witness_commitment_index() is not None
            assert block.transactions[0].inputs[0].witness == (bytes(32),)

            mined = await node.mine(3)
            while chain.height < mined["height"]:
                message = await peer.receive()
                if isinstance(message, Headers):  # sendheaders (BIP 130): new blocks come as headers
                    chain.connect_headers(message.headers, int(time.time()))
                elif isinstance(message, Inv):
                    await peer.sync_headers(chain)
            assert chain.tip.hash == hash_from_hex(mined["hash"])
