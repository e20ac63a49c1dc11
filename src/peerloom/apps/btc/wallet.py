"""The wallet: a seed in the home (HOME/btc/NETWORK/wallet.json, mode 0600, written atomically), the BIP 84
(P2WPKH, m/84'/c'/0'/chain/i) and BIP 86 (taproot key path, m/86'/c'/0'/chain/i) keys it derives — c is 0 on
mainnet and 1 on the test networks, chain 0 receives and 1 takes change — and what it owns.

    wallet = Wallet.open(home, params, create=True)
    address = wallet.receive_address("p2wpkh")
    view = WalletView.build(wallet.scripts(), confirmed_coins, mempool_txs, tip_height)

The wallet watches, for each kind and chain, every index below its counter plus `LOOKAHEAD`, so coins sent to
an address handed out (or to the next few) are seen; the counters move when an address is handed out.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from peerloom.errors import PeerloomError
from peerloom.files import write_atomically
from peerloom.state import Schema

from .bech32 import HRP_BY_NETWORK, address_for_script
from .bip32 import ExtendedKey
from .coins import Coin
from .params import NetworkParams
from .rules import COINBASE_MATURITY
from .signing import p2tr_script, p2wpkh_script, taproot_output_key
from .tx import OutPoint, Transaction

WALLET_FILE = "wallet.json"
LOOKAHEAD = 20
KINDS = {"p2wpkh": 84, "p2tr": 86}  # the BIP 44-style purpose of each kind of key
RECEIVE, CHANGE = 0, 1


class WalletError(PeerloomError):
    """No wallet, a damaged wallet file, or a spend the wallet cannot make (shown as one line)."""


@dataclass(frozen=True)
class OwnedKey:
    kind: str  # "p2wpkh" or "p2tr"
    path: str
    secret: bytes
    script: bytes


def wallet_path(home: Path, params: NetworkParams) -> Path:
    return Path(home) / "btc" / params.name / WALLET_FILE


class Wallet:
    def __init__(self, path: Path, params: NetworkParams, seed: bytes, counters: dict[str, list[int]]) -> None:
        self.path = path
        self.params = params
        self.hrp = self.hrp_of(params)
        self.counters = counters  # kind -> [next receive index, next change index]
        master = ExtendedKey.from_seed(seed)
        coin = 0 if params.name == "mainnet" else 1
        self._accounts = {kind: master.derive_path(f"m/{purpose}'/{coin}'/0'") for kind, purpose in KINDS.items()}
        self._seed = seed
        self._keys: dict[tuple[str, int, int], OwnedKey] = {}

    @staticmethod
    def hrp_of(params: NetworkParams) -> str:
        return HRP_BY_NETWORK[params.name]

    @classmethod
    def open(cls, home: Path, params: NetworkParams, create: bool = False) -> Wallet:
        """The home's wallet for `params`; a new one (a fresh 32-byte seed) when `create` and there is none."""
        path = wallet_path(home, params)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            if not create:
                raise WalletError(f"no {params.name} wallet in this home (`peerloom btc address` makes one)") from None
            wallet = cls(path, params, secrets.token_bytes(32), {kind: [0, 0] for kind in KINDS})
            wallet.save()
            return wallet
        try:
            data = json.loads(raw)
            if data.get("network") != params.name:
                raise WalletError(f"{path}: a wallet for {data.get('network')!r}, not {params.name}")
            counters = {kind: [int(data["counters"][kind][0]), int(data["counters"][kind][1])] for kind in KINDS}
            return cls(path, params, bytes.fromhex(data["seed"]), counters)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise WalletError(f"{path}: damaged wallet file ({exc})") from None

    def save(self) -> None:
        data = {"version": 1, "network": self.params.name, "seed": self._seed.hex(), "counters": self.counters}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, json.dumps(data, indent=1).encode())  # mode 0600

    def key(self, kind: str, chain: int, index: int) -> OwnedKey:
        cached = self._keys.get((kind, chain, index))
        if cached is None:
            node = self._accounts[kind].child(chain).child(index)
            assert node.secret is not None
            script = (p2wpkh_script(node.public_key) if kind == "p2wpkh"
                      else p2tr_script(taproot_output_key(node.secret)))
            coin = 0 if self.params.name == "mainnet" else 1
            cached = OwnedKey(kind, f"m/{KINDS[kind]}'/{coin}'/0'/{chain}/{index}", node.secret, script)
            self._keys[(kind, chain, index)] = cached
        return cached

    def next_key(self, kind: str, chain: int) -> OwnedKey:
        """The key at the counter of `kind` and `chain`, and move the counter on (saved)."""
        if kind not in KINDS:
            raise WalletError(f"unknown address type {kind!r}: one of {', '.join(KINDS)}")
        key = self.key(kind, chain, self.counters[kind][chain])
        self.counters[kind][chain] += 1
        self.save()
        return key

    def address(self, key: OwnedKey) -> str:
        address = address_for_script(self.hrp, key.script)
        assert address is not None
        return address

    def owned(self) -> dict[bytes, OwnedKey]:
        """Every watched output script and its key."""
        return {key.script: key for kind in KINDS for chain in (RECEIVE, CHANGE)
                for key in (self.key(kind, chain, i) for i in range(self.counters[kind][chain] + LOOKAHEAD))}


@dataclass(frozen=True)
class WalletCoin:
    outpoint: OutPoint
    coin: Coin
    confirmed: bool


@dataclass(frozen=True)
class WalletView:
    """The wallet's unspent coins: confirmed ones the mempool does not spend, and the outputs of its own
    unconfirmed transactions that nothing in the mempool spends; `tip` is the chain height they were read at."""

    coins: tuple[WalletCoin, ...]
    tip: int

    @classmethod
    def build(cls, scripts: Iterable[bytes], confirmed: Iterable[tuple[OutPoint, Coin]],
              mempool: Sequence[Transaction], tip: int) -> WalletView:
        ours = set(scripts)
        spent = {txin.prevout for tx in mempool for txin in tx.inputs}
        coins = [WalletCoin(op, coin, True) for op, coin in confirmed if coin.script_pubkey in ours and op not in spent]
        for tx in mempool:
            for index, out in enumerate(tx.outputs):
                op = OutPoint(tx.txid, index)
                if out.script_pubkey in ours and op not in spent:
                    coins.append(WalletCoin(op, Coin(out.value, out.script_pubkey, tip + 1, False), False))
        return cls(tuple(coins), tip)

    def mature(self, wc: WalletCoin) -> bool:
        """Whether a coin may be spent in the next block (coinbase outputs after 100 blocks)."""
        return not wc.coin.coinbase or self.tip + 1 - wc.coin.height >= COINBASE_MATURITY

    def spendable(self) -> list[WalletCoin]:
        return [wc for wc in self.coins if self.mature(wc)]

    def balance(self) -> dict[str, int]:
        """Satoshis: confirmed (spendable), immature (young coinbase outputs), unconfirmed (in the mempool)."""
        confirmed = sum(wc.coin.value for wc in self.coins if wc.confirmed and self.mature(wc))
        immature = sum(wc.coin.value for wc in self.coins if wc.confirmed and not self.mature(wc))
        unconfirmed = sum(wc.coin.value for wc in self.coins if not wc.confirmed)
        return {"confirmed": confirmed, "immature": immature, "unconfirmed": unconfirmed,
                "total": confirmed + immature + unconfirmed}


def relevant_transactions(mempool: Iterable[Transaction], scripts: Iterable[bytes],
                          outpoints: Iterable[OutPoint]) -> list[Transaction]:
    """The mempool transactions (in pool order: parents first) that pay one of `scripts` or spend one of
    `outpoints` or an output of another one returned."""
    ours = set(scripts)
    watched = set(outpoints)
    found = []
    for tx in mempool:
        pays = any(out.script_pubkey in ours for out in tx.outputs)
        if pays or any(txin.prevout in watched for txin in tx.inputs):
            found.append(tx)
            watched.update(OutPoint(tx.txid, i) for i in range(len(tx.outputs)))
    return found


def confirmed_coins(schema: Schema, scripts: Iterable[bytes]) -> list[tuple[OutPoint, Coin]]:
    """The coins of the stored UTXO set paying one of `scripts` (a scan of the set: a small wallet's way)."""
    wanted = list(set(scripts))
    found = []
    for start in range(0, len(wanted), 500):  # within SQLite's limit on bound parameters
        chunk = wanted[start:start + 500]
        rows = schema.execute("SELECT txid, vout, value, script, height, coinbase FROM btc_coins WHERE script IN "
                              f"({','.join('?' * len(chunk))})", chunk)
        found += [(OutPoint(bytes(txid), vout), Coin(value, bytes(script), height, bool(coinbase)))
                  for txid, vout, value, script, height, coinbase in rows]
    return sorted(found, key=lambda item: (item[0].txid, item[0].index))
