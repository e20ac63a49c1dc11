"""The web UI's NAT view end to end: a real `peerloom daemon`, a node on loopback serving AutoNAT, and Chromium.
The view shows the verdict and that port mapping is off; a probe typed in the page dials the peer and asks it to
dial the daemon back. On loopback the server refuses to dial LAN addresses (E_DIAL_REFUSED says nothing about us),
so the verdict stays unknown, but the peer's identify shows where it sees the daemon and the page lists that."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.browser import NO_PLAYWRIGHT, chromium_page
from support.daemon import DaemonProcess
from support.swarm import node

from peerloom.net.nat.autonat import Status

expect = pytest.importorskip("playwright.async_api", reason=NO_PLAYWRIGHT).expect

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


async def test_the_nat_view_shows_reachability_and_a_probe_typed_in_the_page(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path / "daemon", tmp_path / "dl")
    async with node(tmp_path, "peer", pubsub=False, mdns=False, utp=False) as peer:
        try:
            await daemon.start()
            async with chromium_page(tmp_path / "chromium") as (page, errors):
                await page.goto(f"{daemon.api}/#token={daemon.token}")
                facts = page.locator("#nat-facts")
                await expect(facts.locator("dd[data-reachability]")).to_have_text("unknown")
                await expect(page.locator("#nat-mapping")).to_contain_text("off")
                await expect(page.locator("#nat-no-answers")).to_be_visible()
                await expect(page.locator("#nat-observed")).to_have_text("none yet")
                await page.locator("#nat-peer").fill(str(peer.secure_addrs[0]))
                await page.locator("#nat-probe button").click()
                await expect(page.locator("#nat-observed li").first).to_contain_text("/ip4/127.0.0.1/tcp/")
                await expect(page.locator("#nat-peer")).to_have_value("")  # taken
                assert peer.nat is not None and peer.nat.server is not None
                assert peer.nat.server.served[Status.E_DIAL_REFUSED] == 1  # the page's probe reached the peer
                await expect(facts.locator("dd[data-reachability]")).to_have_text("unknown")  # a refusal is no answer
                await expect(page.locator("#nat-served")).to_contain_text("no request yet")  # the daemon served none
                ARTIFACTS.mkdir(exist_ok=True)
                await page.locator("#nat").screenshot(path=ARTIFACTS / "web-ui-nat.png")
                assert errors == []
        finally:
            exit_code = await asyncio.to_thread(daemon.stop)
    assert exit_code == 0, daemon.log.read_text()
