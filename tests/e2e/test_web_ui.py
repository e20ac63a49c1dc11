"""The web UI end to end: a real `peerloom daemon`, a seeder on loopback, and Chromium pasting a magnet link into
the page and watching that torrent's row reach 100 %; and the topics view subscribing, showing a peer's message live
and publishing to that peer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.browser import NO_PLAYWRIGHT, chromium_page
from support.daemon import DaemonProcess
from support.swarm import make_single, node

from peerloom.torrent.create import create
from peerloom.torrent.magnet import Magnet

expect = pytest.importorskip("playwright.async_api", reason=NO_PLAYWRIGHT).expect

SIZE = 8 * 1024 * 1024
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


async def test_magnet_pasted_in_the_web_ui_downloads(tmp_path: Path) -> None:
    data = make_single(tmp_path / "src", size=SIZE)
    meta = await asyncio.to_thread(create, data, version="hybrid")
    save_dir = tmp_path / "dl"
    async with node(tmp_path, "seed") as seeder:
        await seeder.add(meta, data.parent, trusted_complete=True)
        magnet = str(Magnet.from_metainfo(meta, peers=(("127.0.0.1", seeder.port),)))
        daemon = DaemonProcess(tmp_path / "daemon", save_dir)
        try:
            await daemon.start()
            async with chromium_page(tmp_path / "chromium") as (page, errors):
                await page.goto(f"{daemon.api}/#token={daemon.token}")
                await expect(page.locator("#connection")).to_have_text("live")  # the event WebSocket is open
                assert await page.evaluate("location.hash") == ""  # the token left the address bar

                await page.fill("#magnet-input", magnet)
                await page.click("#add-magnet")
                row = page.locator(f'#transfers tr[data-id="{meta.info_hash_v1.hex()}"]')
                bar = row.locator(".progress")
                await expect(bar).to_have_attribute("data-progress", "100.0", timeout=40_000)
                await expect(bar).to_contain_text("100.0 %")
                await expect(row.locator(".state")).to_have_text("seeding")
                await expect(page.locator("#error")).to_be_hidden()
                assert (save_dir / data.name).read_bytes() == data.read_bytes()

                await row.locator(".name").click()
                await expect(page.locator("#files tbody tr")).to_have_count(1)
                await expect(page.locator("#pieces")).to_have_attribute(
                    "aria-label", f"pieces map: {meta.num_pieces} of {meta.num_pieces} pieces verified")
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=ARTIFACTS / "web-ui.png", full_page=True)
                assert errors == []
        finally:
            exit_code = await asyncio.to_thread(daemon.stop)
    assert exit_code == 0, daemon.log.read_text()


async def test_topics_view_subscribes_shows_messages_live_and_publishes(tmp_path: Path) -> None:
    topic = "e2e/news"
    daemon = DaemonProcess(tmp_path / "daemon", tmp_path / "dl")
    try:
        await daemon.start()
        async with chromium_page(tmp_path / "chromium") as (page, errors), node(tmp_path, "peer") as peer:
            assert peer.pubsub is not None
            await page.goto(f"{daemon.api}/#token={daemon.token}")
            await expect(page.locator("#connection")).to_have_text("live")
            await page.fill("#subscribe-topic", topic)
            await page.click("#subscribe-form button")
            row = page.locator(f'#topics-table tr[data-topic="{topic}"]')
            await expect(row).to_have_count(1)
            async with peer.pubsub.subscribe(topic) as sub:
                await peer.secure_host.connect(daemon.runtime["secure_addrs"][0])
                await expect(row.locator(".peers")).to_have_text("1", timeout=10_000)
                await expect(page.locator("#topic-peers tbody tr")).to_contain_text(str(peer.identity.peer_id))

                await peer.pubsub.publish(topic, b"<b>not markup</b>")
                await expect(page.locator("#topic-messages li .data").first).to_have_text("<b>not markup</b>")

                await page.fill("#publish-data", "from the browser")
                await page.click("#publish-form button")
                await expect(page.locator("#publish-result")).to_contain_text("sent to 1 peer")
                assert (await asyncio.wait_for(sub.get(), 10)).data == b"from the browser"
            await expect(page.locator("#error")).to_be_hidden()
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=ARTIFACTS / "web-ui-topics.png", full_page=True)
            assert errors == []
    finally:
        exit_code = await asyncio.to_thread(daemon.stop)
    assert exit_code == 0, daemon.log.read_text()
