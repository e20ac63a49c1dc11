"""`peerloom doc` as processes: edits acknowledged by a daemon (through the CLI and the API) survive SIGKILL, and a
one-shot command fetches a document from a peer given by `--peer`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import peerloom
from support.daemon import DaemonProcess
from support.docs import make_node

pytestmark = pytest.mark.timeout(120)


async def test_edits_acknowledged_through_the_cli_and_the_api_survive_sigkill_of_the_daemon(tmp_path: Path) -> None:
    home = tmp_path / "home"
    daemon = await DaemonProcess(home, tmp_path / "downloads").start()
    try:
        code, out, err = await peerloom("doc", "new", "--title", "crash", "--text", "first ✓", "--json",
                                        "--home", str(home))
        assert code == 0, err
        doc_id = json.loads(out)["id"]
        code, _, err = await peerloom("doc", "edit", doc_id[:12], "--append", " | cli 😀", "--home", str(home))
        assert code == 0, err
        acknowledged = []
        for i in range(40):  # API edits, the last one answered just before the kill
            await daemon.ok("POST", f"/api/v1/docs/{doc_id}/edits", {"insert": f" [{i}]", "index": 0})
            acknowledged.append(f" [{i}]")
        daemon.kill()
        daemon = await DaemonProcess(home, tmp_path / "downloads").start()
        text = (await daemon.ok("GET", f"/api/v1/docs/{doc_id}"))["text"]
        assert text.endswith("first ✓ | cli 😀")
        assert all(mark in text for mark in acknowledged)
        code, out, _ = await peerloom("doc", "cat", doc_id, "--home", str(home))
        assert code == 0 and out == text
    finally:
        daemon.stop()


async def test_a_one_shot_command_fetches_a_document_from_a_peer(tmp_path: Path) -> None:
    async with make_node(tmp_path, "a") as a:
        doc = await a.docs.create("shared")
        doc.text().insert(0, "from a peer: 日本語")
        addr = str(a.secure_addrs[0])
        home = str(tmp_path / "b")
        code, out, err = await peerloom("doc", "cat", doc.read_link, "--peer", addr, "--no-daemon", "--home", home)
        assert code == 0, err
        assert out == "from a peer: 日本語"
        code, out, err = await peerloom("doc", "ls", "--json", "--no-daemon", "--home", home)
        assert code == 0 and [(d["id"], d["writable"]) for d in json.loads(out)["docs"]] == [(doc.id, False)]
        code, _, err = await peerloom("doc", "edit", doc.id, "--append", "x", "--no-daemon", "--home", home)
        assert code == 1 and err.count("\n") == 1 and "writer key" in err
