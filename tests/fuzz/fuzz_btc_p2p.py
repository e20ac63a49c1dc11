"""atheris fuzz target for peerloom's Bitcoin P2P layer: the frame decoder (bytes fed in arbitrary pieces), every
message decoder (the first byte after the target's picks the command), transactions and blocks (parsed, then
checked as consensus does without context), and a handshake session fed whole streams.

Run: `python tests/fuzz/fuzz_btc_p2p.py [corpus dir] [-max_total_time=N]`. The first input byte picks the target,
the rest is its input. Each parser may raise only `BtcError`; a message it accepts must re-encode to a payload
that decodes to the same message, and a transaction or block must re-serialize to bytes that parse back equal.
"""

from __future__ import annotations

import harness

from peerloom.apps.btc import p2p
from peerloom.apps.btc.block import ConsensusError, parse_block
from peerloom.apps.btc.checks import check_block, check_transaction
from peerloom.apps.btc.params import MAINNET, REGTEST
from peerloom.apps.btc.serialize import BtcError
from peerloom.apps.btc.session import LocalInfo, PeerSession
from peerloom.apps.btc.tx import parse_transaction

_COMMANDS = sorted(p2p.MESSAGES)
_MAGIC = REGTEST.magic


def _frames(data: bytes) -> None:
    """Feeding in pieces (sizes from the input) yields the same frames as feeding whole, each bounded."""
    if not data:
        return
    step = data[0] % 31 + 1
    stream = data[1:]
    whole = p2p.FrameDecoder(_MAGIC).feed(stream)
    pieces = p2p.FrameDecoder(_MAGIC)
    got = [f for i in range(0, len(stream), step) for f in pieces.feed(stream[i : i + step])]
    assert got == whole
    for command, payload in whole:
        assert len(payload) <= p2p.MAX_PROTOCOL_MESSAGE_LENGTH
        assert p2p.frame(_MAGIC, command, payload) in stream


def _message(data: bytes) -> None:
    if not data:
        return
    command = _COMMANDS[data[0] % len(_COMMANDS)]
    message = p2p.decode_message(command, data[1:])
    again = message.encode()
    try:
        assert p2p.decode_message(command, again) == message
    except BtcError as exc:
        raise AssertionError(f"the re-encoding of an accepted {command} was refused: {exc!r}") from exc


def _transaction(data: bytes) -> None:
    tx = parse_transaction(data)
    assert parse_transaction(tx.serialize()) == tx
    assert tx.serialize() == data  # the wire form of a transaction is canonical
    try:
        check_transaction(tx)
    except ConsensusError:
        pass


def _block(data: bytes) -> None:
    block = parse_block(data)
    assert block.serialize() == data
    for check in (lambda: check_block(block, REGTEST.pow_limit), block.check_witness_commitment):
        try:
            check()
        except ConsensusError:
            pass


def _session(data: bytes) -> None:
    """A listening session fed a stream never fails with anything but BtcError, and never answers before a version."""
    session = PeerSession(_MAGIC, LocalInfo(nonce=1), outbound=False)
    session.receive_data(data, 1_700_000_000)
    if session.features.version is None:
        assert session.data_to_send() == b""


TestOneInput = harness.Pick(_frames, _message, _transaction, _block, _session, allowed=BtcError)


def seeds() -> list[bytes]:
    """Valid inputs for every target, to start a corpus from."""
    version = p2p.Version(
        70016, 9, 1_700_000_000, p2p.NetAddress.from_host("127.0.0.1", 18444), p2p.NetAddress(0, bytes(16), 0), 2,
        "/seed/", 0, True,
    )
    messages = [version, p2p.WtxidRelay(), p2p.SendAddrV2(), p2p.Verack(), p2p.Ping(5), p2p.SendHeaders(),
                p2p.Headers((REGTEST.genesis.header,)), p2p.Inv((p2p.InvItem(2, bytes(32)),))]
    stream = b"".join(p2p.encode_message(_MAGIC, m) for m in messages)
    out = [b"\x00\x07" + stream, b"\x04" + stream]
    for m in messages:
        out.append(b"\x01" + bytes([_COMMANDS.index(m.command)]) + m.encode())
    addrv2 = p2p.AddrV2((p2p.AddrV2Entry(1, 1, 2, bytes(16), 8333),))
    out.append(b"\x01" + bytes([_COMMANDS.index("addrv2")]) + addrv2.encode())
    out.append(b"\x02" + MAINNET.genesis.transactions[0].serialize())
    out.append(b"\x03" + MAINNET.genesis.serialize())
    return out


if __name__ == "__main__":
    harness.main(TestOneInput)
