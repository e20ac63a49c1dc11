"""A BitTorrent node for the NAT lab: runs inside a namespace, prints its state as one JSON object a line.

    python tests/support/bt_lab_agent.py --home H --port P --torrent T --save DIR [--peer HOST:PORT] [--rate BYTES]
                                         [--utp-first] [--dht]

It listens on 0.0.0.0:PORT (TCP, and uTP on its own UDP socket: no LSD or trackers in the lab; with `--dht`, a DHT
node with no bootstrap nodes on UDP PORT, whose socket uTP shares as it does by default), adds the torrent
(a seed when DIR already holds the data), dials the `--peer`s, and every 0.3 s prints progress, its peers (address,
over uTP or TCP, and a uTP connection's path MTU search as [floor, ceiling]) and its BEP 55 counters whenever they
changed (the newest also in HOME/agent-state.json), until it is stopped (SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from peerloom.node import Node, Settings


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--torrent", required=True)
    parser.add_argument("--save", required=True)
    parser.add_argument("--peer", action="append", default=[])
    parser.add_argument("--rate", type=int, default=0, help="download rate limit of the torrent, bytes/s")
    parser.add_argument("--utp-first", action="store_true", help="dial every peer over uTP first")
    parser.add_argument("--dht", action="store_true", help="run the DHT, uTP on its socket")
    args = parser.parse_args()
    settings = Settings(dht=args.dht, lsd=False, trackers=False, public_bootstrap=False, pubsub=False, mdns=False,
                        peer_records=False, tick=0.1, connect_timeout=2.0, snub_timeout=2.0, pex_interval=1.0,
                        download_rate_limit=args.rate, utp_first=args.utp_first)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Node(Path(args.home), host="0.0.0.0", port=args.port, settings=settings) as node:
        torrent = await node.add(args.torrent, save=args.save)
        torrent.add_peers([_address(p) for p in args.peer])
        last = ""
        state_file = Path(args.home) / "agent-state.json"
        while not stop.is_set():
            punch = torrent.exchange.holepunch
            line = json.dumps({
                "port": node.port,
                "done": torrent.status().progress >= 1.0,
                "peers": [{"address": list(p.address or p.remote or ()), "utp": bool(p.transport.get_extra_info("utp")),
                           "mtu": p.transport.get_extra_info("utp_mtu")} for p in torrent.peers],
                "punches": punch.punches, "rendezvous_sent": punch.rendezvous_sent, "relayed": punch.relayed,
                "errors": punch.errors_received,
            })
            if line != last:  # only changes: a reader that looks late must not find the pipe full
                print(line, flush=True)
                state_file.with_suffix(".tmp").write_text(line)
                state_file.with_suffix(".tmp").replace(state_file)  # the newest state, for a reader that looks late
                last = line
            try:
                await asyncio.wait_for(stop.wait(), 0.3)
            except TimeoutError:
                pass


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
