"""MSE/PE handshake (torrent/mse.py): both roles against each other, a byte vector computed independently (hashlib and
a pure-Python RC4 here), the bounds of the sync searches and pads, and garbage raising MseError."""

from __future__ import annotations

import hashlib

import pytest

from peerloom.torrent import mse
from peerloom.torrent.mse import PLAINTEXT, RC4, MseError, MseHandshake

INFO_HASH = bytes(range(20))
OTHER_HASH = b"\xaa" * 20
HANDSHAKE = b"\x13BitTorrent protocol" + bytes(8) + INFO_HASH + b"-PL0100-" + bytes(12)


def _find(*hashes: bytes):
    table = {mse.skey_hash(h): h for h in hashes}
    return table.get


def pair(
    provide: int = PLAINTEXT | RC4, accept: int = PLAINTEXT | RC4, ia: bytes = HANDSHAKE, **kw: object
) -> tuple[MseHandshake, MseHandshake]:
    a = MseHandshake(outgoing=True, skey=INFO_HASH, provide=provide, initial_payload=lambda: ia, **kw)  # type: ignore[arg-type]
    b = MseHandshake(outgoing=False, find_skey=_find(OTHER_HASH, INFO_HASH), accept=accept, **kw)  # type: ignore[arg-type]
    return a, b


def run(a: MseHandshake, b: MseHandshake, piece: int = 1 << 20) -> None:
    """Shuttle bytes both ways, `piece` bytes at a time, until both are established."""
    to_b, to_a = bytearray(a.start()), bytearray(b.start())
    for _ in range(10_000):
        if a.established and b.established:
            return
        if to_b and not b.established:
            to_a += b.receive(bytes(to_b[:piece]))
            del to_b[:piece]
        if to_a and not a.established:
            to_b += a.receive(bytes(to_a[:piece]))
            del to_a[:piece]
    raise AssertionError("the handshake did not finish")


@pytest.mark.parametrize("piece", [1, 7, 1 << 20])
def test_both_roles_agree_on_rc4_and_carry_the_handshake_as_initial_payload(piece: int) -> None:
    a, b = pair()
    run(a, b, piece)
    assert a.established and b.established
    assert a.established.method == b.established.method == RC4
    assert b.established.payload == HANDSHAKE and a.established.payload == b""
    assert a.established.encrypt and b.established.decrypt and b.established.encrypt and a.established.decrypt
    wire = a.established.encrypt.update(b"piece data")
    assert wire != b"piece data" and b.established.decrypt.update(wire) == b"piece data"
    back = bytearray(b.established.encrypt.update(b"reply"))
    a.established.decrypt.update_in_place(back)
    assert back == b"reply"


def test_plaintext_is_selected_when_one_side_allows_only_plaintext() -> None:
    for provide, accept in ((PLAINTEXT, PLAINTEXT | RC4), (PLAINTEXT | RC4, PLAINTEXT)):
        a, b = pair(provide, accept)
        run(a, b)
        assert a.established and b.established
        assert a.established.method == b.established.method == PLAINTEXT
        assert a.established.encrypt is None and b.established.decrypt is None
        assert b.established.payload == HANDSHAKE  # IA is RC4 even so (the spec's ENCRYPT(IA))


def test_nothing_in_common_is_refused() -> None:
    a, b = pair(provide=PLAINTEXT, accept=RC4)
    with pytest.raises(MseError, match="nothing we accept"):
        run(a, b)


def test_payload_that_follows_the_handshake_in_the_same_read_is_decrypted() -> None:
    a, b = pair()
    m1 = a.start()
    m2 = b.receive(m1)
    m3 = a.receive(m2)
    assert a.established is None
    m4 = b.receive(m3)
    assert b.established is not None and b.established.encrypt is not None
    m4 += b.established.encrypt.update(b"bitfield!")
    a.receive(m4)
    assert a.established is not None and a.established.payload == b"bitfield!"


def test_incoming_finds_the_torrent_among_several_and_refuses_an_unknown_one() -> None:
    a = MseHandshake(outgoing=True, skey=b"\x01" * 20, initial_payload=bytes)
    b = MseHandshake(outgoing=False, find_skey=_find(INFO_HASH, OTHER_HASH))
    with pytest.raises(MseError, match="unknown info-hash"):
        run(a, b)


def _rc4_drop1024(key: bytes, n: int) -> bytes:
    """A pure-Python RC4 (the textbook KSA and PRGA), as an independent check of the library's."""
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for _ in range(1024 + n):
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(s[(s[i] + s[j]) % 256])
    return bytes(out[1024:])


def test_message_3_matches_a_vector_computed_from_the_specification() -> None:
    xa, xb = 0x1234567890ABCDEF1234567890ABCDEF12345678, 0xFEDCBA0987654321FEDCBA0987654321FEDCBA09
    a = MseHandshake(outgoing=True, skey=INFO_HASH, initial_payload=lambda: HANDSHAKE, private_key=xa, pad=bytes)
    b = MseHandshake(outgoing=False, find_skey=_find(INFO_HASH), private_key=xb, pad=bytes)
    m1 = a.start()
    assert m1 == pow(2, xa, mse.P).to_bytes(96, "big")
    m2 = b.receive(m1)
    assert m2 == pow(2, xb, mse.P).to_bytes(96, "big")
    m3 = a.receive(m2)
    s = pow(2, xa * xb, mse.P).to_bytes(96, "big")

    def h(*parts: bytes) -> bytes:
        return hashlib.sha1(b"".join(parts)).digest()

    obfuscated = bytes(x ^ y for x, y in zip(h(b"req2", INFO_HASH), h(b"req3", s), strict=True))
    plain = bytes(8) + b"\x00\x00\x00\x03" + b"\x00\x00" + len(HANDSHAKE).to_bytes(2, "big") + HANDSHAKE
    stream = _rc4_drop1024(h(b"keyA", s, INFO_HASH), len(plain))
    assert m3 == h(b"req1", s) + obfuscated + bytes(x ^ y for x, y in zip(plain, stream, strict=True))
    m4 = b.receive(m3)
    key_b = _rc4_drop1024(h(b"keyB", s, INFO_HASH), 14)
    assert m4 == bytes(x ^ y for x, y in zip(bytes(8) + b"\x00\x00\x00\x02\x00\x00", key_b, strict=True))


def test_the_prime_is_the_specifications_768_bit_one() -> None:
    q = (mse.P - 1) // 2
    assert mse.P.bit_length() == 768 and pow(2, mse.P - 1, mse.P) == 1 and pow(2, q - 1, q) == 1  # a safe prime
    assert hex(mse.P).startswith("0xffffffffffffffffc90fdaa2") and hex(mse.P).endswith("a63a36210000000000090563")


@pytest.mark.parametrize("pad_len", [0, 512])
def test_pads_up_to_512_bytes_are_crossed(pad_len: int) -> None:
    a, b = pair(pad=lambda: b"\x55" * pad_len)
    run(a, b, 100)
    assert a.established and b.established


def test_no_sync_hash_within_628_bytes_is_an_error() -> None:
    b = MseHandshake(outgoing=False, find_skey=_find(INFO_HASH))
    b.receive(mse.P.to_bytes(96, "big")[:-1] + b"\x05")  # some valid-looking key
    b.receive(b"\x00" * (mse.REQ1_WINDOW - 97))  # one short of the bound: still waiting
    with pytest.raises(MseError, match="synchronisation"):
        b.receive(b"\x00")


def test_no_verification_constant_within_616_bytes_is_an_error() -> None:
    a = MseHandshake(outgoing=True, skey=INFO_HASH)
    a.start()
    a.receive((12345).to_bytes(96, "big"))
    a.receive(b"\x00" * (mse.VC_WINDOW - 97))
    with pytest.raises(MseError, match="verification constant"):
        a.receive(b"\x00")


@pytest.mark.parametrize("key", [0, 1, mse.P - 1, mse.P, (1 << 768) - 1])
def test_degenerate_or_out_of_range_keys_are_refused(key: int) -> None:
    b = MseHandshake(outgoing=False, find_skey=_find(INFO_HASH))
    with pytest.raises(MseError, match="degenerate"):
        b.receive(key.to_bytes(96, "big"))


@pytest.mark.parametrize("outgoing", [True, False])
def test_a_pad_c_or_pad_d_longer_than_512_is_refused(outgoing: bool) -> None:
    pads = iter([b"", b"\x00" * 513])  # the first pad (PadA or PadB) is fine, the second (PadC or PadD) too long
    long_pad = {"pad": lambda: next(pads)}
    a = MseHandshake(outgoing=True, skey=INFO_HASH, **(long_pad if outgoing else {}))  # type: ignore[arg-type]
    b = MseHandshake(outgoing=False, find_skey=_find(INFO_HASH), **({} if outgoing else long_pad))  # type: ignore[arg-type]
    with pytest.raises(MseError, match="longer than 512"):
        run(a, b)


def test_a_garbled_verification_constant_is_refused() -> None:
    a, b = pair()
    m2 = b.receive(a.start())
    m3 = bytearray(a.receive(m2))
    m3[40] ^= 1  # the first byte of ENCRYPT(VC)
    with pytest.raises(MseError, match="verification constant"):
        b.receive(bytes(m3))


def test_a_crypto_select_we_did_not_provide_is_refused() -> None:
    a, b = pair(provide=PLAINTEXT)
    m2 = b.receive(a.start())
    m3 = a.receive(m2)
    m4 = bytearray(b.receive(m3))
    m4[11] ^= PLAINTEXT ^ RC4  # RC4 is a stream cipher: flipping crypto_select's last byte turns 0x01 into 0x02
    with pytest.raises(MseError, match="crypto_select"):
        a.receive(bytes(m4))


def test_random_garbage_raises_only_mse_error_or_waits() -> None:
    import random

    rnd = random.Random(17)
    for _ in range(200):
        junk = rnd.randbytes(rnd.randrange(0, 1400))
        incoming = MseHandshake(outgoing=False, find_skey=_find(INFO_HASH))
        outgoing = MseHandshake(outgoing=True, skey=INFO_HASH)
        outgoing.start()
        for hs, window in ((incoming, mse.REQ1_WINDOW), (outgoing, mse.VC_WINDOW)):
            try:
                hs.receive(junk)
            except MseError:
                continue
            assert hs.established is None  # random bytes never complete a handshake
            assert len(junk) < window  # past its window a side has given up


def test_the_first_bytes_tell_plaintext_from_encrypted() -> None:
    assert mse.looks_plaintext(HANDSHAKE) is True
    assert mse.looks_plaintext(HANDSHAKE[:5]) is None
    assert mse.looks_plaintext(b"") is None
    assert mse.looks_plaintext(b"\x13BitTorrent protocoX") is False
    assert mse.looks_plaintext(b"\x42") is False


def test_the_answering_side_picks_plaintext_from_both_unless_it_prefers_rc4() -> None:
    for prefer_rc4, method in ((False, PLAINTEXT), (True, RC4)):
        a = MseHandshake(outgoing=True, skey=INFO_HASH, initial_payload=lambda: HANDSHAKE)
        b = MseHandshake(outgoing=False, find_skey=_find(INFO_HASH), prefer_rc4=prefer_rc4)
        run(a, b)
        assert a.established and b.established and a.established.method == b.established.method == method
    a, b = pair(provide=RC4)
    b = MseHandshake(outgoing=False, find_skey=_find(INFO_HASH), prefer_rc4=False)
    run(a, b)
    assert b.established and b.established.method == RC4  # RC4 alone offered: taken
