"""`peerloom dht ping|peers|stats` against DHT nodes on loopback, and their one-line errors."""

from __future__ import annotations

import asyncio
import json
import os
import re

from support.cli import peerloom

from peerloom.dht.driver import Dht

HOST = "127.0.0.1"


async def test_dht_ping_peers_and_stats_from_the_command_line() -> None:
    other, hub = Dht(), Dht()
    await other.start(0, HOST)
    await hub.start(0, HOST, bootstrap=[(HOST, other.port)], wait=True)  # the hub has heard `other` answer
    try:
        info_hash = os.urandom(20)
        await other.announce(info_hash, 51413)
        boot = ["--bootstrap", f"{HOST}:{hub.port}", "--listen", HOST]
        ping, peers, stats = await asyncio.gather(
            peerloom("dht", "ping", f"{HOST}:{hub.port}", "--listen", HOST),
            peerloom("dht", "peers", info_hash.hex(), *boot),
            peerloom("dht", "stats", *boot, "--json"),
        )
        code, out, err = ping
        assert code == 0, err
        assert f"node id {hub.node_id.hex()}" in out  # type: ignore[union-attr]

        code, out, err = peers
        assert code == 0, err
        assert out.split() == [f"{HOST}:51413"] and "1 peers" in err

        code, out, err = stats
        assert code == 0, err
        figures = json.loads(out)
        # hub and other at least; the concurrent CLI nodes that queried the hub may have been passed on too
        assert figures["ipv4"]["table_size"] >= 2 and figures["ipv4"]["responses_in"] >= 2

        code, out, err = await peerloom("dht", "stats", *boot)
        assert code == 0 and "this process's own" in err
        shown = re.search(r"(\d+) nodes in (\d+) buckets", out)
        assert shown and int(shown[1]) >= 2 and int(shown[2]) >= 1, out
    finally:
        await hub.close()
        await other.close()


async def test_dht_commands_give_one_line_errors() -> None:
    results = await asyncio.gather(
        peerloom("dht", "peers", "not-a-hash", "--no-public-bootstrap"),
        peerloom("dht", "peers", "00" * 20, "--no-public-bootstrap", "--listen", HOST),
        peerloom("dht", "ping", "127.0.0.1:nope"),
        peerloom("dht", "ping", f"{HOST}:9", "--timeout", "0.5", "--listen", HOST),
    )
    expected = [(1, "not an info-hash"), (1, "no DHT node answered"), (2, "HOST:PORT"),  # 2: a usage error
                (1, "no answer from 127.0.0.1:9 within 0.5 s")]
    for (code, _, err), (expected_code, words) in zip(results, expected, strict=True):
        assert code == expected_code and err.startswith("error: ") and words in err and err.count("\n") == 1, err
