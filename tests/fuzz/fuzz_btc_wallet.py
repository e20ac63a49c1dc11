"""atheris fuzz target for the Bitcoin wallet's parsers: a control-port request line (apps/btc/control.py), a
segwit address (bech32/bech32m, decoded then re-encoded equal), and a node's `wallet` answer as the CLI reads it.

Run: `python tests/fuzz/fuzz_btc_wallet.py [corpus dir] [-max_total_time=N]`. The first input byte picks the
target, the rest is its input. The request may raise only `BtcError` (ControlError and transaction errors), the
address only `AddressError`, the answer only `WalletError`.
"""

from __future__ import annotations

import json

import harness

from peerloom.apps.btc.bech32 import AddressError, decode_address, encode_address
from peerloom.apps.btc.control import parse_request, read_wallet_answer
from peerloom.apps.btc.params import REGTEST
from peerloom.apps.btc.serialize import BtcError
from peerloom.apps.btc.wallet import WalletError


def _request(data: bytes) -> None:
    parse_request(data)


def _address(data: bytes) -> None:
    text = data.decode("latin-1")
    version, program = decode_address("bcrt", text)
    assert encode_address("bcrt", version, program) == text.lower()


def _answer(data: bytes) -> None:
    try:
        reply = json.loads(data)
    except (ValueError, RecursionError):
        return
    if isinstance(reply, dict):
        read_wallet_answer(reply)


TestOneInput = harness.Pick((_request, BtcError), (_address, AddressError), (_answer, WalletError))


def seeds() -> list[bytes]:
    """Valid inputs for every target, to start a corpus from."""
    tx = REGTEST.genesis.transactions[0].serialize().hex()
    return [b"\x00" + json.dumps({"op": "send", "tx": tx}).encode(),
            b"\x03" + json.dumps({"op": "wallet", "scripts": ["0014" + "00" * 20]}).encode(),
            b"\x01" + b"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
            b"\x02" + json.dumps({"height": 3, "coins": [["00" * 32, 0, 5, "51", 1, True]], "mempool": [tx]}).encode()]


if __name__ == "__main__":
    harness.main(TestOneInput)
