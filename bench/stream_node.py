"""One endpoint of bench/stream_bench.py, run as its own process (one process per side on 127.0.0.1).

    python bench/stream_node.py raw-server
    python bench/stream_node.py raw-client PORT SIZE [--chunk BYTES]
    python bench/stream_node.py cipher-server
    python bench/stream_node.py cipher-client PORT SIZE [--chunk BYTES]
    python bench/stream_node.py host-server [--relay MULTIADDR]
    python bench/stream_node.py host-client MULTIADDR SIZE [--streams N] [--chunk BYTES] [--limited]
    python bench/stream_node.py relay-server
    python bench/stream_node.py handshake-client MULTIADDR [--count N] [--concurrency C]

Servers print one JSON line once they listen ({"port"} or {"addr"}), serve until their stdin closes (or
SIGTERM), then print {"event": "exit", "cpu_s": ...}. Clients print one JSON line with their result and
exit. Both sink servers read a stream until EOF, then answer the byte count as 8 bytes big-endian.
Payloads are one in-memory block of random bytes written over and over: no disk on the data path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
import time

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from peerloom.identity import Identity
from peerloom.net.buffers import BufferPool, ReceiveBuffer
from peerloom.net.host import Host
from peerloom.net.stream import Stream

SINK_PROTOCOL = "/peerloom/sink/1.0.0"
COUNT = 8  # the sink's reply: bytes counted, unsigned 64-bit big-endian
WRITE_HIGH_WATER = 4 * 1024 * 1024


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def progress(text: str) -> None:
    print(f"[{os.getpid()}] {text}", file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def cpu_mark() -> tuple[float, float, int]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime, usage.ru_minflt


def cpu_since(mark: tuple[float, float, int]) -> dict[str, float]:
    """CPU seconds used since `mark`, the kernel's part of them (socket copies, page faults) and the page faults
    taken (fresh buffers cost one per 4 KiB page)."""
    user, system, faults = cpu_mark()
    return {
        "cpu_s": round(user - mark[0] + system - mark[1], 3),
        "sys_s": round(system - mark[1], 3),
        "page_faults": faults - mark[2],
    }


def install_loop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def until_stopped() -> None:
    """Until stdin reaches EOF (the bench closes it) or SIGTERM/SIGINT arrives."""
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def done() -> None:
        if not stop.done():
            stop.set_result(None)

    def on_stdin() -> None:
        try:
            data = os.read(0, 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(0)
            done()

    loop.add_reader(0, on_stdin)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done)
    await stop


# --- raw TCP ------------------------------------------------------------------------------------------------------


class RawSink(asyncio.Protocol):
    """Counts received bytes; at EOF answers the count and closes."""

    def __init__(self) -> None:
        self.count = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.count += len(data)

    def eof_received(self) -> bool:
        assert self.transport is not None
        self.transport.write(self.count.to_bytes(COUNT, "big"))
        self.transport.close()
        return True


class RawSender(asyncio.Protocol):
    """Writes with flow control (pause_writing/resume_writing) and collects the 8-byte answer."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.can_write: asyncio.Future[None] = loop.create_future()
        self.can_write.set_result(None)
        self.reply = bytearray()
        self.answered: asyncio.Future[int] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def pause_writing(self) -> None:
        self.can_write = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if not self.can_write.done():
            self.can_write.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.reply += data
        if len(self.reply) >= COUNT and not self.answered.done():
            self.answered.set_result(int.from_bytes(self.reply[:COUNT], "big"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_exception(ConnectionError(f"closed before the count arrived: {exc}"))
        self.resume_writing()


async def raw_server(protocol: type[asyncio.BaseProtocol] = RawSink) -> None:
    """A sink server (RawSink, or the cipher reference's CipherSink) until stopped."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, "127.0.0.1", 0)
    emit({"port": server.sockets[0].getsockname()[1]})
    await until_stopped()
    server.close()
    emit({"event": "exit", **cpu_since((0.0, 0.0, 0))})


async def raw_client(port: int, size: int, chunk: int) -> None:
    loop = asyncio.get_running_loop()
    block = os.urandom(chunk)
    transport, sender = await loop.create_connection(RawSender, "127.0.0.1", port)
    cpu0 = cpu_mark()
    start = time.perf_counter()
    left = size
    while left:
        if not sender.can_write.done():
            await sender.can_write
        take = min(left, chunk)
        transport.write(block if take == chunk else block[:take])
        left -= take
    transport.write_eof()
    counted = await sender.answered
    seconds = time.perf_counter() - start
    cpu = cpu_since(cpu0)
    transport.close()
    emit({"bytes": size, "counted": counted, "seconds": seconds, **cpu})


# --- the cipher reference: a minimal framed ChaCha20-Poly1305 stream over TCP ---------------------------------------
# What Python can do here with the secure layer's cipher and nothing else: Noise's transport frames (a 2-byte
# length, at most 65,535 sealed bytes: 65,519 of plaintext and the 16-byte tag), no handshake (a fixed key), no
# multiplexing, no flow control beyond the socket's. The sender encrypts each `--chunk` into a pooled buffer with
# `encrypt_into` (the buffer is reused once the transport let go of it) and writes it whole; the receiver is a
# BufferedProtocol reading into a ReceiveBuffer and `decrypt_into` one reused plaintext buffer.

CIPHER_KEY = bytes(range(32))
FRAME_PLAINTEXT = 65535 - 16
TAG = 16


def _nonce(counter: int) -> bytes:
    return b"\0\0\0\0" + counter.to_bytes(8, "little")


class CipherSink(asyncio.BufferedProtocol):
    """Decrypts frames as they arrive and counts their plaintext; at EOF answers the count and closes."""

    def __init__(self) -> None:
        self.aead = ChaCha20Poly1305(CIPHER_KEY)
        self.buffer = ReceiveBuffer(64 * 1024, 1024 * 1024)
        self.plain = bytearray(FRAME_PLAINTEXT)
        self.plain_view = memoryview(self.plain)
        self.counter = 0
        self.count = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.cpu0, self.t0 = cpu_mark(), time.perf_counter()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.buffer.buffer_updated(nbytes)
        data = self.buffer.unread()
        pos, end = 0, len(data)
        while end - pos >= 2:
            size = int.from_bytes(data[pos:pos + 2], "big")
            if end - pos - 2 < size:
                break
            sealed = data[pos + 2:pos + 2 + size]
            self.aead.decrypt_into(_nonce(self.counter), sealed, None, self.plain_view[:size - TAG])
            self.counter += 1
            self.count += size - TAG
            pos += 2 + size
        self.buffer.consume(pos)

    def eof_received(self) -> bool:
        assert self.transport is not None
        self.transport.write(self.count.to_bytes(COUNT, "big"))
        self.transport.close()
        emit({"event": "sinks_done", "bytes": self.count, "seconds": time.perf_counter() - self.t0,
              **cpu_since(self.cpu0)})
        return True


def seal_chunk(aead: ChaCha20Poly1305, counter: int, plaintext: memoryview, out: bytearray) -> tuple[int, int]:
    """`plaintext` as frames into `out`; the bytes used and the next nonce counter."""
    view = memoryview(out)
    pos = 0
    for start in range(0, len(plaintext), FRAME_PLAINTEXT):
        piece = plaintext[start:start + FRAME_PLAINTEXT]
        sealed = len(piece) + TAG
        view[pos:pos + 2] = sealed.to_bytes(2, "big")
        aead.encrypt_into(_nonce(counter), piece, None, view[pos + 2:pos + 2 + sealed])
        counter += 1
        pos += 2 + sealed
    return pos, counter


async def cipher_client(port: int, size: int, chunk: int) -> None:
    loop = asyncio.get_running_loop()
    block = memoryview(os.urandom(chunk))
    aead = ChaCha20Poly1305(CIPHER_KEY)
    pool = BufferPool(8)
    frames = -(-chunk // FRAME_PLAINTEXT)
    transport, sender = await loop.create_connection(RawSender, "127.0.0.1", port)
    cpu0 = cpu_mark()
    start = time.perf_counter()
    left, counter = size, 0
    while left:
        if not sender.can_write.done():
            await sender.can_write
        take = min(left, chunk)
        out = pool.get(take + frames * (2 + TAG))
        used, counter = seal_chunk(aead, counter, block[:take], out)
        transport.write(memoryview(out)[:used])
        left -= take
    transport.write_eof()
    counted = await sender.answered
    seconds = time.perf_counter() - start
    cpu = cpu_since(cpu0)
    transport.close()
    emit({"bytes": size, "counted": counted, "seconds": seconds, **cpu})


# --- peerloom Host ------------------------------------------------------------------------------------------------


class SinkStats:
    """Wall and CPU time of a busy spell (from the first sink stream opening to the last one answering):
    the receiver's share of a measurement, printed as one "sinks_done" line."""

    def __init__(self) -> None:
        self.active = 0
        self.total = 0
        self.cpu0 = (0.0, 0.0, 0)
        self.t0 = 0.0

    def begin(self) -> None:
        if not self.active:
            self.total = 0
            self.cpu0, self.t0 = cpu_mark(), time.perf_counter()
        self.active += 1

    def end(self, count: int) -> None:
        self.total += count
        self.active -= 1
        if not self.active:
            seconds = time.perf_counter() - self.t0
            emit({"event": "sinks_done", "bytes": self.total, "seconds": seconds, **cpu_since(self.cpu0)})


STATS = SinkStats()


async def sink(stream: Stream) -> None:
    STATS.begin()
    count = 0
    try:
        while data := await stream.read():
            count += len(data)
        await stream.write(count.to_bytes(COUNT, "big"))
        await stream.close()
    finally:
        STATS.end(count)


async def host_server(relay: str | None) -> None:
    """The sink, at its own address, or (with `relay`) reachable only through a reservation on that relay: its
    announced address is then the /p2p-circuit one, and the sink runs on limited (relayed) connections."""
    async with Host(Identity.generate()) as host:
        host.set_handler(SINK_PROTOCOL, sink, limited=relay is not None)
        addr = await host.listen("/ip4/127.0.0.1/tcp/0")
        client = None
        if relay is not None:
            from peerloom.net.relay.client import RelayClient

            client = RelayClient(host)
            client.start()
            held = await client.reserve(relay)
            addr = held.circuit_addr.encapsulate(f"/p2p/{host.peer_id}")
        emit({"addr": str(addr)})
        await until_stopped()
        if client is not None:
            await client.close()
    emit({"event": "exit", **cpu_since((0.0, 0.0, 0))})


async def relay_server() -> None:
    """A Circuit Relay v2 hop server without circuit limits (the bench moves gigabytes through it)."""
    from peerloom.net.relay.reservations import RelayLimits
    from peerloom.net.relay.server import RelayServer

    async with Host(Identity.generate()) as host:
        server = RelayServer(host, RelayLimits(circuit_duration=0, circuit_data=0))
        server.start()
        addr = await host.listen("/ip4/127.0.0.1/tcp/0")
        emit({"addr": str(addr)})
        cpu0 = cpu_mark()
        await until_stopped()
        emit({"event": "exit", "relayed_bytes": server.relayed_bytes, **cpu_since(cpu0)})
        await server.close()


async def send_sink(stream: Stream, size: int, block: bytes) -> int:
    """Write `size` bytes to an open sink stream in `len(block)` writes, close, and return the sink's count."""
    chunk = len(block)
    left = size
    while left:
        take = min(left, chunk)
        await stream.write(block if take == chunk else block[:take])
        left -= take
    await stream.close()
    return int.from_bytes(await stream.readexactly(COUNT), "big")


async def host_client(addr: str, size: int, streams: int, chunk: int, limited: bool = False) -> None:
    block = os.urandom(chunk)
    shares = [size // streams + (1 if i < size % streams else 0) for i in range(streams)]
    async with Host(Identity.generate()) as host:
        # negotiated, untimed; `limited`: the address is a /p2p-circuit one
        opened = [await host.new_stream(addr, [SINK_PROTOCOL], limited=limited) for _ in range(streams)]
        cpu0 = cpu_mark()
        start = time.perf_counter()
        counts = await asyncio.gather(*(send_sink(s, n, block) for s, n in zip(opened, shares, strict=True)))
        seconds = time.perf_counter() - start
        cpu = cpu_since(cpu0)
    emit({"bytes": size, "counted": sum(counts), "streams": streams, "seconds": seconds, **cpu})


async def handshake_client(addr: str, count: int, concurrency: int) -> None:
    """`count` fresh connections (TCP + multistream + Noise XX + yamux + one ping, then close), spread over
    `concurrency` workers. Each worker has its own Host (own identity) and dials sequentially: the server then
    keeps one connection per worker, and closing the client side drops it from the client Host's table at
    once, so the next connect() dials afresh (checked: every connection object must be new)."""
    hosts = [Host(Identity.generate()) for _ in range(concurrency)]
    shares = [count // concurrency + (1 if i < count % concurrency else 0) for i in range(concurrency)]
    latencies: list[float] = []
    seen: dict[int, object] = {}  # holds every connection, so no id() is reused
    failures: list[str] = []

    async def worker(host: Host, n: int) -> None:
        done = 0
        while done < n:
            t0 = time.perf_counter()
            try:
                conn = await host.connect(addr)
                if id(conn) in seen:
                    raise RuntimeError("connect() reused a connection")
                seen[id(conn)] = conn
                assert conn.remote_peer is not None
                await host.ping(conn.remote_peer)
            except Exception as exc:  # counted and retried: a duplicate the server refused, a timeout
                failures.append(repr(exc))
                if len(failures) > count:
                    raise
                continue
            conn.close()
            latencies.append(time.perf_counter() - t0)
            done += 1

    cpu0 = cpu_mark()
    start = time.perf_counter()
    await asyncio.gather(*(worker(h, n) for h, n in zip(hosts, shares, strict=True)))
    seconds = time.perf_counter() - start
    cpu = cpu_since(cpu0)
    for host in hosts:
        await host.close()
    latencies.sort()
    emit(
        {
            "connections": count,
            "concurrency": concurrency,
            "seconds": seconds,
            "per_s": count / seconds,
            "median_ms": latencies[len(latencies) // 2] * 1000,
            "p90_ms": latencies[int(len(latencies) * 0.9)] * 1000,
            "failures": len(failures),
            "failure_kinds": sorted(set(failures))[:3],
            **cpu,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("raw-server")
    p = sub.add_parser("raw-client")
    p.add_argument("port", type=int)
    p.add_argument("size", type=parse_size)
    p.add_argument("--chunk", type=parse_size, default=1 << 20)
    sub.add_parser("cipher-server")
    p = sub.add_parser("cipher-client")
    p.add_argument("port", type=int)
    p.add_argument("size", type=parse_size)
    p.add_argument("--chunk", type=parse_size, default=1 << 20)
    p = sub.add_parser("host-server")
    p.add_argument("--relay", default=None)
    p = sub.add_parser("host-client")
    p.add_argument("addr")
    p.add_argument("size", type=parse_size)
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--chunk", type=parse_size, default=1 << 20)
    p.add_argument("--limited", action="store_true")
    sub.add_parser("relay-server")
    p = sub.add_parser("handshake-client")
    p.add_argument("addr")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()

    install_loop()
    if args.command == "raw-server":
        coro = raw_server()
    elif args.command == "raw-client":
        coro = raw_client(args.port, args.size, args.chunk)
    elif args.command == "cipher-server":
        coro = raw_server(CipherSink)
    elif args.command == "cipher-client":
        coro = cipher_client(args.port, args.size, args.chunk)
    elif args.command == "host-server":
        coro = host_server(args.relay)
    elif args.command == "relay-server":
        coro = relay_server()
    elif args.command == "host-client":
        coro = host_client(args.addr, args.size, args.streams, args.chunk, args.limited)
    else:
        coro = handshake_client(args.addr, args.count, args.concurrency)
    asyncio.run(coro)


if __name__ == "__main__":
    main()
