"""A peerloom node with only mDNS to find peers (no DHT, no LSD, no trackers), for tests/integration/test_mdns_netns.py,
which runs one in each network namespace with `ip netns exec NS python tests/support/mdns_node.py ...`.

It prints JSON lines on stdout:
    {"event": "ready", "peer_id": ..., "advertised": [...]}        once the node runs
    {"event": "connected", "peer": ..., "discovered": [...]}       each secure connection, with mDNS's peers so far
    {"event": "stopped", "threads": [...]}                         after the node stopped and the loop closed
and stops when its stdin closes (or at SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import threading

from peerloom.net.host import PeerConnected, PeerEvent
from peerloom.node import Node, Settings


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def run(home: str, listen: str) -> None:
    settings = Settings(dht=False, lsd=False, trackers=False, mdns=True)
    async with Node(home, host=listen, settings=settings) as node:
        mdns = node.mdns
        assert mdns is not None, "mDNS did not start"

        def on_event(event: PeerEvent) -> None:
            if isinstance(event, PeerConnected):
                emit(event="connected", peer=str(event.peer), discovered=[str(p) for p in mdns.discovered])

        node.secure_host.subscribe(on_event)
        emit(event="ready", peer_id=str(node.secure_host.peer_id), advertised=[str(a) for a in mdns.advertised])
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, done.set)
        loop.add_reader(sys.stdin.fileno(), lambda: done.set() if not sys.stdin.buffer.read1(4096) else None)
        await done.wait()
        loop.remove_reader(sys.stdin.fileno())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", required=True)
    parser.add_argument("--listen", default="0.0.0.0")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(run(args.home, args.listen))
    emit(event="stopped", threads=[t.name for t in threading.enumerate()])


if __name__ == "__main__":
    main()
