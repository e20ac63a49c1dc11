"""A torrent's extension exchanges with its peers: the metadata of magnet links (BEP 9), v2 piece layers (BEP 52
hash requests), peer exchange (BEP 11) and hole punching (BEP 55, over uTP). `Exchange` is a part of `Torrent`: it
owns the metadata being assembled and the piece layers being fetched, and reads and tells the torrent through
`ExchangeHost`."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from peerloom.codec.compact import packed_ip
from peerloom.torrent import extensions as ext
from peerloom.torrent import holepunch as hp
from peerloom.torrent import wire
from peerloom.torrent.hashes import LayerFetch, answer_hash_request
from peerloom.torrent.metainfo import Metainfo, MetainfoError

if TYPE_CHECKING:
    from peerloom.torrent.context import SwarmContext
    from peerloom.torrent.magnet import Magnet
    from peerloom.torrent.peer import PeerConnection
    from peerloom.torrent.storage import PieceVerifier

log = logging.getLogger(__name__)


class ExchangeHost(Protocol):
    """What the exchanges read of their torrent, and what they tell it."""

    meta: Metainfo | None
    magnet: Magnet | None
    info_hash_v1: bytes | None
    info_hash_v2: bytes | None
    private: bool
    verifier: PieceVerifier | None
    peers: list[PeerConnection]

    def add_peers(self, addresses: list[Any]) -> None: ...
    def metadata_received(self, meta: Metainfo) -> None: ...
    def piece_layers_received(self, layers: dict[bytes, bytes]) -> None: ...
    def fail(self, message: str) -> None: ...
    def punch(self, address: tuple[str, int]) -> None: ...  # dial over uTP now: a relay asked both sides to (BEP 55)
    def strike(self, peer: PeerConnection, reason: str) -> None: ...


class Exchange:
    def __init__(self, context: SwarmContext, torrent: ExchangeHost) -> None:
        self.context = context
        self.torrent = torrent
        self.assembler: ext.MetadataAssembler | None = None  # a magnet's metadata, piece by piece (BEP 9)
        self.missing_layers: dict[bytes, LayerFetch] = {}  # v2 piece layers still to fetch, by pieces root
        self.holepunch: hp.HolepunchState[PeerConnection] = hp.HolepunchState()  # BEP 55: introductions

    def metadata_known(self, meta: Metainfo) -> None:
        """The torrent has its metadata: a v2-only torrent's multi-piece files need their piece layers, unless the
        torrent file carried them."""
        self.missing_layers = {}
        if meta.pieces_v1 is None:
            self.missing_layers = {
                f.pieces_root: LayerFetch(f.pieces_root, -(-f.length // meta.piece_length), meta.piece_length)
                for f in meta.files
                if f.pieces_root and f.length > meta.piece_length and f.pieces_root not in meta.piece_layers
            }

    def peer_lost(self, peer: PeerConnection) -> None:
        """Whatever the peer was asked for is free to ask of others."""
        for fetch in self.missing_layers.values():
            fetch.release(peer)
        if self.assembler is not None:
            for piece in peer.metadata_requests:
                self.assembler.release(piece)
        peer.metadata_requests.clear()
        self.holepunch.forget_source(peer)

    def ext_handshake(self, peer: PeerConnection) -> ext.ExtHandshake:
        """Our BEP 10 handshake to `peer`: with `yourip` (its address as we see it) over plain TCP, and `ipv6` (our
        IPv6 address, when we take IPv6 peers) so that a peer met over IPv4 learns where else we are."""
        ids = dict(ext.LOCAL_IDS)
        if self.torrent.private:
            ids.pop("ut_pex", None)
        if self.torrent.private or not self.context.utp_running:
            ids.pop(hp.EXTENSION, None)  # punching needs uTP, and a private torrent takes no introductions
        plain = peer.remote is not None and peer.secure_key is None
        ipv6 = self.context.ipv6_address
        return ext.ExtHandshake(
            ids=ids,
            client=self.context.client_name,
            port=self.context.port,
            reqq=1000,
            metadata_size=len(self.torrent.meta.info_bytes) if self.torrent.meta else None,
            yourip=packed_ip(peer.remote[0]) if plain and peer.remote is not None else None,
            ipv6=packed_ip(ipv6) if plain and ipv6 is not None else None,
        )

    def on_extended(self, peer: PeerConnection, m: wire.Extended) -> None:
        if m.ext_id == 0:
            # at any time, any number of times (BEP 10): a later handshake updates the earlier one
            h = peer.ext_handshake = ext.update_ext_handshake(peer.ext_handshake, ext.parse_ext_handshake(m.payload))
            peer.ext_ids = dict(h.ids)
            peer.client = (h.client or "")[:64]
            if h.port and peer.remote and not peer.outgoing and peer.secure_key is None:
                peer.address = (peer.remote[0], h.port)
            if self.torrent.meta is None and h.metadata_size and "ut_metadata" in peer.ext_ids:
                if self.assembler is None:
                    self.assembler = ext.MetadataAssembler(
                        info_hash_v1=self.torrent.info_hash_v1, info_hash_v2=self.torrent.info_hash_v2
                    )
                try:
                    self.assembler.set_size(h.metadata_size)
                except ext.ExtensionError as exc:
                    peer.close(f"bad metadata size: {exc}")
                    return
                self.request_metadata(peer)
        elif m.ext_id == ext.LOCAL_IDS["ut_metadata"]:
            self._on_metadata(peer, ext.parse_metadata(m.payload))
        elif m.ext_id == ext.LOCAL_IDS.get("ut_pex") and not self.torrent.private:
            pex = ext.parse_pex(m.payload)
            relay = hp.EXTENSION in peer.ext_ids
            for address, flags in zip(pex.added, pex.added_flags, strict=False):
                if flags & ext.PEX_UTP:
                    self.context.peer_speaks_utp(address)  # dialled over uTP first, as libtorrent does
                if relay and flags & hp.PEX_HOLEPUNCH:
                    self.holepunch.learned(address, peer)  # it can introduce us if we cannot reach them
            self.torrent.add_peers(pex.added)
        elif m.ext_id == ext.LOCAL_IDS.get(hp.EXTENSION) and not self.torrent.private:
            self._on_holepunch(peer, hp.parse_holepunch(m.payload), time.monotonic())

    # -- BEP 55 hole punching ----------------------------------------------------------------------------------
    def dial_failed(self, address: tuple[str, int], now: float) -> None:
        """We could not reach `address`: ask the peer that told us of it to introduce us (a rendezvous)."""
        asked = self.holepunch.rendezvous_for(address, now)
        if asked is None:
            return
        relay, payload = asked
        if relay in self.torrent.peers and hp.EXTENSION in relay.ext_ids:
            relay.send_extended(hp.EXTENSION, payload)

    def _on_holepunch(self, peer: PeerConnection, msg: hp.Holepunch, now: float) -> None:
        if msg.msg_type is hp.MsgType.RENDEZVOUS:
            target_key = hp.canonical(msg.address)
            target = next((p for p in self.torrent.peers
                           if p.address is not None and hp.canonical(p.address) == target_key), None)
            to_initiator, to_target = hp.relay_answer(
                peer.address,
                msg.address,
                None if target is None else hp.EXTENSION in target.ext_ids,
                self.context.is_self(msg.address),
            )
            if to_target is not None and target is not None:
                self.holepunch.relayed += 1
                target.send_extended(hp.EXTENSION, to_target)
            if to_initiator is not None:
                peer.send_extended(hp.EXTENSION, to_initiator)
        elif msg.msg_type is hp.MsgType.CONNECT:
            key = hp.canonical(msg.address)
            if any(p.address is not None and hp.canonical(p.address) == key for p in self.torrent.peers):
                return  # already connected: nothing to punch
            if self.holepunch.may_punch(msg.address, now):
                self.torrent.punch(key)
        else:
            self.holepunch.errors_received += 1
            log.debug("%s cannot introduce us to %s: error %d", peer.address, msg.address, msg.error)

    def request_metadata(self, peer: PeerConnection) -> None:
        assembler = self.assembler
        while assembler is not None and len(peer.metadata_requests) < 4:
            piece = assembler.next_request()
            if piece is None:
                return
            peer.metadata_requests.add(piece)
            peer.send_extended("ut_metadata", ext.encode_metadata(ext.MetadataRequest(piece)))

    def _on_metadata(self, peer: PeerConnection, msg: Any) -> None:
        if isinstance(msg, ext.MetadataRequest):
            info = self.torrent.meta.info_bytes if self.torrent.meta else None
            if info is None or msg.piece * ext.METADATA_PIECE >= len(info):
                peer.send_extended("ut_metadata", ext.encode_metadata(ext.MetadataReject(msg.piece)))
            else:
                chunk = info[msg.piece * ext.METADATA_PIECE : (msg.piece + 1) * ext.METADATA_PIECE]
                peer.send_extended("ut_metadata", ext.encode_metadata(ext.MetadataData(msg.piece, len(info), chunk)))
            return
        assembler = self.assembler
        if assembler is None or self.torrent.meta is not None:
            return
        peer.metadata_requests.discard(msg.piece)
        if isinstance(msg, ext.MetadataReject):
            assembler.release(msg.piece)
            return
        try:
            info = assembler.receive(msg.piece, msg.data)
        except ext.ExtensionError as exc:
            peer.close(f"bad metadata: {exc}")
            return
        if info is None:
            self.request_metadata(peer)
            return
        try:
            assert self.torrent.magnet is not None
            meta = Metainfo.from_info(info, trackers=tuple((t,) for t in self.torrent.magnet.trackers))
        except MetainfoError as exc:
            self.torrent.fail(f"the torrent's metadata is invalid: {exc}")
            return
        self.torrent.metadata_received(meta)

    def request_layers(self, peer: PeerConnection) -> None:
        if peer.no_hashes or not (peer.handshake and (peer.handshake.supports_v2 or self.torrent.info_hash_v1 is None)):
            return
        for fetch in self.missing_layers.values():
            while sum(1 for who in fetch.asked.values() if who is peer) < 4:
                req = fetch.request_for(peer)
                if req is None:
                    break
                peer.send_message(req)

    def on_hash_request(self, peer: PeerConnection, m: wire.HashRequest) -> None:
        reply = None
        meta, verifier = self.torrent.meta, self.torrent.verifier
        if meta is not None and verifier is not None:
            reply = answer_hash_request(m, verifier.layers.get(m.pieces_root), meta.piece_length)
        peer.send_message(reply or wire.HashReject(m.pieces_root, m.base_layer, m.index, m.length, m.proof_layers))

    def on_hashes(self, peer: PeerConnection, m: wire.Hashes) -> None:
        fetch = self.missing_layers.get(m.pieces_root)
        if fetch is None:
            return
        try:
            layer = fetch.receive(peer, m)
        except ValueError as exc:
            self.torrent.strike(peer, f"bad piece layer: {exc}")
            return
        if layer is None:
            self.request_layers(peer)
            return
        verifier = self.torrent.verifier
        assert verifier is not None
        verifier.layers[m.pieces_root] = layer
        del self.missing_layers[m.pieces_root]
        if not self.missing_layers:
            self.torrent.piece_layers_received(dict(verifier.layers))

    def on_hash_reject(self, peer: PeerConnection, m: wire.HashReject) -> None:
        peer.no_hashes = True
        for fetch in self.missing_layers.values():
            fetch.release(peer)
        for other in self.torrent.peers:
            if other is not peer:
                self.request_layers(other)

    def send_pex(self, now: float) -> None:
        """Tell each peer that speaks ut_pex which connectable peers we gained and lost (BEP 11): the first
        message as soon as there is someone to tell of (so a new swarm starts trading among its leechers
        within seconds, as libtorrent does), then at most one a `pex_interval` per peer."""
        listening: dict | None = None
        interval = self.context.settings.pex_interval
        for peer in self.torrent.peers:
            if "ut_pex" not in peer.ext_ids or now - peer.pex.last_sent < interval:
                continue
            if listening is None:
                listening = {
                    p.address: (ext.PEX_SEED if p.is_seed else 0) | (ext.PEX_REACHABLE if p.outgoing else 0)
                    | (ext.PEX_UTP if p.transport.get_extra_info("utp") else 0)
                    | (hp.PEX_HOLEPUNCH if hp.EXTENSION in p.ext_ids else 0)
                    for p in self.torrent.peers
                    if p.address is not None
                }
            msg = peer.pex.update(listening.keys() - {peer.address}, listening)
            if msg is not None:
                peer.pex.last_sent = now
                peer.send_extended("ut_pex", ext.encode_pex(msg))
