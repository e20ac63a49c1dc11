"""A torrent's extension exchanges with its peers: the metadata of magnet links (BEP 9), v2 piece
layers (BEP 52 hash requests) and peer exchange (BEP 11). A mixin of `Torrent`, split out by concern."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from peerloom.errors import ProtocolError
from peerloom.torrent import extensions as ext
from peerloom.torrent import wire
from peerloom.torrent.hashes import answer_hash_request
from peerloom.torrent.metainfo import Metainfo, MetainfoError

if TYPE_CHECKING:
    from peerloom.torrent.peer import PeerConnection

log = logging.getLogger(__name__)


class ExchangeMixin:
    def _ext_handshake(self) -> ext.ExtHandshake:
        ids = dict(ext.LOCAL_IDS)
        if self.private:
            ids.pop("ut_pex", None)
        return ext.ExtHandshake(
            ids=ids,
            client=self.engine.client_name,
            port=self.engine.port,
            reqq=1000,
            metadata_size=len(self.meta.info_bytes) if self.meta else None,
        )

    def _on_extended(self, peer: PeerConnection, m: wire.Extended) -> None:
        if m.ext_id == 0:
            # at any time, any number of times (BEP 10): a later handshake updates the earlier one
            h = peer.ext_handshake = ext.update_ext_handshake(peer.ext_handshake, ext.parse_ext_handshake(m.payload))
            peer.ext_ids = dict(h.ids)
            peer.client = (h.client or "")[:64]
            if h.port and peer.remote and not peer.outgoing and peer.secure_key is None:
                peer.address = (peer.remote[0], h.port)
            if self.meta is None and h.metadata_size and "ut_metadata" in peer.ext_ids:
                if self.assembler is None:
                    self.assembler = ext.MetadataAssembler(
                        info_hash_v1=self.info_hash_v1, info_hash_v2=self.info_hash_v2
                    )
                try:
                    self.assembler.set_size(h.metadata_size)
                except ext.ExtensionError as exc:
                    peer.close(f"bad metadata size: {exc}")
                    return
                self._request_metadata(peer)
        elif m.ext_id == ext.LOCAL_IDS["ut_metadata"]:
            self._on_metadata(peer, ext.parse_metadata(m.payload))
        elif m.ext_id == ext.LOCAL_IDS.get("ut_pex") and not self.private:
            pex = ext.parse_pex(m.payload)
            self.add_peers(pex.added)

    def _request_metadata(self, peer: PeerConnection) -> None:
        assembler = self.assembler
        while assembler is not None and len(peer.metadata_requests) < 4:
            piece = assembler.next_request()
            if piece is None:
                return
            peer.metadata_requests.add(piece)
            peer.send_extended("ut_metadata", ext.encode_metadata(ext.MetadataRequest(piece)))

    def _on_metadata(self, peer: PeerConnection, msg: Any) -> None:
        if isinstance(msg, ext.MetadataRequest):
            info = self.meta.info_bytes if self.meta else None
            if info is None or msg.piece * ext.METADATA_PIECE >= len(info):
                peer.send_extended("ut_metadata", ext.encode_metadata(ext.MetadataReject(msg.piece)))
            else:
                chunk = info[msg.piece * ext.METADATA_PIECE : (msg.piece + 1) * ext.METADATA_PIECE]
                peer.send_extended("ut_metadata", ext.encode_metadata(ext.MetadataData(msg.piece, len(info), chunk)))
            return
        assembler = self.assembler
        if assembler is None or self.meta is not None:
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
            self._request_metadata(peer)
            return
        try:
            assert self.magnet is not None
            meta = Metainfo.from_info(info, trackers=tuple((t,) for t in self.magnet.trackers))
        except MetainfoError as exc:
            self._fail(f"the torrent's metadata is invalid: {exc}")
            return
        self._metadata_received(meta)

    def _metadata_received(self, meta: Metainfo) -> None:
        if self.selected is None and self.magnet is not None and self.magnet.select_only is not None:
            self.selected = [i for i in range(len(meta.data_files)) if self.magnet.selects(i)]
        self._setup(meta)
        # a magnet may carry one hash of a hybrid: the other now routes peers too (BEP 52), and answers upgrades
        self.info_hash_v1 = self.info_hash_v1 or meta.info_hash_v1
        self.info_hash_v2 = self.info_hash_v2 or meta.info_hash_v2
        assert self.picker is not None
        for peer in list(self.peers):
            try:
                peer.holdings.metadata_known(self.picker)  # what it announced before we knew the piece count
            except ProtocolError as exc:
                peer.close(f"protocol error: {exc}")
        self.engine.metadata_received(self)

    def _request_layers(self, peer: PeerConnection) -> None:
        if peer.no_hashes or not (peer.handshake and (peer.handshake.supports_v2 or self.info_hash_v1 is None)):
            return
        for fetch in self.missing_layers.values():
            while sum(1 for who in fetch.asked.values() if who is peer) < 4:
                req = fetch.request_for(peer)
                if req is None:
                    break
                peer.send_message(req)

    def _on_hash_request(self, peer: PeerConnection, m: wire.HashRequest) -> None:
        reply = None
        if self.meta is not None and self.verifier is not None:
            reply = answer_hash_request(m, self.verifier.layers.get(m.pieces_root), self.meta.piece_length)
        peer.send_message(reply or wire.HashReject(m.pieces_root, m.base_layer, m.index, m.length, m.proof_layers))

    def _on_hashes(self, peer: PeerConnection, m: wire.Hashes) -> None:
        fetch = self.missing_layers.get(m.pieces_root)
        if fetch is None:
            return
        try:
            layer = fetch.receive(peer, m)
        except ValueError as exc:
            self._strike(peer, f"bad piece layer: {exc}")
            return
        if layer is None:
            self._request_layers(peer)
            return
        assert self.verifier is not None and self.meta is not None
        self.verifier.layers[m.pieces_root] = layer
        del self.missing_layers[m.pieces_root]
        if not self.missing_layers:
            self.meta = replace(self.meta, piece_layers=dict(self.verifier.layers))
            self.save_resume(clean=False)
            for other in self.peers:
                self.after_messages(other)

    def _on_hash_reject(self, peer: PeerConnection, m: wire.HashReject) -> None:
        peer.no_hashes = True
        for fetch in self.missing_layers.values():
            fetch.release(peer)
        for other in self.peers:
            if other is not peer:
                self._request_layers(other)

    def _send_pex(self, now: float) -> None:
        """Tell each peer that speaks ut_pex which connectable peers we gained and lost (BEP 11): the first
        message as soon as there is someone to tell of (so a new swarm starts trading among its leechers
        within seconds, as libtorrent does), then at most one a `pex_interval` per peer."""
        listening: dict | None = None
        interval = self.settings.pex_interval
        for peer in self.peers:
            if "ut_pex" not in peer.ext_ids or now - peer.pex.last_sent < interval:
                continue
            if listening is None:
                listening = {
                    p.address: (ext.PEX_SEED if p.is_seed else 0) | (ext.PEX_REACHABLE if p.outgoing else 0)
                    for p in self.peers
                    if p.address is not None
                }
            msg = peer.pex.update(listening.keys() - {peer.address}, listening)
            if msg is not None:
                peer.pex.last_sent = now
                peer.send_extended("ut_pex", ext.encode_pex(msg))
