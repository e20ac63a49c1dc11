"""Peers that vanish or stop reading never break a document's broadcasts to the others (the failure pycrdt-websocket
had): a peer process SIGKILLed mid-session, and a peer that never reads until its send queue passes its bound."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest
from support.docs import link, make_node, until

from peerloom.apps.docs.service import PROTOCOL
from peerloom.identity import Identity
from peerloom.net.host import Host

pytestmark = pytest.mark.timeout(60)

# a bare peer in another process: it opens the document's stream, says so, then reads nothing until it is killed
VANISHING_PEER = textwrap.dedent("""
    import asyncio, sys
    from peerloom.identity import Identity
    from peerloom.net.host import Host

    async def main():
        async with Host(Identity.generate()) as host:
            stream = await host.new_stream(sys.argv[1], [sys.argv[2]])
            await stream.write(bytes.fromhex(sys.argv[3]))
            print("ready", flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
""")


async def test_a_killed_peer_and_a_peer_that_never_reads_do_not_stop_the_others(tmp_path: Path) -> None:
    a = make_node(tmp_path, "a")
    a.docs.send_queue_bytes = 64 * 1024  # a small bound, so the silent peer passes it soon
    async with a, make_node(tmp_path, "b") as b:
        doc_a = await a.docs.create()
        doc_b = await b.docs.open(doc_a.link)
        await link(b, a)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", VANISHING_PEER, str(a.secure_addrs[0]), PROTOCOL, doc_a.id,
            stdout=asyncio.subprocess.PIPE, env={**os.environ})
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"ready"
        silent = Host(Identity.generate())
        async with silent:
            stream = await silent.new_stream(a.secure_addrs[0], [PROTOCOL])
            await stream.write(bytes.fromhex(doc_a.id))  # ...and never reads a byte
            await until(lambda: a.docs.list()[0].peers == 3, what="three peers on the document")
            doc_a.text().insert(0, "before ")
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            for i in range(200):  # ~1 KiB each: the silent peer's queue passes 64 KiB
                doc_a.text().insert(len(doc_a.text()), f"edit {i:03d} " + "x" * 1000)
                if i % 20 == 0:
                    await asyncio.sleep(0)
            await until(lambda: str(doc_b.text()) == str(doc_a.text()), timeout=30, what="b has every edit")
            await until(lambda: a.docs.list()[0].peers == 1, timeout=30, what="the dead and the silent peer dropped")
            assert a.docs.counters["slow_peers_dropped"] >= 1
            doc_a.text().insert(0, "after ")
            await until(lambda: str(doc_b.text()).startswith("after before "), what="b still gets edits")
