"""atheris fuzz target for the yamux session: frames from a remote client or server, fed in pieces.

Run: `python tests/fuzz/fuzz_yamux.py [corpus dir] [-atheris_runs=N]`. The first input byte picks our role
and how the rest is cut; received data is acknowledged and replies are drawn, as a driver would. Only
YamuxError may escape.
"""

from __future__ import annotations

import struct

import harness

from peerloom.net.yamux import DataReceived, Session, SessionState, YamuxError

_SYN = 1


def TestOneInput(data: bytes) -> None:
    """One fuzz case: byte 0 sets role (bit 0), a remote-opened stream (bit 1) and the piece size (the rest)."""
    if not data:
        return
    control, body = data[0], data[1:]
    client = bool(control & 1)
    session = Session(client=client, max_streams=8, send_buffer=4096)
    own = session.open_stream()
    session.write(own, b"hello")
    if control & 2:  # let random frames reach an open remote stream
        body = struct.pack(">BBHII", 0, 1, _SYN, 2 if client else 1, 0) + body
    piece = (control >> 2) + 1
    try:
        for offset in range(0, len(body), piece):
            for event in session.receive_data(body[offset : offset + piece], offset / 1000):
                if isinstance(event, DataReceived):
                    session.acknowledge_received(event.stream_id, len(event.data), offset / 1000)
            session.data_to_send()
    except YamuxError:
        assert session.state is SessionState.TERMINATED


if __name__ == "__main__":
    harness.main(TestOneInput)
