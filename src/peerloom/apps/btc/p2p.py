"""Bitcoin P2P messages, sans-I/O: the 24-byte frame (magic, command, length, checksum) and the payload codecs
of the messages peerloom speaks (protocol version 70016).

`FrameDecoder` turns received bytes into `(command, payload)` frames, rejecting a wrong magic, a malformed
command, a length above `MAX_PROTOCOL_MESSAGE_LENGTH` (before buffering it) and a bad checksum;
`decode_message` turns a frame into a message object (`UnknownMessage` for commands it does not know, which
Core ignores too). Every message encodes back to its payload with `encode()`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import ClassVar

from .block import HEADER_BYTES, Block, BlockHeader, parse_block, read_header
from .serialize import BtcError, Reader, compact_size, sha256d, var_bytes
from .tx import Transaction, parse_transaction

PROTOCOL_VERSION = 70016  # wtxidrelay (BIP 339) and everything before it
MIN_PEER_PROTO_VERSION = 31800  # Core disconnects peers older than this
MAX_PROTOCOL_MESSAGE_LENGTH = 4_000_000  # net.h
HEADER_SIZE = 24
MAX_HEADERS_RESULTS = 2000
MAX_LOCATOR_SZ = 101
MAX_INV_SZ = 50_000
MAX_ADDR_TO_SEND = 1000
MAX_SUBVERSION_LENGTH = 256
MAX_ADDRV2_ADDR_SIZE = 512  # BIP 155

NODE_NETWORK = 1
NODE_WITNESS = 1 << 3

MSG_TX = 1
MSG_BLOCK = 2
MSG_WTX = 5  # BIP 339
MSG_WITNESS_FLAG = 1 << 30
MSG_WITNESS_TX = MSG_TX | MSG_WITNESS_FLAG
MSG_WITNESS_BLOCK = MSG_BLOCK | MSG_WITNESS_FLAG

_IPV4_MAPPED = bytes(10) + b"\xff\xff"


class FrameDecoder:
    """Splits a byte stream into `(command, payload)` frames of one network (its 4-byte magic)."""

    def __init__(self, magic: bytes) -> None:
        self.magic = magic
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        """Every complete frame `data` finishes; the header is checked as soon as it is in, so a peer cannot
        make us buffer more than one bounded message."""
        self._buf += data
        frames = []
        while len(self._buf) >= HEADER_SIZE:
            command, length, checksum = parse_frame_header(bytes(self._buf[:HEADER_SIZE]), self.magic)
            end = HEADER_SIZE + length
            if len(self._buf) < end:
                break
            payload = bytes(self._buf[HEADER_SIZE:end])
            del self._buf[:end]
            if sha256d(payload)[:4] != checksum:
                raise BtcError(f"bad checksum on {command!r}")
            frames.append((command, payload))
        return frames


def parse_frame_header(header: bytes, magic: bytes) -> tuple[str, int, bytes]:
    """(command, payload length, checksum) of a 24-byte frame header."""
    if len(header) != HEADER_SIZE:
        raise BtcError("a frame header is 24 bytes")
    if header[:4] != magic:
        raise BtcError(f"wrong network magic {header[:4].hex()}")
    raw = header[4:16]
    name, _, padding = raw.partition(b"\x00")
    # CMessageHeader::GetCommand / IsCommandValid: printable ASCII, then only NUL padding.
    if padding.strip(b"\x00") or not all(0x20 <= c <= 0x7E for c in name) or not name:
        raise BtcError(f"malformed command {raw!r}")
    length = int.from_bytes(header[16:20], "little")
    if length > MAX_PROTOCOL_MESSAGE_LENGTH:
        raise BtcError(f"message of {length} bytes is above {MAX_PROTOCOL_MESSAGE_LENGTH}")
    return name.decode("ascii"), length, header[20:24]


def frame(magic: bytes, command: str, payload: bytes) -> bytes:
    """A complete wire message."""
    name = command.encode("ascii")
    if not 0 < len(name) <= 12 or len(payload) > MAX_PROTOCOL_MESSAGE_LENGTH:
        raise ValueError("command of 1-12 characters and a bounded payload")
    return b"".join((magic, name.ljust(12, b"\x00"), len(payload).to_bytes(4, "little"), sha256d(payload)[:4], payload))


@dataclass(frozen=True)
class NetAddress:
    """A legacy network address (the `addr` message and `version`): services, IPv6 or IPv4-mapped, port."""

    services: int
    ip: bytes  # 16 bytes
    port: int

    @classmethod
    def from_host(cls, host: str, port: int, services: int = 0) -> NetAddress:
        addr = ipaddress.ip_address(host)
        raw = _IPV4_MAPPED + addr.packed if addr.version == 4 else addr.packed
        return cls(services, raw, port)

    def host(self) -> str:
        if self.ip[:12] == _IPV4_MAPPED:
            return str(ipaddress.IPv4Address(self.ip[12:]))
        return str(ipaddress.IPv6Address(self.ip))

    def encode(self) -> bytes:
        return self.services.to_bytes(8, "little") + self.ip + self.port.to_bytes(2, "big")

    @classmethod
    def read(cls, r: Reader) -> NetAddress:
        return cls(r.u64(), r.bytes(16), r.u16be())


class Message:
    """A P2P message: `command` names it on the wire, `encode()` gives its payload."""

    command: ClassVar[str]

    def encode(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def decode(cls, payload: bytes) -> Message:
        raise NotImplementedError


class _Empty(Message):
    """A message with no payload; anything in it is malformed."""

    def encode(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, payload: bytes) -> Message:
        if payload:
            raise BtcError(f"{cls.command} carries no payload")
        return cls()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(self.command)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Verack(_Empty):
    command = "verack"


class SendHeaders(_Empty):
    command = "sendheaders"  # BIP 130


class SendAddrV2(_Empty):
    command = "sendaddrv2"  # BIP 155


class WtxidRelay(_Empty):
    command = "wtxidrelay"  # BIP 339


class GetAddr(_Empty):
    command = "getaddr"


@dataclass(frozen=True)
class Version(Message):
    command: ClassVar[str] = "version"
    version: int
    services: int
    timestamp: int
    addr_recv: NetAddress
    addr_from: NetAddress
    nonce: int
    user_agent: str  # undecodable bytes kept as lone surrogates, so it re-encodes byte for byte
    start_height: int
    relay: bool

    def encode(self) -> bytes:
        return b"".join((
            self.version.to_bytes(4, "little", signed=True),
            self.services.to_bytes(8, "little"),
            self.timestamp.to_bytes(8, "little", signed=True),
            self.addr_recv.encode(),
            self.addr_from.encode(),
            self.nonce.to_bytes(8, "little"),
            var_bytes(self.user_agent.encode("utf-8", "surrogateescape")),
            self.start_height.to_bytes(4, "little", signed=True),
            b"\x01" if self.relay else b"\x00",
        ))

    @classmethod
    def decode(cls, payload: bytes) -> Version:
        r = Reader(payload)
        version, services, timestamp = r.i32(), r.u64(), r.i64()
        addr_recv = NetAddress.read(r)
        # Fields after addr_recv are optional in old versions; Core reads them when present.
        addr_from = NetAddress.read(r) if r.remaining else NetAddress(0, bytes(16), 0)
        nonce = r.u64() if r.remaining else 0
        agent = r.var_bytes(MAX_SUBVERSION_LENGTH) if r.remaining else b""
        start_height = r.i32() if r.remaining else 0
        relay = bool(r.u8()) if r.remaining else True
        # Core ignores bytes after `relay` (future extensions); so do we.
        return cls(
            version, services, timestamp, addr_recv, addr_from, nonce,
            agent.decode("utf-8", "surrogateescape"), start_height, relay,
        )


@dataclass(frozen=True)
class _Nonce(Message):
    nonce: int

    def encode(self) -> bytes:
        return self.nonce.to_bytes(8, "little")

    @classmethod
    def decode(cls, payload: bytes) -> _Nonce:
        r = Reader(payload)
        nonce = r.u64()
        r.end()
        return cls(nonce)


@dataclass(frozen=True)
class Ping(_Nonce):
    command: ClassVar[str] = "ping"


@dataclass(frozen=True)
class Pong(_Nonce):
    command: ClassVar[str] = "pong"


@dataclass(frozen=True)
class FeeFilter(Message):
    command: ClassVar[str] = "feefilter"  # BIP 133
    feerate: int  # satoshis per 1000 virtual bytes

    def encode(self) -> bytes:
        return self.feerate.to_bytes(8, "little", signed=True)

    @classmethod
    def decode(cls, payload: bytes) -> FeeFilter:
        r = Reader(payload)
        feerate = r.i64()
        r.end()
        return cls(feerate)


@dataclass(frozen=True)
class GetHeaders(Message):
    command: ClassVar[str] = "getheaders"
    version: int
    locator: tuple[bytes, ...]
    hash_stop: bytes = bytes(32)

    def encode(self) -> bytes:
        return b"".join((
            self.version.to_bytes(4, "little"), compact_size(len(self.locator)), *self.locator, self.hash_stop,
        ))

    @classmethod
    def decode(cls, payload: bytes) -> GetHeaders:
        r = Reader(payload)
        version = r.u32()
        n = r.count(32, MAX_LOCATOR_SZ)
        locator = tuple(r.bytes(32) for _ in range(n))
        hash_stop = r.bytes(32)
        r.end()
        return cls(version, locator, hash_stop)


@dataclass(frozen=True)
class GetBlocks(GetHeaders):
    """Asks for an `inv` of up to 500 block hashes after the locator (what bcoin syncs with when it has no
    checkpoints, as on regtest); the same fields as `getheaders`."""

    command: ClassVar[str] = "getblocks"


@dataclass(frozen=True)
class Headers(Message):
    command: ClassVar[str] = "headers"
    headers: tuple[BlockHeader, ...]

    def encode(self) -> bytes:
        return compact_size(len(self.headers)) + b"".join(h.serialize() + b"\x00" for h in self.headers)

    @classmethod
    def decode(cls, payload: bytes) -> Headers:
        r = Reader(payload)
        n = r.count(HEADER_BYTES + 1, MAX_HEADERS_RESULTS)
        headers = []
        for _ in range(n):
            headers.append(read_header(r))
            r.compact_size()  # a transaction count follows each header; Core ignores its value, and so do we
        r.end()
        return cls(tuple(headers))


@dataclass(frozen=True)
class InvItem:
    type: int
    hash: bytes


@dataclass(frozen=True)
class _Inventory(Message):
    items: tuple[InvItem, ...]

    def encode(self) -> bytes:
        return compact_size(len(self.items)) + b"".join(i.type.to_bytes(4, "little") + i.hash for i in self.items)

    @classmethod
    def decode(cls, payload: bytes) -> _Inventory:
        r = Reader(payload)
        n = r.count(36, MAX_INV_SZ)
        items = tuple(InvItem(r.u32(), r.bytes(32)) for _ in range(n))
        r.end()
        return cls(items)


@dataclass(frozen=True)
class Inv(_Inventory):
    command: ClassVar[str] = "inv"


@dataclass(frozen=True)
class GetData(_Inventory):
    command: ClassVar[str] = "getdata"


@dataclass(frozen=True)
class NotFound(_Inventory):
    command: ClassVar[str] = "notfound"


@dataclass(frozen=True)
class TimedAddress:
    time: int
    address: NetAddress


@dataclass(frozen=True)
class Addr(Message):
    command: ClassVar[str] = "addr"
    addresses: tuple[TimedAddress, ...]

    def encode(self) -> bytes:
        body = b"".join(a.time.to_bytes(4, "little") + a.address.encode() for a in self.addresses)
        return compact_size(len(self.addresses)) + body

    @classmethod
    def decode(cls, payload: bytes) -> Addr:
        r = Reader(payload)
        n = r.count(30, MAX_ADDR_TO_SEND)
        addresses = tuple(TimedAddress(r.u32(), NetAddress.read(r)) for _ in range(n))
        r.end()
        return cls(addresses)


# BIP 155 network ids and the address length each requires; other ids are skipped, not rejected.
ADDRV2_LENGTHS = {1: 4, 2: 16, 3: 10, 4: 32, 5: 32, 6: 16}


@dataclass(frozen=True)
class AddrV2Entry:
    time: int
    services: int
    network: int
    addr: bytes
    port: int


@dataclass(frozen=True)
class AddrV2(Message):
    command: ClassVar[str] = "addrv2"  # BIP 155
    entries: tuple[AddrV2Entry, ...]

    def encode(self) -> bytes:
        parts = [compact_size(len(self.entries))]
        for e in self.entries:
            parts += (
                e.time.to_bytes(4, "little"), compact_size(e.services), bytes((e.network,)),
                var_bytes(e.addr), e.port.to_bytes(2, "big"),
            )
        return b"".join(parts)

    @classmethod
    def decode(cls, payload: bytes) -> AddrV2:
        """Entries of known networks with the right length; an entry of an unknown network is read and
        dropped (BIP 155: "clients MUST ignore" them), a known network with a wrong length is malformed."""
        r = Reader(payload)
        n = r.count(9, MAX_ADDR_TO_SEND)
        entries = []
        for _ in range(n):
            time, services, network = r.u32(), r.compact_size((1 << 64) - 1), r.u8()
            addr = r.var_bytes(MAX_ADDRV2_ADDR_SIZE)
            port = r.u16be()
            want = ADDRV2_LENGTHS.get(network)
            if want is None:
                continue
            if len(addr) != want:
                raise BtcError(f"addrv2 network {network} address of {len(addr)} bytes, not {want}")
            entries.append(AddrV2Entry(time, services, network, addr, port))
        r.end()
        return cls(tuple(entries))


@dataclass(frozen=True)
class BlockMessage(Message):
    command: ClassVar[str] = "block"
    block: Block

    def encode(self) -> bytes:
        return self.block.serialize()

    @classmethod
    def decode(cls, payload: bytes) -> BlockMessage:
        return cls(parse_block(payload))


@dataclass(frozen=True)
class TxMessage(Message):
    command: ClassVar[str] = "tx"
    tx: Transaction

    def encode(self) -> bytes:
        return self.tx.serialize()

    @classmethod
    def decode(cls, payload: bytes) -> TxMessage:
        return cls(parse_transaction(payload))


@dataclass(frozen=True)
class UnknownMessage(Message):
    """A command peerloom does not speak (Core ignores these too); kept for logging."""

    name: str
    payload: bytes

    def encode(self) -> bytes:
        return self.payload


MESSAGES: dict[str, type[Message]] = {
    cls.command: cls
    for cls in (
        Version, Verack, Ping, Pong, SendHeaders, SendAddrV2, WtxidRelay, FeeFilter, GetHeaders, GetBlocks, Headers,
        Inv, GetData, NotFound, Addr, AddrV2, GetAddr, BlockMessage, TxMessage,
    )
}


def decode_message(command: str, payload: bytes) -> Message:
    """The message a frame carries."""
    cls = MESSAGES.get(command)
    if cls is None:
        return UnknownMessage(command, payload)
    return cls.decode(payload)


def command_of(message: Message) -> str:
    return message.name if isinstance(message, UnknownMessage) else message.command


def encode_message(magic: bytes, message: Message) -> bytes:
    """`message` framed for the network with `magic`."""
    return frame(magic, command_of(message), message.encode())
