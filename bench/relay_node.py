"""One endpoint of bench/relay_bench.py, run as its own process (the relay, the target and the client each get one).

    python bench/relay_node.py relay
    python bench/relay_node.py target RELAY_MULTIADDR
    python bench/relay_node.py client MULTIADDR SIZE [--chunk BYTES]

`relay` serves Circuit Relay v2 with no circuit limits (a bench moves gigabytes) and prints {"addr"}; `target`
listens, reserves on the relay, serves the sink protocol on limited connections too and prints {"addr", "circuit"};
both serve until stdin closes. `client` connects (directly, or through `/p2p-circuit`), writes SIZE bytes on one sink
stream and prints {"bytes", "counted", "seconds", "relayed", cpu...}. The sink and its clock are stream_node.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from stream_node import (
    SINK_PROTOCOL,
    cpu_mark,
    cpu_since,
    emit,
    install_loop,
    parse_size,
    send_sink,
    sink,
    until_stopped,
)

from peerloom.identity import Identity
from peerloom.net.host import Host
from peerloom.net.relay.client import RelayClient
from peerloom.net.relay.reservations import RelayLimits
from peerloom.net.relay.server import RelayServer

BENCH_LIMITS = RelayLimits(circuit_duration=0, circuit_data=0)  # no cut: the bench measures, it does not abuse


async def relay() -> None:
    async with Host(Identity.generate()) as host:
        server = RelayServer(host, BENCH_LIMITS)
        server.start()
        emit({"addr": str(await host.listen("/ip4/127.0.0.1/tcp/0"))})
        await until_stopped()
        await server.close()
    emit({"event": "exit", "relayed_bytes": server.relayed_bytes, **cpu_since((0.0, 0.0, 0))})


async def target(relay_addr: str) -> None:
    async with Host(Identity.generate()) as host:
        host.set_handler(SINK_PROTOCOL, sink, limited=True)
        addr = await host.listen("/ip4/127.0.0.1/tcp/0")
        client = RelayClient(host)
        client.start()
        held = await client.reserve(relay_addr)
        emit({"addr": str(addr), "circuit": str(held.circuit_addr.encapsulate(f"/p2p/{host.peer_id}"))})
        await until_stopped()
        await client.close()
    emit({"event": "exit", **cpu_since((0.0, 0.0, 0))})


async def client(addr: str, size: int, chunk: int) -> None:
    block = os.urandom(chunk)
    async with Host(Identity.generate()) as host:
        conn = await host.connect(addr)
        assert conn.remote_peer is not None
        stream = await host.new_stream(conn.remote_peer, [SINK_PROTOCOL], limited=True)  # negotiated, untimed
        cpu0 = cpu_mark()
        start = time.perf_counter()
        counted = await send_sink(stream, size, block)
        seconds = time.perf_counter() - start
        cpu = cpu_since(cpu0)
    emit({"bytes": size, "counted": counted, "seconds": seconds, "relayed": conn.limited, **cpu})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("relay")
    sub.add_parser("target").add_argument("relay_addr")
    p = sub.add_parser("client")
    p.add_argument("addr")
    p.add_argument("size", type=parse_size)
    p.add_argument("--chunk", type=parse_size, default=1 << 20)
    args = parser.parse_args()
    install_loop()
    if args.command == "relay":
        asyncio.run(relay())
    elif args.command == "target":
        asyncio.run(target(args.relay_addr))
    else:
        asyncio.run(client(args.addr, args.size, args.chunk))


if __name__ == "__main__":
    main()
