"""`peerloom daemon --relay-server / --relay MULTIADDR / --no-hole-punch` and `peerloom connections`, as processes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from support.cli import peerloom
from support.daemon import DaemonProcess


async def test_daemons_relay_and_reserve_and_connections_shows_it(tmp_path: Path) -> None:
    relay = await DaemonProcess(tmp_path / "relay", tmp_path / "dl-relay", "--relay-server").start()
    b = None
    try:
        relay_addr = (await relay.ok("GET", "/api/v1/node"))["listen_addrs"][0]
        b = await DaemonProcess(tmp_path / "b", tmp_path / "dl-b", "--relay", relay_addr, "--no-hole-punch").start()
        async with asyncio.timeout(30):  # the reservation is made in the background
            while not any("/p2p-circuit" in a for a in (await b.ok("GET", "/api/v1/node"))["listen_addrs"]):
                await asyncio.sleep(0.1)
        code, out, err = await peerloom("connections", "--json", "--home", str(tmp_path / "b"))
        assert code == 0, err
        (only,) = json.loads(out)
        assert only["peer_id"] == relay_addr.rsplit("/", 1)[1] and only["kind"] == "direct"
        assert only["direction"] == "outbound"
        code, out, _ = await peerloom("connections", "--home", str(tmp_path / "b"))
        assert code == 0 and "direct" in out
    finally:
        if b is not None:
            b.stop()
        relay.stop()


async def test_a_bad_relay_address_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, _, err = await peerloom("daemon", "--home", str(tmp_path / "h"), "--relay", "/ip4/1.2.3.4/tcp/nope")
    assert code == 2 and "--relay" in err and len(err.strip().splitlines()) == 1
