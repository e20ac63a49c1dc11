"""The sans-I/O sync of documents: the frames of /peerloom/doc/1.0.0, the awareness relay, and `DocSync` between
replicas wired by hand (catch-up, live updates, forwarding, pending out-of-order updates, refusals, re-sync)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pycrdt import Doc, Text

from peerloom.apps.docs.awareness import (
    AwarenessEntry,
    AwarenessError,
    AwarenessRelay,
    encode_awareness,
    parse_awareness,
)
from peerloom.apps.docs.held import DocCatalog, HeldDoc
from peerloom.apps.docs.keys import GRANT_SIZE, DocKeys
from peerloom.apps.docs.store import DocStore
from peerloom.apps.docs.sync import RESYNC_INTERVAL, Applied, CaughtUp, DocSync, Refused, Send
from peerloom.apps.docs.syncproto import (
    AwarenessMessage,
    GrantMessage,
    SyncMessageError,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_message,
)
from peerloom.apps.docs.updates import SeenSequences, WriterRefused, seal
from peerloom.codec.varint import read_frame
from peerloom.state import State


def test_messages_round_trip_and_malformed_ones_are_refused() -> None:
    seen = SeenSequences(5)
    seen.above.update({7, 9})
    messages = [SyncStep1({bytes(32): seen, b"\x01" * 32: SeenSequences()}), SyncStep2(b""), SyncStep2(b"env"),
                SyncUpdate(b"env"), AwarenessMessage(b"\x00"), GrantMessage(bytes(GRANT_SIZE))]
    for message in messages:
        decoded = decode_message(encode_message(message))
        if isinstance(message, SyncStep1):
            assert isinstance(decoded, SyncStep1)
            assert {w: (s.floor, s.above) for w, s in decoded.have.items()} == \
                {w: (s.floor, s.above) for w, s in message.have.items()}
        else:
            assert decoded == message
    assert encode_message(SyncUpdate(b"u")) == b"\x00\x02\x01u"  # y-protocols: messageSync, messageYjsUpdate
    for bad in (b"", b"\x05", b"\x00\x07\x00", b"\x00\x02\x00", b"\x00\x02\x05ab", b"\x00\x02\x01ab",
                b"\x08\x01\x00", b"\x00\x00\x02\xff\x7f", b"\x00\x00\x01\x02" + b"\x00" * 0):
        with pytest.raises(SyncMessageError):
            decode_message(bad)
    with pytest.raises(SyncMessageError):  # a have vector claiming more writers than bytes
        decode_message(b"\x00\x00\x03\x90\x4e\x00")


def test_awareness_relay_forwards_only_newer_entries_and_refuses_garbage() -> None:
    relay = AwarenessRelay()
    first = encode_awareness([AwarenessEntry(1, 1, '{"name":"ana"}'), AwarenessEntry(2, 4, '{"c":[1,2]}')])
    assert parse_awareness(relay.accept(first, 0.0) or b"") == parse_awareness(first)
    assert relay.accept(first, 1.0) is None  # the echo of a mesh dies out
    newer = encode_awareness([AwarenessEntry(1, 2, '{"name":"ana"}'), AwarenessEntry(2, 4, '{"c":[1,2]}')])
    assert parse_awareness(relay.accept(newer, 2.0) or b"") == [AwarenessEntry(1, 2, '{"name":"ana"}')]
    gone = encode_awareness([AwarenessEntry(1, 2, "null")])  # same clock, removal wins
    assert relay.accept(gone, 3.0) == gone
    for bad in (b"", b"\x01\x01\x01\x05{}", b"\x01\x01\x01\x02{", b"\x01\x01\x01\x01x", b"\x7f\x00"):
        with pytest.raises(AwarenessError):
            relay.accept(bad, 4.0)
    relay.expire(1000.0)
    assert relay.clients == {}


class Net:
    """Replicas wired by hand: `pump` carries every Send to its peer's DocSync until nothing moves."""

    def __init__(self, tmp: Path, keys_by_name: dict[str, DocKeys]) -> None:
        self.syncs: dict[str, DocSync] = {}
        self.held: dict[str, HeldDoc] = {}
        self.events: dict[str, list[object]] = {}
        self.dropped: set[tuple[str, str]] = set()
        for name, keys in keys_by_name.items():
            store = DocStore(State(tmp / f"{name}.sqlite"))
            catalog = DocCatalog(store)
            held = HeldDoc(catalog, store, catalog.put(keys, None, 0.0))
            self.held[name], self.syncs[name], self.events[name] = held, DocSync(held), []

    def connect(self, a: str, b: str, now: float = 0.0) -> None:
        self.syncs[a].add_peer(b, now)
        self.syncs[b].add_peer(a, now)

    def pump(self, now: float = 0.0) -> None:
        moved = True
        while moved:
            moved = False
            for name, sync in self.syncs.items():
                sync.settle(now)
                for event in sync.take_events():
                    if isinstance(event, Send):
                        moved = True
                        if (name, str(event.peer)) in self.dropped:
                            continue
                        pos = 0
                        while (frame := read_frame(event.data, 1 << 21, pos)) is not None:
                            body, pos = frame
                            self.syncs[str(event.peer)].receive(name, body, now)
                    else:
                        self.events[name].append(event)

    def text(self, name: str) -> str:
        doc = self.held[name].doc
        assert doc is not None
        return str(doc.get("t", type=Text))

    def write(self, name: str, word: str) -> None:
        def change(doc: Doc) -> None:
            text = doc.get("t", type=Text)
            text.insert(len(text), word)
        result = self.held[name].edit(change)
        assert result is not None
        self.syncs[name].publish(result[0])


def test_catch_up_live_updates_forwarding_and_a_lost_message_healed_by_resync(tmp_path: Path) -> None:
    keys, _ = DocKeys.new()
    net = Net(tmp_path, {"a": keys, "b": keys, "c": keys.reader()})
    net.write("a", "one ")
    net.write("b", "two ")
    net.connect("a", "b")
    net.pump()
    assert net.text("a") == net.text("b") and sorted(net.text("a").split()) == ["one", "two"]
    assert any(isinstance(e, CaughtUp) for e in net.events["a"])
    net.connect("b", "c")  # c hears a's edits through b
    net.pump()
    net.write("a", "three ")
    net.pump()
    assert net.text("c") == net.text("a") and "three" in net.text("c")
    net.dropped.add(("a", "b"))  # a's next update is lost on the way to b
    net.write("a", "four ")
    net.pump()
    assert "four" not in net.text("b")
    net.dropped.clear()
    for sync in net.syncs.values():
        sync.tick(RESYNC_INTERVAL + 1)
    net.pump(RESYNC_INTERVAL + 1)
    assert net.text("b") == net.text("a") == net.text("c") and "four" in net.text("b")
    assert all(isinstance(e, Applied | CaughtUp) for events in net.events.values() for e in events)


def test_an_update_that_overtakes_its_dependency_waits_then_applies(tmp_path: Path) -> None:
    keys, _ = DocKeys.new()
    net = Net(tmp_path, {"a": keys, "b": keys})
    first = net.held["a"].edit(lambda doc: doc.get("t", type=Text).insert(0, "first"))
    second = net.held["a"].edit(lambda doc: doc.get("t", type=Text).insert(5, " second"))
    assert first is not None and second is not None
    sync_b = net.syncs["b"]
    sync_b.add_peer("a", 0.0)
    (grant,) = net.held["a"].grants()  # a signs with its own device key, granted by the document key
    sync_b.receive("a", encode_message(GrantMessage(grant)), 0.0)
    sync_b.receive("a", encode_message(SyncUpdate(second[0])), 0.0)
    assert net.text("b") == "" and sync_b.counters["pending"] == 1
    sync_b.receive("a", encode_message(SyncUpdate(first[0])), 0.0)
    sync_b.settle(0.0)
    assert net.text("b") == "first second"
    assert sum(isinstance(e, Applied) for e in sync_b.take_events()) == 2


def test_an_update_from_a_key_without_a_grant_is_refused_and_never_stored(tmp_path: Path) -> None:
    keys, _ = DocKeys.new()
    net = Net(tmp_path, {"b": keys.reader()})
    intruder = DocKeys(keys.doc_id, keys.read_key, Ed25519PrivateKey.generate())
    update = Doc()
    update.get("t", type=Text).insert(0, "forged")
    sync_b = net.syncs["b"]
    sync_b.add_peer("x", 0.0)
    sync_b.receive("x", encode_message(SyncUpdate(seal(intruder, 0, update.get_update()))), 0.0)
    refused = [e for e in sync_b.take_events() if isinstance(e, Refused)]
    assert len(refused) == 1 and isinstance(refused[0].error, WriterRefused)
    assert net.held["b"].store.load(keys.doc_id).updates == [] and net.text("b") == ""
    assert net.held["b"].missing_for({}) == []


def test_a_peer_catches_up_from_a_compacted_log_through_its_snapshot(tmp_path: Path) -> None:
    keys, _ = DocKeys.new()
    net = Net(tmp_path, {"a": keys, "b": keys.reader(), "c": keys.reader()})
    store = net.held["a"].store
    catalog = DocCatalog(store)
    net.held["a"] = held_a = HeldDoc(catalog, store, catalog.put(keys, None, 0.0), compact_after=5)
    net.syncs["a"] = DocSync(held_a)
    net.connect("a", "c")
    net.write("a", "early ")  # c sees this one before the log is compacted
    net.pump()
    for i in range(11):
        net.write("a", f"w{i} ")
    stored = store.load(keys.doc_id)
    assert stored.snapshot is not None and len(stored.updates) < 12  # compacted at least once
    net.connect("a", "b")  # b has nothing: the snapshot and the log rows after it
    net.pump()
    assert net.text("b") == net.text("a") == net.text("c") and "w10" in net.text("b")
    assert held_a.missing_for(net.held["b"].have()) == []  # nothing is sent again on the next re-sync
