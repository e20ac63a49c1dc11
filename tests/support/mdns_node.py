"""Processes for tests/integration/test_mdns_netns.py, which runs each in its own network namespace with
`ip netns exec NS python tests/support/mdns_node.py ...`.

`--home H [--listen A]`: a peerloom node with only mDNS to find peers (no DHT, no LSD, no trackers). It prints JSON
lines on stdout:
    {"event": "ready", "peer_id": ..., "advertised": [...]}           once the node runs
    {"event": "connected", "peer": ..., "discovered": [...]}          each secure connection, with mDNS's peers so far
    {"event": "status", "discovered": {peer: [addr, ...]}, "received": n, "own": n, "malformed": n}
                                                                      for each `status` line read on stdin
    {"event": "stopped", "threads": [...]}                            after the node stopped and the loop closed

`--fake NAME=HEX ... --listen A`: no node, only zeroconf (on the interface of A) registering each instance
NAME._p2p._udp.local. with the raw TXT rdata HEX (a hostile or odd peer); prints {"event": "ready"} once they are
announced.

Both stop when their stdin closes (or at SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable

from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from peerloom.discovery.mdns import MdnsService
from peerloom.discovery.mdns_records import SERVICE_TYPE
from peerloom.net.host import PeerConnected, PeerEvent
from peerloom.node import Node, Settings


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def until_stdin_closes(on_line: Callable[[str], None]) -> None:
    """Call `on_line` with each line read on stdin; return at its end or at SIGTERM."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    pending = b""

    def readable() -> None:
        nonlocal pending
        chunk = sys.stdin.buffer.read1(4096)
        if not chunk:
            done.set()
            return
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            on_line(line.decode().strip())

    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_reader(sys.stdin.fileno(), readable)
    try:
        await done.wait()
    finally:
        loop.remove_reader(sys.stdin.fileno())


def status(mdns: MdnsService) -> None:
    emit(event="status", discovered={str(p): [str(a) for a in addrs] for p, addrs in mdns.discovered.items()},
         received=mdns.peers.received, own=mdns.peers.own, malformed=mdns.peers.malformed)


async def run_node(home: str, listen: str) -> None:
    settings = Settings(dht=False, lsd=False, trackers=False, mdns=True)
    async with Node(home, host=listen, settings=settings) as node:
        mdns = node.mdns
        assert mdns is not None, "mDNS did not start"

        def on_event(event: PeerEvent) -> None:
            if isinstance(event, PeerConnected):
                emit(event="connected", peer=str(event.peer), discovered=[str(p) for p in mdns.discovered])

        node.secure_host.subscribe(on_event)
        emit(event="ready", peer_id=str(node.secure_host.peer_id), advertised=[str(a) for a in mdns.advertised])
        await until_stdin_closes(lambda line: status(mdns) if line == "status" else None)


async def run_fakes(fakes: list[str], ip: str) -> None:
    zc = AsyncZeroconf(interfaces=[ip])
    try:
        for fake in fakes:
            name, _, hex_txt = fake.partition("=")
            info = AsyncServiceInfo(SERVICE_TYPE, f"{name}.{SERVICE_TYPE}", port=9, properties=bytes.fromhex(hex_txt),
                                    server=f"{name}.p2p.local.", parsed_addresses=[ip])
            await zc.async_register_service(info, cooperating_responders=True)  # no probe: announced at once, in order
        emit(event="ready")
        await until_stdin_closes(lambda line: None)
    finally:
        await zc.async_close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home")
    parser.add_argument("--listen", default="0.0.0.0")
    parser.add_argument("--fake", nargs="*", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(run_fakes(args.fake, args.listen) if args.fake else run_node(args.home, args.listen))
    emit(event="stopped", threads=[t.name for t in threading.enumerate()])


if __name__ == "__main__":
    main()
