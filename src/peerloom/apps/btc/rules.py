"""When each soft fork's rules apply on each network, and what they switch on at a height: Core's
`Consensus::Params` (kernel/chainparams.cpp) and `GetBlockScriptFlags` (validation.cpp).

Buried deployments are heights; taproot is active from genesis on regtest, signet and testnet4 (Core's
`ALWAYS_ACTIVE`) and from its activation height on mainnet. Script flags are named here as strings (Core's
`SCRIPT_VERIFY_*` without the prefix) so this module needs nothing from the script interpreter; the checker maps
them onto its own flag type.
"""

from __future__ import annotations

from dataclasses import dataclass

from .params import COIN, NetworkParams

COINBASE_MATURITY = 100
MAX_BLOCK_SIGOPS_COST = 80_000
LOCKTIME_THRESHOLD = 500_000_000  # below: a height; at or above: a Unix time


@dataclass(frozen=True)
class Deployments:
    """Heights from which each buried rule applies (Core's `BIP34Height`, ... `SegwitHeight`)."""

    subsidy_halving_interval: int
    bip34: int
    bip65: int
    bip66: int
    csv: int  # BIP 68/112/113
    segwit: int  # BIP 141/143/147
    taproot: int  # BIP 341/342
    bip16_exception: bytes | None = None  # the one mainnet block validated without P2SH
    bip30_exceptions: tuple[tuple[int, bytes], ...] = ()  # the two mainnet blocks with duplicate coinbases

    def subsidy(self, height: int) -> int:
        """The new coins a block at `height` may create (Core's `GetBlockSubsidy`)."""
        halvings = height // self.subsidy_halving_interval
        return 0 if halvings >= 64 else (50 * COIN) >> halvings

    def script_flags(self, height: int, block_hash: bytes) -> frozenset[str]:
        """The script verification flags for a block (Core's `GetBlockScriptFlags`)."""
        flags = {"P2SH", "WITNESS"} if block_hash != self.bip16_exception else set()
        if height >= self.taproot:
            flags.add("TAPROOT")
        if height >= self.bip66:
            flags.add("DERSIG")
        if height >= self.bip65:
            flags.add("CHECKLOCKTIMEVERIFY")
        if height >= self.csv:
            flags.add("CHECKSEQUENCEVERIFY")
        if height >= self.segwit:
            flags.add("NULLDUMMY")
        return frozenset(flags)

    def min_block_version(self, height: int) -> int:
        """Blocks below this version are rejected as `bad-version` (BIP 34, 66, 65 retired versions 1-3)."""
        if height >= self.bip65:
            return 4
        if height >= self.bip66:
            return 3
        return 2 if height >= self.bip34 else 0


def _h(text: str) -> bytes:
    return bytes.fromhex(text)[::-1]


MAINNET_DEPLOYMENTS = Deployments(
    subsidy_halving_interval=210_000, bip34=227_931, bip65=388_381, bip66=363_725, csv=419_328, segwit=481_824,
    taproot=709_632,
    bip16_exception=_h("00000000000002dc756eebf4f49723ed8d30cc28a5f108eb94b1ba88ac4f9c22"),
    bip30_exceptions=(
        (91842, _h("00000000000a4d0a398161ffc163c503763b1f4360639393e0e4c8e300e0caec")),
        (91880, _h("00000000000743f190a18c5577a3c2d2a1f610ae9601ac046a38084ccb7cd721")),
    ),
)
TESTNET4_DEPLOYMENTS = Deployments(210_000, 1, 1, 1, 1, 1, 0)
SIGNET_DEPLOYMENTS = Deployments(210_000, 1, 1, 1, 1, 1, 0)
REGTEST_DEPLOYMENTS = Deployments(150, 1, 1, 1, 1, 0, 0)

_BY_NETWORK = {"mainnet": MAINNET_DEPLOYMENTS, "testnet4": TESTNET4_DEPLOYMENTS, "signet": SIGNET_DEPLOYMENTS,
               "regtest": REGTEST_DEPLOYMENTS}


def deployments_for(params: NetworkParams) -> Deployments:
    return _BY_NETWORK[params.name]
