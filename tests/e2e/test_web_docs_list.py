"""The web UI's list of documents end to end: a real `peerloom daemon` and Chromium creating a document, opening a
peer's document by its read link, and seeing that peer connected to it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.browser import NO_PLAYWRIGHT, chromium_page
from support.daemon import DaemonProcess
from support.docs import make_node

expect = pytest.importorskip("playwright.async_api", reason=NO_PLAYWRIGHT).expect


async def test_documents_view_creates_opens_by_link_and_lists_rights_and_peers(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path / "daemon", tmp_path / "dl")
    try:
        await daemon.start()
        async with chromium_page(tmp_path / "chromium") as (page, errors), make_node(tmp_path, "peer") as peer:
            await page.goto(f"{daemon.api}/#token={daemon.token}")
            await expect(page.locator("#connection")).to_have_text("live")
            await expect(page.locator("#no-docs")).to_be_visible()
            await page.fill("#doc-title", "<i>meeting notes</i>")
            await page.click("#doc-create-form button")
            mine = page.locator("#docs-table tbody tr").filter(has_text="meeting notes")
            await expect(mine.locator(".name")).to_have_text("<i>meeting notes</i>")  # text, not markup
            await expect(mine.locator(".rights")).to_have_text("write")
            share = await mine.locator(".links input").first.input_value()
            assert share.startswith("peerloom://doc/") and "&write=" in share

            theirs = await peer.docs.create("theirs")
            await page.fill("#doc-link", theirs.read_link)
            await page.click("#doc-open-form button")
            row = page.locator(f'#docs-table tr[data-doc="{theirs.id}"]')
            await expect(row.locator(".rights")).to_have_text("read")
            await peer.secure_host.connect(daemon.runtime["secure_addrs"][0])
            await expect(row.locator(".peers")).to_have_text("1", timeout=10_000)
            await expect(page.locator("#error")).to_be_hidden()
            assert errors == []
    finally:
        exit_code = await asyncio.to_thread(daemon.stop)
    assert exit_code == 0, daemon.log.read_text()
