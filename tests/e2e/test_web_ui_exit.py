"""The web UI's connections view end to end: a real `peerloom daemon` made an exit through the API, a node on
loopback downloading through it with a SOCKS5 proxy, and Chromium showing the exit's policy, the peer's connection
and the bytes it moved through the exit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.browser import NO_PLAYWRIGHT, chromium_page
from support.daemon import DaemonProcess
from support.exit_net import body, http_server, socks_get
from support.swarm import node

from peerloom.apps.exit.socks_server import SocksServer
from peerloom.apps.exit.wire import Reply
from peerloom.identity import PeerId

expect = pytest.importorskip("playwright.async_api", reason=NO_PLAYWRIGHT).expect

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


async def test_the_connections_view_shows_the_exit_its_peer_and_the_bytes(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path / "daemon", tmp_path / "dl")
    async with http_server() as http_port, node(tmp_path, "client", pubsub=False, mdns=False, utp=False) as client:
        try:
            await daemon.start()
            client_id = str(client.secure_host.peer_id)
            await daemon.ok("PUT", "/api/v1/exit/policy", {"allowed_peers": [client_id], "allow_private": True})
            info = await daemon.ok("GET", "/api/v1/node")
            secure = next(a for a in info["listen_addrs"] if "/tcp/" in a and "/p2p/" in a)
            await client.secure_host.connect(secure)
            socks = SocksServer(client.exit, PeerId.from_string(secure.rsplit("/", 1)[1]))
            _, port = await socks.start("127.0.0.1", 0)
            try:
                assert await socks_get(port, "127.0.0.1", http_port) == (Reply.SUCCEEDED, body())
            finally:
                await socks.close()
            async with chromium_page(tmp_path / "chromium") as (page, errors):
                await page.goto(f"{daemon.api}/#token={daemon.token}")
                await expect(page.locator("#exit-policy")).to_contain_text("Exit for 1 peer(s)")
                await expect(page.locator("#exit-policy")).to_contain_text("private destinations allowed")
                row = page.locator(f'#connections-table tr[data-peer="{client_id}"]')
                await expect(row).to_have_count(1)
                await expect(row.locator("td").nth(1)).to_have_text("direct")  # not through a relay
                traffic = page.locator(f'#exit-traffic tr[data-peer="{client_id}"][data-role="served"]')
                await expect(traffic).to_contain_text("through this node")
                await expect(traffic.locator("td").nth(4)).to_have_text("1")
                await expect(page.locator("#no-exit-traffic")).to_be_hidden()
                ARTIFACTS.mkdir(exist_ok=True)
                await page.locator("#connections").screenshot(path=ARTIFACTS / "web-ui-connections.png")
                assert errors == []
        finally:
            exit_code = await asyncio.to_thread(daemon.stop)
    assert exit_code == 0, daemon.log.read_text()
