"""Debian's headless Chromium driven by Playwright, for tests of the web UI.

Tests using it skip with the reason when /usr/bin/chromium or the `playwright` package is missing (.ci/run installs
both). Playwright never downloads a browser here: it drives the system one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Page

CHROMIUM = Path("/usr/bin/chromium")
NO_PLAYWRIGHT = "needs the playwright package (pip install -e '.[dev]')"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@asynccontextmanager
async def chromium_page(profile: Path, width: int = 1280, height: int = 900) -> AsyncIterator[tuple[Page, list[str]]]:
    """A fresh page in a new browser with its own profile folder; yields (page, errors), where errors collects the
    page's uncaught exceptions as they happen."""
    if not CHROMIUM.exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip(NO_PLAYWRIGHT)
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=ARGS,
            viewport={"width": width, "height": height},
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page, errors
        finally:
            await context.close()
