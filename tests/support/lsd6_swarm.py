"""Run by tests/integration/test_ipv6_lsd.py inside a network namespace of its own (`ip netns exec NS python
tests/support/lsd6_swarm.py ROOT`): two peerloom nodes listening on `::`, with local service discovery as their only
way to find each other (no DHT, trackers or peer hints), share one file through a magnet link. Prints one JSON line:
    {"done": bool, "groups": {node: [group, ...]}, "received6": n, "peers": [ip, ...], "same": bool}
`groups` are the LSD groups each node joined, `received6` the announces the leecher heard in the IPv6 group, `peers`
the IPs of the leecher's peers once done, `same` whether the download is byte-identical.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

from peerloom.discovery.lsd import LSD_GROUP6
from peerloom.node import Node, Settings
from peerloom.torrent.magnet import Magnet

SETTINGS = dict(lsd=True, lsd_interval=0.5, dht=False, mdns=False, public_bootstrap=False, tick=0.1,
                connect_timeout=3.0, snub_timeout=1.5)


async def main(root: Path) -> dict[str, object]:
    data = root / "src" / "data.bin"
    data.parent.mkdir(parents=True)
    data.write_bytes(random.Random(6).randbytes(300_000))
    async with (
        Node(root / "home-seed", host="::", settings=Settings(**SETTINGS)) as seeder,  # type: ignore[arg-type]
        Node(root / "home-leech", host="::", settings=Settings(**SETTINGS)) as leecher,  # type: ignore[arg-type]
    ):
        groups = {name: [s.group for s in n.lsd.services] if n.lsd else [] for name, n in
                  (("seed", seeder), ("leech", leecher))}
        shared = await seeder.share(data, version="v1", piece_length=32768)
        assert shared.meta is not None
        torrent = await leecher.add(str(Magnet(shared.meta.info_hash_v1)), root / "dst")
        try:
            await asyncio.wait_for(torrent.wait_done(), 15)
            done = True
        except TimeoutError:
            done = False
        assert leecher.lsd is not None
        received6 = sum(s.state.received for s in leecher.lsd.services if s.group == LSD_GROUP6)
        peers = [p.remote[0] for p in torrent.peers if p.remote]
    got = root / "dst" / "data.bin"
    same = got.exists() and got.read_bytes() == data.read_bytes()
    return {"done": done, "groups": groups, "received6": received6, "peers": peers, "same": same}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))), flush=True)
