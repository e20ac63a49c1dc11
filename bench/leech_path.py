"""The leecher's receive path alone: one peerloom torrent fed piece messages as fast as it asks, no sockets.

    python bench/leech_path.py [--size 512M] [--version v1|v2|hybrid] [--runs 3]

A real `Node` and `Torrent` (storage, hashing threads, resume data) download from a simulated seed whose
replies are written straight into the peer connection's receive buffer (a megabyte per "read", cut at
arbitrary message boundaries, as TCP does). What is measured is the engine's own work per GiB: wire
parsing, block bookkeeping, picking and requesting, copying, hashing and writing (the simulated seed's
share, a memcpy and a header per block, is small and the same for any version of the engine). Data lives in
/dev/shm. Prints one JSON line per run: MB/s, CPU seconds per GiB (all threads of this process, and the event
loop thread alone, which includes the simulated seed) and minor page faults per MiB.
Use it to compare engine changes A/B: it has none of the seeder's noise of `swarm_bench.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from peerloom.node import Node, Settings
from peerloom.torrent import wire
from peerloom.torrent.create import create
from peerloom.torrent.peer import PeerConnection
from peerloom.torrent.state import State

READ = 1024 * 1024  # bytes per simulated read (the connection's largest receive buffer)


class FakeTransport:
    """What the peer connection writes (requests) is kept for the simulated seed to parse."""

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(bytes(data))

    def writelines(self, lines: list[bytes]) -> None:
        self.out.extend(bytes(x) for x in lines)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 6881) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def download(torrent_path: Path, source: memoryview, work: Path) -> tuple[float, float]:
    settings = Settings(dht=False, lsd=False, trackers=False)
    async with Node(home=work / "home", host="127.0.0.1", settings=settings) as node:
        t = await node.add(torrent_path, save=work / "dst")
        while t.state is not State.DOWNLOADING:
            await asyncio.sleep(0.01)
        cpu0, wall0, main0 = time.process_time(), time.perf_counter(), time.thread_time()
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        peer = PeerConnection(node.engine, t, address=("127.0.0.1", 6881), outgoing=True)
        transport = FakeTransport()
        peer.connection_made(transport)
        reserved = wire.make_reserved(fast=True, extensions=False, v2=t.info_hash_v2 is not None, dht=False)
        hs = wire.encode_handshake(wire.Handshake(t.wire_hash, b"-XX0000-" + os.urandom(12), reserved))
        peer.data_received(hs + wire.encode(wire.HaveAll()) + wire.encode(wire.Unchoke()))
        seed_parser = wire.WireParser()
        skip = wire.HANDSHAKE_LENGTH  # the seed parses what follows the leecher's handshake
        requests: list[tuple[int, int, int]] = []
        stream = bytearray()
        header = struct.Struct(">IBII")
        piece_length = t.meta.piece_length
        while t.state is State.DOWNLOADING:
            out, transport.out = transport.out, []
            for chunk in out:
                if skip:
                    chunk, skip = chunk[skip:], max(0, skip - len(chunk))
                for m in seed_parser.feed(chunk):
                    if type(m) is wire.Request:
                        requests.append((m.index, m.begin, m.length))
            requests.reverse()  # served in the order asked
            while requests and len(stream) < 2 * READ:
                index, begin, length = requests.pop()
                stream += header.pack(9 + length, 7, index, begin)
                at = index * piece_length + begin
                stream += source[at : at + length]
            requests.reverse()
            if stream:
                buf = peer.get_buffer(-1)
                n = min(len(buf), len(stream))
                with memoryview(stream) as view:
                    buf[:n] = view[:n]
                del stream[:n]
                peer.buffer_updated(n)
            else:
                await asyncio.sleep(0.001)  # waiting for pieces to verify before more are requested
            await asyncio.sleep(0)
        await t.wait_done()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
        return time.process_time() - cpu0, time.perf_counter() - wall0, faults, time.thread_time() - main0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="512M")
    ap.add_argument("--version", default="v1", choices=["v1", "v2", "hybrid"])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    size = int(args.size[:-1]) * units[args.size[-1].upper()] if args.size[-1].upper() in units else int(args.size)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory(prefix="peerloom-leech-", dir="/dev/shm") as tmp:
        root = Path(tmp)
        data = root / "data.bin"
        with data.open("wb") as f:
            for _ in range(0, size, 8 << 20):
                f.write(os.urandom(min(8 << 20, size - f.tell())))
        torrent = root / "t.torrent"
        torrent.write_bytes(create(data, version=args.version).to_bytes())
        source = memoryview(data.read_bytes())
        for run in range(args.runs):
            work = root / f"run{run}"
            cpu, wall, faults, main_cpu = asyncio.run(download(torrent, source, work))
            ok = (work / "dst" / "data.bin").read_bytes() == source
            print(json.dumps({
                "version": args.version, "size_bytes": size, "MBps": round(size / wall / 1e6, 1),
                "cpu_s_per_GiB": round(cpu * (1 << 30) / size, 3),
                "event_loop_cpu_s_per_GiB": round(main_cpu * (1 << 30) / size, 3),
                "page_faults_per_MiB": round(faults / (size >> 20), 1), "identical": ok,
            }), flush=True)


if __name__ == "__main__":
    main()
