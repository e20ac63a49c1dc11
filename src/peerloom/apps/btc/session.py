"""One Bitcoin P2P connection, sans-I/O: framing both ways, the version handshake, pings answered, and a
misbehaviour score.

Handshake rules (Core's net_processing.cpp, BIP 339, BIP 155): the first message each side sends is
`version`; the receiver of a `version` answers with its own (if it has not sent one), then `wtxidrelay` and
`sendaddrv2` (only to a peer of protocol >= 70016) and `verack`. `wtxidrelay` and `sendaddrv2` are only valid
between `version` and `verack` — after `verack` they are a protocol violation and the peer is dropped.
Messages before `version`, a second `version` or `verack`, and other messages before `verack` are ignored and
cost misbehaviour points; at `DISCOURAGE_THRESHOLD` the peer is dropped.

Bytes in (`receive_data`), messages for the application and bytes to send (`data_to_send`) out; the caller
gives `now` (Unix seconds) for the version timestamp and the nonce to detect connections to ourselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .p2p import (
    MIN_PEER_PROTO_VERSION,
    NODE_NETWORK,
    NODE_WITNESS,
    PROTOCOL_VERSION,
    FeeFilter,
    FrameDecoder,
    Message,
    NetAddress,
    Ping,
    Pong,
    SendAddrV2,
    SendHeaders,
    Verack,
    Version,
    WtxidRelay,
    decode_message,
    encode_message,
)
from .serialize import BtcError

DISCOURAGE_THRESHOLD = 100
USER_AGENT = "/peerloom:0.1/"
_SENDHEADERS_VERSION = 70012  # BIP 130
_WTXID_RELAY_VERSION = 70016  # BIP 339


class PeerMisbehaved(BtcError):
    """The peer broke the protocol badly enough to be disconnected (and, by a peer manager, discouraged)."""


@dataclass(frozen=True)
class LocalInfo:
    """What we say about ourselves in `version`."""

    nonce: int
    start_height: int = 0
    services: int = NODE_NETWORK | NODE_WITNESS
    user_agent: str = USER_AGENT
    relay: bool = True


@dataclass
class PeerFeatures:
    """What the peer told us during and after the handshake."""

    version: Version | None = None
    wtxid_relay: bool = False
    addrv2: bool = False
    send_headers: bool = False
    fee_filter: int = 0


@dataclass
class PeerSession:
    """A connection's protocol state; `outbound` says whether we dialled (and so speak first)."""

    magic: bytes
    local: LocalInfo
    outbound: bool
    peer_address: tuple[str, int] = ("0.0.0.0", 0)
    features: PeerFeatures = field(default_factory=PeerFeatures)
    misbehaviour: int = 0
    _decoder: FrameDecoder = field(init=False)
    _out: bytearray = field(default_factory=bytearray, init=False)
    _sent_version: bool = field(default=False, init=False)
    _got_verack: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._decoder = FrameDecoder(self.magic)

    @property
    def established(self) -> bool:
        """Both `version`s exchanged and the peer's `verack` received."""
        return self.features.version is not None and self._got_verack

    def start(self, now: int) -> None:
        """An outbound connection speaks first: queue our `version`."""
        if self.outbound and not self._sent_version:
            self._send_version(now)

    def send(self, message: Message) -> None:
        """Queue an application message (only once the handshake is done)."""
        if not self.established:
            raise RuntimeError("handshake not complete")
        self._queue(message)

    def data_to_send(self) -> bytes:
        """The bytes queued for the peer since the last call."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes, now: int) -> list[Message]:
        """The application messages in `data` (after the handshake); handshake and ping traffic is handled
        here. Raises `BtcError` (its subclass `PeerMisbehaved` for rule breaking) when the peer must go."""
        delivered = []
        for command, payload in self._decoder.feed(data):
            message = decode_message(command, payload)
            if (kept := self._handle(message, now)) is not None:
                delivered.append(kept)
        return delivered

    def _handle(self, message: Message, now: int) -> Message | None:
        if isinstance(message, Version):
            self._on_version(message, now)
            return None
        if self.features.version is None:
            self._misbehaving(1, f"{type(message).__name__} before version")
            return None
        if isinstance(message, Verack):
            if self._got_verack:
                self._misbehaving(1, "redundant verack")
                return None
            self._got_verack = True
            if self.features.version.version >= _SENDHEADERS_VERSION:
                self._queue(SendHeaders())
            return None
        if isinstance(message, WtxidRelay | SendAddrV2):
            if self._got_verack:  # BIP 339 / BIP 155: only between version and verack
                raise PeerMisbehaved(f"{type(message).__name__} after verack")
            if isinstance(message, WtxidRelay):
                self.features.wtxid_relay = self.features.version.version >= _WTXID_RELAY_VERSION
            else:
                self.features.addrv2 = True
            return None
        if not self._got_verack:
            self._misbehaving(1, f"{type(message).__name__} before verack")
            return None
        if isinstance(message, Ping):
            self._queue(Pong(message.nonce))
            return None
        if isinstance(message, SendHeaders):
            self.features.send_headers = True
            return None
        if isinstance(message, FeeFilter):
            self.features.fee_filter = message.feerate
            return None
        return message

    def _on_version(self, message: Version, now: int) -> None:
        if self.features.version is not None:
            self._misbehaving(1, "redundant version")
            return
        if message.version < MIN_PEER_PROTO_VERSION:
            raise PeerMisbehaved(f"peer protocol {message.version} is older than {MIN_PEER_PROTO_VERSION}")
        if not self.outbound and message.nonce == self.local.nonce:
            raise PeerMisbehaved("connected to ourselves")
        self.features.version = message
        if not self._sent_version:
            self._send_version(now)
        if message.version >= _WTXID_RELAY_VERSION:
            self._queue(WtxidRelay())
            self._queue(SendAddrV2())
        self._queue(Verack())

    def _send_version(self, now: int) -> None:
        host, port = self.peer_address
        self._queue(Version(
            version=PROTOCOL_VERSION,
            services=self.local.services,
            timestamp=now,
            addr_recv=NetAddress.from_host(host, port),
            addr_from=NetAddress(0, bytes(16), 0),
            nonce=self.local.nonce,
            user_agent=self.local.user_agent,
            start_height=self.local.start_height,
            relay=self.local.relay,
        ))
        self._sent_version = True

    def _misbehaving(self, points: int, why: str) -> None:
        self.misbehaviour += points
        if self.misbehaviour >= DISCOURAGE_THRESHOLD:
            raise PeerMisbehaved(f"misbehaviour score {self.misbehaviour}: {why}")

    def _queue(self, message: Message) -> None:
        self._out += encode_message(self.magic, message)
