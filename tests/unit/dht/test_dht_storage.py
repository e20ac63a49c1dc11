"""What a DHT node stores: write tokens (BEP 5), peers per info-hash, and BEP 44 items with their signatures (the
BEP 44 test vectors), sequence numbers, CAS and salts."""

from __future__ import annotations

import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peerloom.codec.bencode import encode as bencode
from peerloom.dht import krpc
from peerloom.dht.bep44 import (
    Item,
    immutable_target,
    make_mutable,
    mutable_item,
    mutable_target,
    signed_buffer,
    verify_mutable,
)
from peerloom.dht.storage import (
    PEER_TTL,
    TOKEN_ROTATE,
    ItemError,
    ItemStore,
    PeerStore,
    TokenManager,
)

IH = b"i" * 20


# -- tokens ----------------------------------------------------------------------------------------------------------
def test_tokens_are_valid_for_ten_minutes_and_tied_to_the_ip() -> None:
    tokens = TokenManager(0.0)
    token = tokens.make("1.2.3.4", 0.0)
    assert len(token) == 8
    assert tokens.check(token, "1.2.3.4", 0.0)
    assert not tokens.check(token, "1.2.3.5", 0.0)
    assert not tokens.check(token[:7], "1.2.3.4", 0.0)
    assert tokens.check(token, "1.2.3.4", 2 * TOKEN_ROTATE - 1)  # ~10 min: one rotation later, still good
    assert not tokens.check(token, "1.2.3.4", 2 * TOKEN_ROTATE)  # two rotations: gone


def test_tokens_expire_even_when_nobody_asks_for_a_while() -> None:
    tokens = TokenManager(0.0)
    token = tokens.make("2001:db8::1", 100.0)
    assert not tokens.check(token, "2001:db8::1", 3600.0)
    fresh = tokens.make("2001:db8::1", 3600.0)
    assert fresh != token and tokens.check(fresh, "2001:db8::1", 3601.0)


def test_token_validity_window_is_five_to_ten_minutes_whatever_the_call_pattern() -> None:
    tokens = TokenManager(0.0)
    token = tokens.make("9.9.9.9", 299.0)  # handed out just before a rotation
    tokens.rotate_if_due(550.0)  # a late rotation must not shift the schedule
    assert tokens.check(token, "9.9.9.9", 599.0)
    assert not tokens.check(token, "9.9.9.9", 600.0)


# -- peers -----------------------------------------------------------------------------------------------------------
def test_peer_store_keeps_announces_for_thirty_minutes() -> None:
    store = PeerStore()
    store.announce(IH, ("1.2.3.4", 6881), 0.0)
    store.announce(IH, ("2001:db8::1", 6881), 0.0)
    assert store.get(IH, 10.0) == [("1.2.3.4", 6881)]
    assert store.get(IH, 10.0, v6=True) == [("2001:db8::1", 6881)]
    store.announce(IH, ("1.2.3.4", 6881), 100.0)  # a re-announce refreshes
    assert store.count(IH) == 2
    assert store.get(IH, PEER_TTL + 50.0) == [("1.2.3.4", 6881)]
    assert store.expire(PEER_TTL + 50.0) == 1
    assert store.expire(PEER_TTL + 100.0) == 1
    assert len(store) == 0 and store.get(IH, 0.0) == []


def test_peer_store_is_bounded() -> None:
    store = PeerStore(max_info_hashes=3, max_peers=5)
    for i in range(10):
        store.announce(IH, (f"10.0.0.{i}", 1000 + i), float(i))
    assert store.count(IH) == 5
    assert sorted(store.get(IH, 20.0)) == [(f"10.0.0.{i}", 1000 + i) for i in range(5, 10)]  # the oldest went
    for i in range(5):
        store.announce(bytes([i]) * 20, ("10.0.1.1", 1), 30.0 + i)
    assert len(store) == 3 and store.count(IH) == 0  # the least recently announced swarm went


def test_peer_replies_are_a_random_sample_of_at_most_fifty() -> None:
    store = PeerStore()
    for i in range(150):
        store.announce(IH, (f"10.0.{i // 100}.{i % 100}", 6881), 0.0)
    first = store.get(IH, 1.0, rng=random.Random(1))
    second = store.get(IH, 1.0, rng=random.Random(2))
    assert len(first) == len(set(first)) == 50 and first != second


def test_info_hash_samples() -> None:
    store = PeerStore()
    hashes = [bytes([i]) * 20 for i in range(30)]
    for info_hash in hashes:
        store.announce(info_hash, ("1.1.1.1", 1), 0.0)
    sample = store.sample(20, random.Random(3))
    assert len(sample) == 20 and set(sample) <= set(hashes)
    assert sorted(store.sample(100)) == sorted(hashes)


# -- BEP 44: the spec's test vectors ---------------------------------------------------------------------------------
VECTOR_KEY = bytes.fromhex("77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548")
VECTOR_VALUE = b"12:Hello World!"
VECTOR_SIG = bytes.fromhex(
    "305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff"
    "1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01"
)
VECTOR_SALTED_SIG = bytes.fromhex(
    "6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17d"
    "df9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08"
)
# The vectors give the private key in its 64-byte expanded form, which `cryptography` cannot sign with (it takes the
# 32-byte seed): the vectors are checked by verification, and signing is checked by round trips with our own keys.


def test_bep44_mutable_vector() -> None:
    assert signed_buffer(VECTOR_VALUE, 1) == b"3:seqi1e1:v12:Hello World!"
    assert mutable_target(VECTOR_KEY).hex() == "4a533d47ec9c7d95b1ad75f576cffc641853b750"
    assert verify_mutable(VECTOR_KEY, VECTOR_SIG, VECTOR_VALUE, 1)
    assert not verify_mutable(VECTOR_KEY, VECTOR_SIG, VECTOR_VALUE, 2)
    assert not verify_mutable(VECTOR_KEY, VECTOR_SIG, b"12:Hello World?", 1)


def test_bep44_mutable_vector_with_salt() -> None:
    assert signed_buffer(VECTOR_VALUE, 1, b"foobar") == b"4:salt6:foobar3:seqi1e1:v12:Hello World!"
    assert mutable_target(VECTOR_KEY, b"foobar").hex() == "411eba73b6f087ca51a3795d9c8c938d365e32c1"
    assert verify_mutable(VECTOR_KEY, VECTOR_SALTED_SIG, VECTOR_VALUE, 1, b"foobar")
    assert not verify_mutable(VECTOR_KEY, VECTOR_SALTED_SIG, VECTOR_VALUE, 1)
    assert not verify_mutable(VECTOR_KEY, VECTOR_SIG, VECTOR_VALUE, 1, b"foobar")


def test_bep44_immutable_vector() -> None:
    assert immutable_target(VECTOR_VALUE).hex() == "e5f96f6f38320f0f33959cb4d3d656452117aadb"
    assert Item(VECTOR_VALUE).target == immutable_target(VECTOR_VALUE)


def test_signing_round_trip_and_malformed_keys() -> None:
    seed = bytes(range(32))
    key, sig = make_mutable(seed, bencode([1, b"two"]), 5, b"salt")
    assert verify_mutable(key, sig, bencode([1, b"two"]), 5, b"salt")
    key2, sig2 = make_mutable(Ed25519PrivateKey.from_private_bytes(seed), bencode([1, b"two"]), 5, b"salt")
    assert (key2, sig2) == (key, sig)  # Ed25519 is deterministic
    assert not verify_mutable(key[:31], sig, bencode([1, b"two"]), 5, b"salt")
    assert not verify_mutable(b"\xff" * 32, sig, bencode([1, b"two"]), 5, b"salt")
    with pytest.raises(ValueError):
        make_mutable(seed, b"1:x", -1)
    with pytest.raises(ValueError):
        make_mutable(seed, b"1:x", 1, b"s" * 65)


# -- the item store --------------------------------------------------------------------------------------------------
SEED = bytes(range(1, 33))


def codes(store: ItemStore, item: Item, now: float = 0.0, cas: int | None = None) -> int:
    with pytest.raises(ItemError) as info:
        store.put(item, now, cas=cas)
    return info.value.code


def test_immutable_put_and_get() -> None:
    store = ItemStore()
    target = store.put(Item(VECTOR_VALUE), 0.0)
    assert target == immutable_target(VECTOR_VALUE)
    assert store.get(target, 1.0) == Item(VECTOR_VALUE)
    assert codes(store, Item(b"%d:" % 1001 + b"x" * 1001)) == krpc.ERROR_VALUE_TOO_BIG


def test_mutable_put_follows_seq_and_cas() -> None:
    store = ItemStore()
    v1 = mutable_item(SEED, b"5:first", 1)
    target = store.put(v1, 0.0)
    assert target == mutable_target(v1.key or b"") and store.get(target, 0.0) == v1
    assert store.put(v1, 10.0) == target  # the same item again refreshes it
    v2 = mutable_item(SEED, b"6:second", 2)
    assert codes(store, v2, cas=5) == krpc.ERROR_CAS_MISMATCH
    store.put(v2, 20.0, cas=1)
    assert store.get(target, 20.0) == v2
    assert codes(store, v1) == krpc.ERROR_SEQ_TOO_LOW  # no downgrade
    assert codes(store, mutable_item(SEED, b"5:other", 2)) == krpc.ERROR_SEQ_TOO_LOW  # same seq, new value


def test_salted_items_live_apart() -> None:
    store = ItemStore()
    plain = mutable_item(SEED, b"1:a", 1)
    salted = mutable_item(SEED, b"1:b", 1, b"foobar")
    assert store.put(plain, 0.0) != store.put(salted, 0.0)
    assert store.get(salted.target, 0.0) == salted and len(store) == 2
    long_salt = Item(value=b"1:c", key=plain.key, signature=plain.signature, seq=1, salt=b"s" * 65)
    assert codes(store, long_salt) == krpc.ERROR_SALT_TOO_BIG


def test_bad_signatures_are_refused() -> None:
    store = ItemStore()
    good = mutable_item(SEED, b"1:a", 1)
    forged = Item(value=b"1:b", key=good.key, signature=good.signature, seq=1)
    assert codes(store, forged) == krpc.ERROR_BAD_SIGNATURE
    vector = Item(value=VECTOR_VALUE, key=VECTOR_KEY, signature=VECTOR_SIG, seq=1)
    assert store.put(vector, 0.0).hex() == "4a533d47ec9c7d95b1ad75f576cffc641853b750"
    salted_vector = Item(value=VECTOR_VALUE, key=VECTOR_KEY, signature=VECTOR_SALTED_SIG, seq=1, salt=b"foobar")
    assert store.put(salted_vector, 0.0).hex() == "411eba73b6f087ca51a3795d9c8c938d365e32c1"
    assert codes(store, Item(value=b"1:a", key=good.key, signature=None, seq=1)) == krpc.ERROR_PROTOCOL


def test_items_expire_and_are_bounded() -> None:
    store = ItemStore(max_items=3, ttl=100.0)
    targets = [store.put(Item(b"i%de" % i), float(i)) for i in range(5)]
    assert len(store) == 3 and store.get(targets[0], 5.0) is None and store.get(targets[4], 5.0) is not None
    assert store.get(targets[4], 104.0) is None
    assert store.expire(104.0) == 3 and len(store) == 0
