"""Reading Bitcoin Core's script and transaction test vectors (src/test/data/*.json): the script assembly
language of `core_read.cpp`'s ParseScript, the flag strings, and the crediting/spending transactions
`script_tests.cpp` builds around each script test."""

from __future__ import annotations

import json
from pathlib import Path

from peerloom.apps.btc import opcodes
from peerloom.apps.btc.opcodes import num_encode, push_data
from peerloom.apps.btc.script import ScriptFlags, tapleaf_hash
from peerloom.apps.btc.secp import taproot_tweak
from peerloom.apps.btc.tx import OutPoint, Transaction, TxIn, TxOut

DATA = Path(__file__).resolve().parents[1] / "data" / "btc"
# BIP 341's NUMS point H: the internal key Core's script_tests.cpp builds #CONTROLBLOCK# from.
NUMS_H = bytes.fromhex("50929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0")


def load(name: str) -> list:
    return json.loads((DATA / name).read_text())


def _opcode_names() -> dict[str, int]:
    names: dict[str, int] = {}
    for name, value in vars(opcodes).items():
        if name.startswith("OP_") and isinstance(value, int) and (value >= opcodes.OP_NOP or value == 0x50):
            names[name] = names[name[3:]] = value
    for i in range(1, 11):
        names[f"NOP{i}"] = names[f"OP_NOP{i}"] = opcodes.OP_NOP1 + i - 1
    return names


OPCODE_BY_NAME = _opcode_names()


def parse_asm(text: str) -> bytes:
    """Core's ParseScript: numbers push CScriptNum (OP_N where one exists), 0x.. is raw bytes, '..' pushes a
    string, anything else is an opcode name with or without OP_."""
    out = bytearray()
    for token in text.split():
        if token.lstrip("-").isdigit() and token not in ("-",):
            n = int(token)
            if n == 0:
                out.append(opcodes.OP_0)
            elif n == -1 or 1 <= n <= 16:
                out.append(opcodes.OP_1 + n - 1)
            else:
                out += push_data(num_encode(n))
        elif token.startswith("0x") and len(token) > 2:
            out += bytes.fromhex(token[2:])
        elif len(token) >= 2 and token[0] == token[-1] == "'":
            out += push_data(token[1:-1].encode())
        elif token in OPCODE_BY_NAME:
            out.append(OPCODE_BY_NAME[token])
        else:
            raise ValueError(f"unknown script token {token!r}")
    return bytes(out)


def parse_flags(text: str) -> ScriptFlags:
    return ScriptFlags.parse(text)


def crediting_tx(script_pubkey: bytes, value: int) -> Transaction:
    """script_tests.cpp's BuildCreditingTransaction."""
    coinbase = TxIn(OutPoint(bytes(32), 0xFFFFFFFF), b"\x00\x00", 0xFFFFFFFF)
    return Transaction(1, (coinbase,), (TxOut(value, script_pubkey),), 0)


def spending_tx(script_sig: bytes, witness: tuple[bytes, ...], credit: Transaction) -> Transaction:
    """script_tests.cpp's BuildSpendingTransaction."""
    txin = TxIn(OutPoint(credit.txid, 0), script_sig, 0xFFFFFFFF, witness)
    return Transaction(1, (txin,), (TxOut(credit.outputs[0].value, b""),), 0)


def script_test_case(test: list) -> tuple[bytes, bytes, tuple[bytes, ...], ScriptFlags, str, int] | None:
    """(scriptSig, scriptPubKey, witness, flags, expected error, amount) of one script_tests.json entry,
    or None for a comment line."""
    pos = 0
    witness: list[bytes] = []
    amount = 0
    tapscript = None
    if isinstance(test[0], list):
        items = test[0]
        for item in items[:-1]:
            if item.startswith("#SCRIPT#"):
                tapscript = parse_asm(item[len("#SCRIPT#"):])
                witness.append(tapscript)
            elif item == "#CONTROLBLOCK#":
                witness.append(b"")  # filled in below, once the script is known
            else:
                witness.append(bytes.fromhex(item))
        amount = round(items[-1] * 100_000_000)
        pos = 1
    if len(test) < pos + 4:
        return None
    script_sig = parse_asm(test[pos])
    pubkey_text = test[pos + 1]
    if "#TAPROOTOUTPUT#" in pubkey_text:
        assert tapscript is not None
        output_key, parity = taproot_tweak(NUMS_H, tapleaf_hash(0xC0, tapscript))
        witness[witness.index(b"")] = bytes((0xC0 | parity,)) + NUMS_H
        pubkey_text = pubkey_text.replace("#TAPROOTOUTPUT#", "0x" + output_key.hex())
    script_pubkey = parse_asm(pubkey_text)
    flags = parse_flags(test[pos + 2])
    return script_sig, script_pubkey, tuple(witness), flags, test[pos + 3], amount
