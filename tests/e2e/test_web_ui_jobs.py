"""The web UI's jobs view end to end: a real `peerloom daemon` holding a signal-search job that no volunteer has
taken yet, and Chromium. The view lists the job as running with its units and quorum; its Cancel button cancels
it through the API, after which the row says cancelled and offers no button, and the daemon agrees."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from support.browser import NO_PLAYWRIGHT, chromium_page
from support.compute_modules import SIGNAL_SEARCH, noisy_tone
from support.daemon import DaemonProcess

expect = pytest.importorskip("playwright.async_api", reason=NO_PLAYWRIGHT).expect

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


async def test_a_running_job_is_listed_and_cancelled_from_the_page(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path / "daemon", tmp_path / "dl")
    try:
        await daemon.start()
        inputs = [{"name": f"c{i}", "data_b64": base64.b64encode(noisy_tone(256, 30 + i, seed=i)).decode()}
                  for i in range(3)]
        job = await daemon.ok("POST", "/api/v1/compute/jobs", {
            "module_b64": base64.b64encode(SIGNAL_SEARCH.read_bytes()).decode(), "quorum": 2, "inputs": inputs})
        assert not job["finished"]  # no volunteer anywhere: it waits
        async with chromium_page(tmp_path / "chromium") as (page, errors):
            await page.goto(f"{daemon.api}/#token={daemon.token}")
            row = page.locator(f'#jobs-table tr[data-job="{job["id"]}"]')
            await expect(row).to_have_count(1)
            await expect(row.locator("td.state")).to_contain_text("running")
            await expect(row.locator("td").nth(1)).to_contain_text("0/3")
            await expect(row.locator("td").nth(6)).to_have_text("2")  # the quorum
            await row.locator("button.cancel").click()
            await expect(row.locator("td.state")).to_have_text("cancelled")
            await expect(row.locator("button.cancel")).to_have_count(0)
            answer = await daemon.ok("GET", f"/api/v1/compute/jobs/{job['id']}")
            assert answer["cancelled"] and answer["finished"] and answer["validated"] == 0
            ARTIFACTS.mkdir(exist_ok=True)
            await page.locator("#jobs").screenshot(path=ARTIFACTS / "web-ui-jobs.png")
            assert errors == []
    finally:
        exit_code = await asyncio.to_thread(daemon.stop)
    assert exit_code == 0, daemon.log.read_text()
