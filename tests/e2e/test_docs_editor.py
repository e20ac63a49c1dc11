"""The documents editor end to end: two `peerloom daemon`s connected as peers, a Chromium page on each. One page
creates a document in the web UI, the other opens it by the share link; both type into it at the same time and end
up showing the same text, each with the other's cursor and name. Then one daemon is SIGKILLed while its page is
typing and started again: every edit its page had seen acknowledged is in its store, and after the restart both
pages converge again with everything acknowledged on either side. Last, a document opened by its read link shows
read only, follows the writer's edits live and takes no typing."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from support.browser import NO_PLAYWRIGHT, chromium_page
from support.daemon import DaemonProcess
from support.docs import make_node

expect = pytest.importorskip("playwright.async_api", reason=NO_PLAYWRIGHT).expect
pytestmark = pytest.mark.timeout(180)

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
SEPARATOR = "|"  # ann types before it, bob after it: their runs never compete for the same position
# the page's editor text without the remote carets' widgets (they hold the other editor's name)
TEXT_JS = """() => {
  const content = document.querySelector('#doc-editor .cm-content').cloneNode(true);
  content.querySelectorAll('.cm-ySelectionCaret').forEach((caret) => caret.remove());
  return [...content.querySelectorAll('.cm-line')].map((l) => l.textContent).join('\\n').replaceAll('\\u2060', '');
}"""
SAVED_JS = f"""() => [document.getElementById('doc-state').dataset.state, ({TEXT_JS})()]"""


async def text_of(page) -> str:  # type: ignore[no-untyped-def]
    return await page.evaluate(TEXT_JS)


async def open_ui(page, daemon: DaemonProcess, name: str) -> None:  # type: ignore[no-untyped-def]
    await page.goto(f"{daemon.api}/#token={daemon.token}")
    await expect(page.locator("#connection")).to_have_text("live")
    await page.fill("#doc-user", name)
    await page.locator("#doc-user").dispatch_event("change")


async def type_at(page, key: str, words: list[str], delay: float = 15) -> None:  # type: ignore[no-untyped-def]
    """Click into the editor, go to the start (Control+Home) or the end (Control+End), type the words."""
    await page.locator("#doc-editor .cm-content").click()
    await page.keyboard.press(key)
    for word in words:
        await page.keyboard.type(word + " ", delay=delay)


async def saved(page) -> str:  # type: ignore[no-untyped-def]
    """Wait until every edit of the page is acknowledged; the text then."""
    await expect(page.locator("#doc-state")).to_have_attribute("data-state", "saved", timeout=15_000)
    return await text_of(page)


async def same_text(first, second, *parts: str, timeout: float = 30) -> str:  # type: ignore[no-untyped-def]
    """Wait until both pages show the same text, holding every one of `parts`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        a, b = await text_of(first), await text_of(second)
        if a == b and all(part in a for part in parts):
            return a
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the pages differ or miss some of {parts}:\n{a!r}\n{b!r}")
        await asyncio.sleep(0.1)


async def connect(dialer: DaemonProcess, doc_id: str, target: DaemonProcess) -> None:
    await dialer.ok("POST", f"/api/v1/docs/{doc_id}/peers", {"peers": [target.runtime["secure_addrs"][0]]})


def links(page, doc_id: str):  # type: ignore[no-untyped-def]
    """The share links in the document's row: the first with every key, the second (for a writer) to read."""
    return page.locator(f'#docs-table tr[data-doc="{doc_id}"] .links input')


async def stored_text(home: Path, doc_id: str) -> str:
    """The document's text in a stopped daemon's home, read by a node of its own (no peers)."""
    async with make_node(home.parent, home.name) as node:
        handle = node.docs.get(doc_id)
        assert handle is not None
        return str(handle.text())


async def test_two_pages_edit_together_and_a_killed_daemon_loses_no_acknowledged_edit(tmp_path: Path) -> None:
    ann_daemon = DaemonProcess(tmp_path / "ann", tmp_path / "ann-dl", "--no-mdns")
    bob_daemon = DaemonProcess(tmp_path / "bob", tmp_path / "bob-dl", "--no-mdns")
    stack = contextlib.AsyncExitStack()
    try:
        await asyncio.gather(ann_daemon.start(), bob_daemon.start())
        (ann, ann_errors), (bob, bob_errors) = await asyncio.gather(  # each browser takes seconds to start
            stack.enter_async_context(chromium_page(tmp_path / "chromium-ann")),
            stack.enter_async_context(chromium_page(tmp_path / "chromium-bob")))
        await asyncio.gather(open_ui(ann, ann_daemon, "ann"), open_ui(bob, bob_daemon, "bob"))

        await ann.fill("#doc-title", "meeting notes")
        await ann.click("#doc-create-form button")
        await expect(ann.locator("#doc-name")).to_have_text("meeting notes")
        await saved(ann)
        await type_at(ann, "Control+End", [SEPARATOR])
        doc_id = await ann.evaluate("document.querySelector('#docs-table tr.selected').dataset.doc")
        await connect(ann_daemon, doc_id, bob_daemon)
        link = await links(ann, doc_id).first.input_value()
        assert link.startswith("peerloom://doc/") and "&write=" in link
        await bob.fill("#doc-link", link)
        await bob.click("#doc-open-form button")
        await expect(bob.locator("#doc-access")).to_have_text("read & write")
        await expect(bob.locator("#doc-editor .cm-content")).to_contain_text(SEPARATOR, timeout=15_000)

        ann_words = [f"ann{i:02}" for i in range(5)]
        bob_words = [f"bob{i:02}" for i in range(5)]
        await asyncio.gather(type_at(ann, "Control+Home", ann_words), type_at(bob, "Control+End", bob_words))
        await asyncio.gather(saved(ann), saved(bob))
        text = await same_text(ann, bob, *ann_words, *bob_words)
        assert text.index(ann_words[-1]) < text.index(SEPARATOR) < text.index(bob_words[0])
        # each page shows the other's cursor with the other's name
        await expect(ann.locator("#doc-editor .cm-ySelectionInfo")).to_have_text("bob")
        await expect(bob.locator("#doc-editor .cm-ySelectionInfo")).to_have_text("ann")
        ARTIFACTS.mkdir(exist_ok=True)
        await ann.screenshot(path=ARTIFACTS / "docs-editor.png", full_page=True)

        # ann keeps typing; her daemon dies mid-session, once some of the new words are acknowledged
        more = [f"more{i:02}" for i in range(30)]
        typing = asyncio.create_task(type_at(ann, "Control+Home", more, delay=25))
        acknowledged = ""
        async with asyncio.timeout(30):
            while more[2] not in acknowledged:
                state, current = await ann.evaluate(SAVED_JS)
                if state == "saved":
                    acknowledged = current.split(SEPARATOR)[0]  # all of ann's text at this moment is stored
                await asyncio.sleep(0.02)
        ann_daemon.kill()
        assert not typing.done()  # mid-session: the page was still typing
        await expect(ann.locator("#doc-state")).to_have_attribute("data-state", "offline")
        typing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await typing
        # her typing inserts at one place before her earlier words: what is stored extends what was acknowledged
        stored = (await stored_text(ann_daemon.home, doc_id)).split(SEPARATOR)[0]
        earlier = " ".join(ann_words) + " "
        assert acknowledged.endswith(earlier) and stored.endswith(earlier), (stored, acknowledged)
        assert stored[:-len(earlier)].startswith(acknowledged[:-len(earlier)]), (stored, acknowledged)

        await ann_daemon.start()  # a new API port and a new listening port
        await connect(ann_daemon, doc_id, bob_daemon)
        await open_ui(ann, ann_daemon, "ann")
        await ann.locator(f'#docs-table tr[data-doc="{doc_id}"] .name').click()
        await asyncio.gather(type_at(ann, "Control+Home", ["back"]), type_at(bob, "Control+End", ["again"]))
        await asyncio.gather(saved(ann), saved(bob))
        await same_text(ann, bob, "back", "again", acknowledged[:-len(earlier)], earlier, *bob_words)
        # ann's new page sees bob's cursor once it moves (bob's page may show ann's old one for awareness' 30 s)
        await bob.keyboard.press("ArrowLeft")
        await expect(ann.locator("#doc-editor .cm-ySelectionInfo")).to_have_text("bob")

        # a read-only view: bob opens ann's next document by its read link, sees her text live and cannot type
        await ann.fill("#doc-title", "announcements")
        await ann.click("#doc-create-form button")
        await expect(ann.locator("#doc-name")).to_have_text("announcements")
        await saved(ann)
        news = await ann.evaluate("document.querySelector('#docs-table tr.selected').dataset.doc")
        await bob.fill("#doc-link", await links(ann, news).nth(1).input_value())
        await bob.click("#doc-open-form button")
        await expect(bob.locator("#error")).to_be_hidden()
        await expect(bob.locator("#doc-access")).to_have_text("read only")
        await expect(bob.locator(f'#docs-table tr[data-doc="{news}"] .rights')).to_have_text("read")
        content = bob.locator("#doc-editor .cm-content")
        await expect(content).to_have_attribute("contenteditable", "false")
        await type_at(ann, "Control+End", ["hear", "ye"])
        await expect(content).to_contain_text("hear ye", timeout=15_000)
        await content.click()
        await bob.keyboard.type("nope")
        await saved(ann)
        assert "nope" not in await text_of(bob) and "nope" not in await text_of(ann)
        assert ann_errors == [] and bob_errors == []
    finally:
        await stack.aclose()
        codes = await asyncio.gather(asyncio.to_thread(ann_daemon.stop), asyncio.to_thread(bob_daemon.stop))
    assert codes == [0, 0], (ann_daemon.log.read_text()[-3000:], bob_daemon.log.read_text()[-3000:])
