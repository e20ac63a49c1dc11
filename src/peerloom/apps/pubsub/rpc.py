"""The libp2p pubsub RPC protobuf (`rpc.proto`) with the gossipsub control messages, encoded and decoded with bounds.

Field numbers from the pubsub spec (pubsub/README.md, "The RPC") and gossipsub v1.0 ("Control messages"), v1.1
(PRUNE's `peers` and `backoff`) and v1.2 (`IDONTWANT`, control field 5). Every count and length is checked while
the fields are read, before anything is kept, against `RpcLimits` (defaults as js-libp2p's `defaultDecodeRpcLimits`:
5000 of each list, 512 IDONTWANT ids, 16 PX peers); a breach raises `PubsubError`, as does any malformed field.
Unknown fields are skipped, as protobuf does; a scalar sent twice keeps its last value, an embedded message sent
twice is merged (protobuf's rules), so `control` may arrive in pieces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from peerloom.codec.protobuf import MAX_FIELD_NUMBER, Field, WireType, encode_bytes_field, encode_varint_field
from peerloom.codec.varint import Buffer
from peerloom.errors import ProtocolError

# rpc.proto field numbers
_RPC_SUBSCRIPTIONS, _RPC_PUBLISH, _RPC_CONTROL = 1, 2, 3
_SUB_SUBSCRIBE, _SUB_TOPIC = 1, 2
_MSG_FROM, _MSG_DATA, _MSG_SEQNO, _MSG_TOPIC, _MSG_SIGNATURE, _MSG_KEY = 1, 2, 3, 4, 5, 6
_CTL_IHAVE, _CTL_IWANT, _CTL_GRAFT, _CTL_PRUNE, _CTL_IDONTWANT = 1, 2, 3, 4, 5
_IHAVE_TOPIC, _IHAVE_IDS = 1, 2
_IWANT_IDS = 1
_GRAFT_TOPIC = 1
_PRUNE_TOPIC, _PRUNE_PEERS, _PRUNE_BACKOFF = 1, 2, 3
_PEER_ID, _PEER_RECORD = 1, 2
_IDONTWANT_IDS = 1
_LEN, _VARINT = WireType.LEN, WireType.VARINT


class PubsubError(ProtocolError):
    """An RPC that is malformed or breaks a bound of `RpcLimits`; also the base of the message-level errors."""


@dataclass(frozen=True, slots=True)
class Message:
    """rpc.proto `Message`. With StrictSign, `from_peer`, an 8-byte big-endian `seqno` and `signature` are set;
    `key` only when the public key is not inlined in `from_peer`.

    `wire` is the encoding the message arrived in (set by `decode_rpc`, not compared): forwarding re-sends exactly
    those bytes, so the signature still covers them and nothing is encoded again per hop.
    """

    topic: str
    data: bytes = b""
    from_peer: bytes | None = None
    seqno: bytes | None = None
    signature: bytes | None = None
    key: bytes | None = None
    wire: bytes | None = field(default=None, init=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SubOpts:
    """A subscription announcement: `subscribe` False means unsubscribe."""

    subscribe: bool
    topic: str


@dataclass(frozen=True, slots=True)
class IHave:
    topic: str
    message_ids: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class IWant:
    message_ids: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Graft:
    topic: str


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A peer-exchange suggestion in a PRUNE (gossipsub v1.1, "Peer Exchange")."""

    peer_id: bytes | None = None
    signed_peer_record: bytes | None = None


@dataclass(frozen=True, slots=True)
class Prune:
    topic: str
    peers: tuple[PeerInfo, ...] = ()
    backoff: int | None = None  # seconds


@dataclass(frozen=True, slots=True)
class IDontWant:
    message_ids: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class ControlMessage:
    ihave: tuple[IHave, ...] = ()
    iwant: tuple[IWant, ...] = ()
    graft: tuple[Graft, ...] = ()
    prune: tuple[Prune, ...] = ()
    idontwant: tuple[IDontWant, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.ihave or self.iwant or self.graft or self.prune or self.idontwant)


@dataclass(frozen=True, slots=True)
class RPC:
    subscriptions: tuple[SubOpts, ...] = ()
    publish: tuple[Message, ...] = ()
    control: ControlMessage | None = None


@dataclass(frozen=True, slots=True)
class RpcLimits:
    """Bounds applied while decoding one RPC (counts are per RPC, summed over repeated entries)."""

    max_rpc_size: int = 1 << 20  # go-libp2p-pubsub and js-libp2p: 1 MiB
    max_messages: int = 5000
    max_subscriptions: int = 5000
    max_control_messages: int = 5000  # IHAVE + IWANT + GRAFT + PRUNE + IDONTWANT entries
    max_control_ids: int = 5000  # message ids in all IHAVEs, and again in all IWANTs
    max_idontwant_ids: int = 512
    max_peer_infos: int = 16  # PX peers in all PRUNEs
    max_topic_len: int = 1024  # bytes of UTF-8
    max_message_id_len: int = 512


# --- encoding -----------------------------------------------------------------------------------------------------


def encode_message(msg: Message) -> bytes:
    """The `Message` protobuf, fields in number order; the bytes it arrived in when it came from the wire.

    `data` is always written, even empty, as js-libp2p writes it when it signs (the signature covers the field).
    """
    if msg.wire is not None:
        return msg.wire
    return encode_message_fields(msg.from_peer, msg.data, msg.seqno, msg.topic, msg.signature, msg.key)


def encode_message_fields(
    from_peer: bytes | None,
    data: bytes | None,
    seqno: bytes | None,
    topic: str,
    signature: bytes | None = None,
    key: bytes | None = None,
) -> bytes:
    """A `Message` protobuf from its fields; a None field is left out (message.py signs the form without
    `signature` and `key`, and checks a message whose empty `data` field was left out)."""
    parts = []
    if from_peer is not None:
        parts.append(encode_bytes_field(_MSG_FROM, from_peer))
    if data is not None:
        parts.append(encode_bytes_field(_MSG_DATA, data))
    if seqno is not None:
        parts.append(encode_bytes_field(_MSG_SEQNO, seqno))
    parts.append(encode_bytes_field(_MSG_TOPIC, topic.encode()))
    if signature is not None:
        parts.append(encode_bytes_field(_MSG_SIGNATURE, signature))
    if key is not None:
        parts.append(encode_bytes_field(_MSG_KEY, key))
    return b"".join(parts)


def _encode_ids(number: int, ids: tuple[bytes, ...]) -> list[bytes]:
    return [encode_bytes_field(number, i) for i in ids]


def encode_control(control: ControlMessage) -> bytes:
    """The `ControlMessage` protobuf."""
    parts = []
    for ihave in control.ihave:
        topic = encode_bytes_field(_IHAVE_TOPIC, ihave.topic.encode())
        body = b"".join([topic, *_encode_ids(_IHAVE_IDS, ihave.message_ids)])
        parts.append(encode_bytes_field(_CTL_IHAVE, body))
    for iwant in control.iwant:
        parts.append(encode_bytes_field(_CTL_IWANT, b"".join(_encode_ids(_IWANT_IDS, iwant.message_ids))))
    for graft in control.graft:
        parts.append(encode_bytes_field(_CTL_GRAFT, encode_bytes_field(_GRAFT_TOPIC, graft.topic.encode())))
    for prune in control.prune:
        body_parts = [encode_bytes_field(_PRUNE_TOPIC, prune.topic.encode())]
        for info in prune.peers:
            info_parts = []
            if info.peer_id is not None:
                info_parts.append(encode_bytes_field(_PEER_ID, info.peer_id))
            if info.signed_peer_record is not None:
                info_parts.append(encode_bytes_field(_PEER_RECORD, info.signed_peer_record))
            body_parts.append(encode_bytes_field(_PRUNE_PEERS, b"".join(info_parts)))
        if prune.backoff is not None:
            body_parts.append(encode_varint_field(_PRUNE_BACKOFF, prune.backoff))
        parts.append(encode_bytes_field(_CTL_PRUNE, b"".join(body_parts)))
    for idontwant in control.idontwant:
        parts.append(encode_bytes_field(_CTL_IDONTWANT, b"".join(_encode_ids(_IDONTWANT_IDS, idontwant.message_ids))))
    return b"".join(parts)


def encode_rpc(rpc: RPC) -> bytes:
    """The `RPC` protobuf (without the length prefix the stream adds)."""
    parts = []
    for sub in rpc.subscriptions:
        flag = encode_varint_field(_SUB_SUBSCRIBE, int(sub.subscribe))
        body = flag + encode_bytes_field(_SUB_TOPIC, sub.topic.encode())
        parts.append(encode_bytes_field(_RPC_SUBSCRIPTIONS, body))
    for msg in rpc.publish:
        parts.append(encode_bytes_field(_RPC_PUBLISH, encode_message(msg)))
    if rpc.control is not None:
        parts.append(encode_bytes_field(_RPC_CONTROL, encode_control(rpc.control)))
    return b"".join(parts)


def encode_publish(encoded_messages: list[bytes]) -> bytes:
    """An RPC carrying only already encoded messages: the forwarding path builds it once for all its peers."""
    return b"".join([encode_bytes_field(_RPC_PUBLISH, m) for m in encoded_messages])


def encode_rpcs(encoded_messages: list[bytes], control: ControlMessage | None, max_size: int) -> list[bytes]:
    """The messages (already encoded) and the control message as RPCs of at most max_size bytes each, so that a
    peer applying the same limit reads them all: the control part first, then the messages packed in order.
    A message that alone exceeds max_size goes alone (the receiver's limit may be larger)."""
    parts = [encode_bytes_field(_RPC_CONTROL, encode_control(control))] if control else []
    parts += [encode_bytes_field(_RPC_PUBLISH, m) for m in encoded_messages]
    rpcs: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for part in parts:
        if batch and size + len(part) > max_size:
            rpcs.append(b"".join(batch))
            batch, size = [], 0
        batch.append(part)
        size += len(part)
    if batch:
        rpcs.append(b"".join(batch))
    return rpcs


# --- decoding -----------------------------------------------------------------------------------------------------


class _Budget:
    """What is left of each RpcLimits count while one RPC is read."""

    __slots__ = ("control", "idontwant_ids", "ihave_ids", "iwant_ids", "limits", "messages", "peers", "subscriptions")

    def __init__(self, limits: RpcLimits) -> None:
        self.limits = limits
        self.messages = limits.max_messages
        self.subscriptions = limits.max_subscriptions
        self.control = limits.max_control_messages
        self.ihave_ids = limits.max_control_ids
        self.iwant_ids = limits.max_control_ids
        self.idontwant_ids = limits.max_idontwant_ids
        self.peers = limits.max_peer_infos


def _varint(data: Buffer, pos: int, what: str) -> tuple[int, int]:
    """The varint at pos with protobuf's rules (at most 10 bytes, not necessarily minimal, 64 bits) and the offset
    after it."""
    value = shift = 0
    size = len(data)
    while pos < size and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value >> 64:
                raise PubsubError(f"malformed pubsub {what}: varint exceeds 64 bits")
            return value, pos
        shift += 7
    raise PubsubError(f"malformed pubsub {what}: truncated or overlong varint")


def _fields(data: Buffer, what: str) -> list[Field]:
    """The records of one protobuf message, as codec.protobuf.iter_fields reads them, with one-byte keys and
    lengths (nearly all of them) read inline: this loop is the RPC path's main cost. PubsubError when malformed."""
    fields = []
    pos, size = 0, len(data)
    while pos < size:
        key = data[pos]
        pos += 1
        if key & 0x80:
            key, pos = _varint(data, pos - 1, what)
        number, wire_type = key >> 3, key & 7
        if not 1 <= number <= MAX_FIELD_NUMBER:
            raise PubsubError(f"malformed pubsub {what}: field number {number}")
        if wire_type == 2:
            if pos >= size:
                raise PubsubError(f"truncated pubsub {what}")
            length = data[pos]
            pos += 1
            if length & 0x80:
                length, pos = _varint(data, pos - 1, what)
            end = pos + length
            if end > size:
                raise PubsubError(f"truncated pubsub {what}: field {number} claims {length} bytes, {size - pos} left")
            fields.append(Field(number, _LEN, bytes(data[pos:end])))
            pos = end
        elif wire_type == 0:
            value, pos = _varint(data, pos, what)
            fields.append(Field(number, _VARINT, value))
        elif wire_type in (1, 5):
            width = 8 if wire_type == 1 else 4
            if pos + width > size:
                raise PubsubError(f"truncated pubsub {what}")
            fields.append(Field(number, WireType(wire_type), int.from_bytes(data[pos : pos + width], "little")))
            pos += width
        else:
            raise PubsubError(f"malformed pubsub {what}: wire type {wire_type}")
    return fields


def _as_bytes(f: Field, what: str) -> bytes:
    if f.wire_type is not _LEN:
        raise PubsubError(f"pubsub {what} is not length-delimited")
    return f.value  # type: ignore[return-value]


def _as_int(f: Field, what: str) -> int:
    if f.wire_type is not _VARINT:
        raise PubsubError(f"pubsub {what} is not a varint")
    return f.value  # type: ignore[return-value]


def _topic(f: Field, limits: RpcLimits) -> str:
    raw = _as_bytes(f, "topic")
    if len(raw) > limits.max_topic_len:
        raise PubsubError(f"pubsub topic of {len(raw)} bytes (limit {limits.max_topic_len})")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise PubsubError("pubsub topic is not UTF-8") from None


def _ids(fields: list[Field], number: int, budget: int, limits: RpcLimits, what: str) -> tuple[tuple[bytes, ...], int]:
    """The message ids of one IHAVE/IWANT/IDONTWANT and what is left of `budget` after them."""
    ids = []
    for f in fields:
        if f.number != number:
            continue
        budget -= 1
        if budget < 0:
            raise PubsubError(f"too many message ids in {what}")
        message_id = _as_bytes(f, f"{what} message id")
        if len(message_id) > limits.max_message_id_len:
            raise PubsubError(f"{what} message id of {len(message_id)} bytes (limit {limits.max_message_id_len})")
        ids.append(message_id)
    return tuple(ids), budget


def _decode_subopts(data: bytes, budget: _Budget) -> SubOpts:
    subscribe, topic = False, ""
    for f in _fields(data, "SubOpts"):
        if f.number == _SUB_SUBSCRIBE:
            subscribe = bool(_as_int(f, "SubOpts.subscribe"))
        elif f.number == _SUB_TOPIC:
            topic = _topic(f, budget.limits)
    return SubOpts(subscribe, topic)


def _decode_message(data: bytes, budget: _Budget) -> Message:
    values: dict[int, bytes] = {}
    topic = ""
    for f in _fields(data, "Message"):
        if f.number == _MSG_TOPIC:
            topic = _topic(f, budget.limits)
        elif _MSG_FROM <= f.number <= _MSG_KEY:
            values[f.number] = _as_bytes(f, f"Message field {f.number}")
    msg = Message(
        topic,
        values.get(_MSG_DATA, b""),
        values.get(_MSG_FROM),
        values.get(_MSG_SEQNO),
        values.get(_MSG_SIGNATURE),
        values.get(_MSG_KEY),
    )
    object.__setattr__(msg, "wire", data)  # the dataclass is frozen; `wire` is set once, here
    return msg


def _decode_ihave(data: bytes, budget: _Budget) -> IHave:
    fields = _fields(data, "IHAVE")
    topic = ""
    for f in fields:
        if f.number == _IHAVE_TOPIC:
            topic = _topic(f, budget.limits)
    ids, budget.ihave_ids = _ids(fields, _IHAVE_IDS, budget.ihave_ids, budget.limits, "IHAVE")
    return IHave(topic, ids)


def _decode_iwant(data: bytes, budget: _Budget) -> IWant:
    ids, budget.iwant_ids = _ids(_fields(data, "IWANT"), _IWANT_IDS, budget.iwant_ids, budget.limits, "IWANT")
    return IWant(ids)


def _decode_idontwant(data: bytes, budget: _Budget) -> IDontWant:
    fields = _fields(data, "IDONTWANT")
    ids, budget.idontwant_ids = _ids(fields, _IDONTWANT_IDS, budget.idontwant_ids, budget.limits, "IDONTWANT")
    return IDontWant(ids)


def _decode_graft(data: bytes, budget: _Budget) -> Graft:
    topic = ""
    for f in _fields(data, "GRAFT"):
        if f.number == _GRAFT_TOPIC:
            topic = _topic(f, budget.limits)
    return Graft(topic)


def _decode_peer_info(data: bytes) -> PeerInfo:
    peer_id = record = None
    for f in _fields(data, "PeerInfo"):
        if f.number == _PEER_ID:
            peer_id = _as_bytes(f, "PeerInfo.peerID")
        elif f.number == _PEER_RECORD:
            record = _as_bytes(f, "PeerInfo.signedPeerRecord")
    return PeerInfo(peer_id, record)


def _decode_prune(data: bytes, budget: _Budget) -> Prune:
    topic, peers, backoff = "", [], None
    for f in _fields(data, "PRUNE"):
        if f.number == _PRUNE_TOPIC:
            topic = _topic(f, budget.limits)
        elif f.number == _PRUNE_PEERS:
            budget.peers -= 1
            if budget.peers < 0:
                raise PubsubError("too many peers in PRUNE")
            peers.append(_decode_peer_info(_as_bytes(f, "PRUNE.peers")))
        elif f.number == _PRUNE_BACKOFF:
            backoff = _as_int(f, "PRUNE.backoff")
    return Prune(topic, tuple(peers), backoff)


_CONTROL_DECODERS: dict[int, Callable[[bytes, _Budget], object]] = {
    _CTL_IHAVE: _decode_ihave,
    _CTL_IWANT: _decode_iwant,
    _CTL_GRAFT: _decode_graft,
    _CTL_PRUNE: _decode_prune,
    _CTL_IDONTWANT: _decode_idontwant,
}


def _decode_control(data: bytes, budget: _Budget) -> ControlMessage:
    lists: dict[int, list] = {number: [] for number in _CONTROL_DECODERS}
    for f in _fields(data, "ControlMessage"):
        decoder = _CONTROL_DECODERS.get(f.number)
        if decoder is None:
            continue
        budget.control -= 1
        if budget.control < 0:
            raise PubsubError("too many control messages in one RPC")
        lists[f.number].append(decoder(_as_bytes(f, f"control field {f.number}"), budget))
    return ControlMessage(*(tuple(lists[n]) for n in sorted(lists)))


def decode_rpc(data: Buffer, limits: RpcLimits = RpcLimits()) -> RPC:
    """The RPC in data; PubsubError when it is malformed or breaks a bound of `limits`."""
    if len(data) > limits.max_rpc_size:
        raise PubsubError(f"pubsub RPC of {len(data)} bytes (limit {limits.max_rpc_size})")
    budget = _Budget(limits)
    subscriptions, publish, control_parts = [], [], []
    for f in _fields(data, "RPC"):
        if f.number == _RPC_SUBSCRIPTIONS:
            budget.subscriptions -= 1
            if budget.subscriptions < 0:
                raise PubsubError("too many subscriptions in one RPC")
            subscriptions.append(_decode_subopts(_as_bytes(f, "RPC.subscriptions"), budget))
        elif f.number == _RPC_PUBLISH:
            budget.messages -= 1
            if budget.messages < 0:
                raise PubsubError("too many messages in one RPC")
            publish.append(_decode_message(_as_bytes(f, "RPC.publish"), budget))
        elif f.number == _RPC_CONTROL:
            control_parts.append(_as_bytes(f, "RPC.control"))
    control = _decode_control(b"".join(control_parts), budget) if control_parts else None
    return RPC(tuple(subscriptions), tuple(publish), control)
