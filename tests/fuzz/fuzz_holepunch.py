"""atheris fuzz target for BEP 55 hole punching (torrent/holepunch.py): the ut_holepunch message and the
bookkeeping a stream of messages drives.

Run: `python tests/fuzz/fuzz_holepunch.py [corpus dir] [-max_total_time=N]`. The first input byte picks the target:
one message to parse (it must re-encode to the same bytes, IPv4-mapped addresses aside), or a sequence of messages
(each after a length byte) applied to a `HolepunchState` as a relay and a punched peer would, whose bounds must
hold whatever arrives. Only HolepunchError may escape.
"""

from __future__ import annotations

import ipaddress

import harness

from peerloom.torrent import holepunch as hp
from peerloom.torrent.holepunch import HolepunchError


def _message(data: bytes) -> None:
    msg = hp.parse_holepunch(data)
    assert 0 <= msg.address[1] < 65536 and ipaddress.ip_address(msg.address[0])
    again = hp.encode_holepunch(msg)
    mapped = isinstance(ipaddress.ip_address(msg.address[0]), ipaddress.IPv6Address) and \
        ipaddress.IPv6Address(msg.address[0]).ipv4_mapped is not None
    assert again == data or mapped
    assert hp.parse_holepunch(again).msg_type == msg.msg_type


def _sequence(data: bytes) -> None:
    state: hp.HolepunchState[int] = hp.HolepunchState()
    pos, now = 0, 0.0
    while pos < len(data):
        size = data[pos] % 24
        chunk = data[pos + 1 : pos + 1 + size]
        pos += 1 + size
        now += data[pos - 1] / 4 if pos - 1 < len(data) else 0.0
        try:
            msg = hp.parse_holepunch(chunk)
        except HolepunchError:
            continue
        if msg.msg_type is hp.MsgType.RENDEZVOUS:
            to_initiator, to_target = hp.relay_answer(("192.0.2.1", 6881), msg.address, size % 3 == 0 or None,
                                                      size % 5 == 0)
            assert to_initiator is not None
            assert to_target is None or hp.parse_holepunch(to_target).msg_type is hp.MsgType.CONNECT
            state.learned(msg.address, size)
        elif msg.msg_type is hp.MsgType.CONNECT:
            state.may_punch(msg.address, now)
            if size % 2:
                state.done(msg.address)
        else:
            asked = state.rendezvous_for(msg.address, now)
            assert asked is None or hp.parse_holepunch(asked[1]).msg_type is hp.MsgType.RENDEZVOUS
        assert len(state.in_flight) <= hp.MAX_PUNCHES


TestOneInput = harness.Pick(_message, _sequence, allowed=HolepunchError)

if __name__ == "__main__":
    harness.main(TestOneInput)
