"""A secure-layer host with AutoNAT and port mapping, driven by JSON lines on stdin, for the NAT lab.

    python tests/support/nat_agent.py --listen 0.0.0.0:4001 [--server] [--dial-timeout 3]

Prints {"ready": ..., "peer": ..., "addr": ...} once listening, then answers each command line with one JSON line:
    {"cmd": "connect", "addr": "/ip4/.../tcp/.../p2p/..."}   -> {"connected": peer}
    {"cmd": "probe"}                                         -> the AutoNAT verdict after asking every server
    {"cmd": "map", "gateway": "10.18.1.1"}                   -> the port mapping status after mapping the listen
                                                                port (NAT-PMP, else UPnP-IGD)
    {"cmd": "unmap"}                                         -> the status after deleting the mappings
    {"cmd": "ping", "addr": ...}                             -> {"rtt": seconds} (a fresh dial to addr)
    {"cmd": "identify", "addr": ...}                         -> {"listen_addrs": [...]} (a fresh dial to addr)
    {"cmd": "reserve", "addr": relay multiaddr}              -> {"circuit": our /p2p-circuit address}
    {"cmd": "connections"}                                   -> {"connections": host.connection_info()}
    {"cmd": "wait_direct", "peer": id, "timeout": s}         -> the connection to peer once direct (or at timeout)
    {"cmd": "blob", "peer": id, "size": n}                   -> {"sent": n, "sha256": ..., "echoed": the peer's hash}

Options: `--relay-server` (Circuit Relay v2 hop, circuits of at most `--circuit-data` bytes each way),
`--hole-punch` (DCUtR on relayed connections). Every agent serves /lab/blob/1.0.0 (also over relayed connections):
it reads a stream to its end and answers the SHA-256 of what came.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import sys
import time
from typing import Any

from peerloom.codec.multiaddr import Multiaddr
from peerloom.identity import Identity, PeerId
from peerloom.net.host import Host
from peerloom.net.nat.autonat import AUTONAT_PROTOCOL, Reachability
from peerloom.net.nat.autonat_driver import AutoNatClient, AutoNatServer
from peerloom.net.nat.dcutr_driver import HolePuncher
from peerloom.net.nat.portmap import PortMapper
from peerloom.net.relay.client import RelayClient
from peerloom.net.relay.reservations import RelayLimits
from peerloom.net.relay.server import RelayServer
from peerloom.net.stream import Stream

BLOB_PROTOCOL = "/lab/blob/1.0.0"


def say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="0.0.0.0:0")
    parser.add_argument("--server", action="store_true")
    parser.add_argument("--dial-timeout", type=float, default=3.0)
    parser.add_argument("--relay-server", action="store_true")
    parser.add_argument("--circuit-data", type=int, default=1 << 17)
    parser.add_argument("--hole-punch", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, force=True)  # to the lab log of this process
    ip, port = args.listen.rsplit(":", 1)
    host = Host(Identity.generate())
    server = AutoNatServer(dial_timeout=args.dial_timeout) if args.server else None
    if server is not None:
        host.set_handler(AUTONAT_PROTOCOL, server.handle)
    host.set_handler(BLOB_PROTOCOL, answer_blob, limited=True)
    relay_server = RelayServer(host, RelayLimits(circuit_data=args.circuit_data)) if args.relay_server else None
    if relay_server is not None:
        relay_server.start()
    relay_client = RelayClient(host)
    relay_client.start()
    puncher = HolePuncher(host) if args.hole_punch else None
    if puncher is not None:
        puncher.start()
    mapper: PortMapper | None = None
    client = AutoNatClient(host, reachability=Reachability(quorum=2), timeout=args.dial_timeout + 10,
                           mapped_ports=lambda: mapper.external_ports() if mapper else [])
    addr = await host.listen(f"/ip4/{ip}/tcp/{port}")
    say({"ready": True, "peer": str(host.peer_id), "addr": str(addr), "port": addr.to_host_port()[1]})
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            command = json.loads(line)
            try:
                box = {"mapper": mapper, "relay": relay_client, "puncher": puncher}
                say(await run(command, host, client, mapper_box := box))
                mapper = mapper_box["mapper"]
            except Exception as exc:  # the test reads the failure
                say({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        if mapper is not None:
            await mapper.close()
        if server is not None:
            await server.close()
        for part in (puncher, relay_client, relay_server):
            if part is not None:
                await part.close()
        await host.close()


async def run(command: dict[str, Any], host: Host, client: AutoNatClient, box: dict[str, Any]) -> dict[str, Any]:
    cmd = command["cmd"]
    if cmd == "connect":
        conn = await host.connect(command["addr"])
        await host.identify(conn.remote_peer)  # type: ignore[arg-type]
        return {"connected": str(conn.remote_peer)}
    if cmd == "probe":
        await client.probe()
        verdict, confidence = client.reachability.verdict(time.monotonic())
        return {"verdict": verdict.value, "confidence": confidence,
                "answers": [{"server": str(a.server), "reachable": a.reachable} for a in
                            client.reachability.answers.values()],
                "observed": [str(a) for a in client.observed_addrs()],
                "confirmed": [str(a) for a in client.reachability.confirmed(time.monotonic())]}
    if cmd == "map":
        mapper = box["mapper"] = PortMapper(command.get("gateway"))
        await mapper.start()
        port = host.listen_addrs[0].to_host_port()[1]
        await mapper.map([("tcp", port)], lifetime=int(command.get("lifetime", 120)))
        return mapper.status()
    if cmd == "unmap":
        mapper = box["mapper"]
        await mapper.close()
        return mapper.status()
    if cmd == "ping":
        dialer = Host(Identity.generate())  # a new connection, not one already open
        try:
            return {"rtt": (await dialer.ping(Multiaddr(command["addr"])))[0]}
        finally:
            await dialer.close()
    if cmd == "identify":  # a fresh dial to addr: what its identify says now
        dialer = Host(Identity.generate())
        try:
            conn = await dialer.connect(Multiaddr(command["addr"]))
            assert conn.remote_peer is not None
            info = await dialer.identify(conn.remote_peer)
            return {"listen_addrs": [str(a) for a in info.listen_addrs]}
        finally:
            await dialer.close()
    if cmd == "reserve":
        held = await box["relay"].reserve(command["addr"])
        return {"circuit": str(held.circuit_addr.encapsulate(f"/p2p/{host.peer_id}"))}
    if cmd == "connections":
        return {"connections": host.connection_info()}
    if cmd == "wait_direct":
        peer = PeerId.from_string(command["peer"])
        deadline = time.monotonic() + float(command.get("timeout", 20))
        while time.monotonic() < deadline:
            conn = host.connections.get(peer)
            if conn is not None and not conn.limited:
                break
            await asyncio.sleep(0.1)
        puncher = box["puncher"]
        return {"connections": host.connection_info(), "punch_attempts": puncher.attempts if puncher else 0}
    if cmd == "blob":
        data = os.urandom(int(command["size"]))
        stream = await host.new_stream(PeerId.from_string(command["peer"]), [BLOB_PROTOCOL], limited=True)
        for start in range(0, len(data), 65536):
            await stream.write(data[start:start + 65536])
        await stream.close()
        echoed = await asyncio.wait_for(stream.readexactly(32), 60)
        return {"sent": len(data), "sha256": hashlib.sha256(data).hexdigest(), "echoed": echoed.hex()}
    raise ValueError(f"unknown command {cmd}")


async def answer_blob(stream: Stream) -> None:
    digest = hashlib.sha256()
    while chunk := await stream.read():
        digest.update(chunk)
    await stream.write(digest.digest())
    await stream.close()


if __name__ == "__main__":
    asyncio.run(main())
