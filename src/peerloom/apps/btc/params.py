"""Network parameters of regtest, signet (the default signet), testnet4 and mainnet, after Bitcoin Core's
kernel/chainparams.cpp: message magic, default port, genesis block, proof-of-work limit and the difficulty
rules each network follows."""

from __future__ import annotations

from dataclasses import dataclass

from .block import Block, BlockHeader, merkle_root
from .serialize import hash_from_hex
from .tx import NULL_HASH, NULL_INDEX, OutPoint, Transaction, TxIn, TxOut

COIN = 100_000_000
TARGET_TIMESPAN = 14 * 24 * 60 * 60  # two weeks (nPowTargetTimespan)
TARGET_SPACING = 10 * 60  # nPowTargetSpacing

_SATOSHI_PUBKEY = bytes.fromhex(
    "04678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb6"
    "49f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5f"
)
_TIMES = b"The Times 03/Jan/2009 Chancellor on brink of second bailout for banks"
_TESTNET4_TIMESTAMP = b"03/May/2024 000000000000000000001ebd58c244970b3aa9d783bb001011fbe8ea8e98e00e"


def _push(data: bytes) -> bytes:
    """A minimal script push of `data` (direct up to 75 bytes, else OP_PUSHDATA1), as CScript << vector."""
    return bytes((len(data),)) + data if len(data) < 0x4C else b"\x4c" + bytes((len(data),)) + data


def genesis_block(timestamp: bytes, pubkey: bytes, time: int, nonce: int, bits: int) -> Block:
    """Core's `CreateGenesisBlock`: a version-1 block whose coinbase's scriptSig pushes 486604799, 4 and the
    timestamp text, paying 50 BTC to `<pubkey> OP_CHECKSIG`."""
    script_sig = _push((486604799).to_bytes(4, "little")) + _push(b"\x04") + _push(timestamp)
    coinbase = Transaction(
        1,
        (TxIn(OutPoint(NULL_HASH, NULL_INDEX), script_sig, 0xFFFFFFFF),),
        (TxOut(50 * COIN, _push(pubkey) + b"\xac"),),
        0,
    )
    root, _ = merkle_root([coinbase.txid])
    return Block(BlockHeader(1, NULL_HASH, root, time, bits, nonce), (coinbase,))


@dataclass(frozen=True)
class NetworkParams:
    """What distinguishes one Bitcoin network from another, for the P2P layer and header validation."""

    name: str
    magic: bytes  # pchMessageStart
    default_port: int
    genesis: Block
    genesis_hash: bytes  # the well-known hash; tests check that `genesis` hashes to it
    pow_limit: int
    no_retargeting: bool  # regtest: the target never changes (fPowNoRetargeting)
    allow_min_difficulty_blocks: bool  # testnet: 20 minutes late may use pow_limit
    enforce_bip94: bool  # testnet4: retarget from the period's first block, timewarp guard (BIP 94)

    @property
    def interval(self) -> int:
        """Blocks between retargets (2016)."""
        return TARGET_TIMESPAN // TARGET_SPACING


MAINNET = NetworkParams(
    name="mainnet",
    magic=bytes.fromhex("f9beb4d9"),
    default_port=8333,
    genesis=genesis_block(_TIMES, _SATOSHI_PUBKEY, 1231006505, 2083236893, 0x1D00FFFF),
    genesis_hash=hash_from_hex("000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"),
    pow_limit=(1 << 224) - 1,
    no_retargeting=False,
    allow_min_difficulty_blocks=False,
    enforce_bip94=False,
)

TESTNET4 = NetworkParams(
    name="testnet4",
    magic=bytes.fromhex("1c163f28"),
    default_port=48333,
    genesis=genesis_block(_TESTNET4_TIMESTAMP, bytes(33), 1714777860, 393743547, 0x1D00FFFF),
    genesis_hash=hash_from_hex("00000000da84f2bafbbc53dee25a72ae507ff4914b867c565be350b0da8bf043"),
    pow_limit=(1 << 224) - 1,
    no_retargeting=False,
    allow_min_difficulty_blocks=True,
    enforce_bip94=True,
)

SIGNET = NetworkParams(
    name="signet",
    magic=bytes.fromhex("0a03cf40"),  # the default signet's challenge hashed (BIP 325)
    default_port=38333,
    genesis=genesis_block(_TIMES, _SATOSHI_PUBKEY, 1598918400, 52613770, 0x1E0377AE),
    genesis_hash=hash_from_hex("00000008819873e925422c1ff0f99f7cc9bbb232af63a077a480a3633bee1ef6"),
    pow_limit=0x377AE << 216,
    no_retargeting=False,
    allow_min_difficulty_blocks=False,
    enforce_bip94=False,
)

REGTEST = NetworkParams(
    name="regtest",
    magic=bytes.fromhex("fabfb5da"),
    default_port=18444,
    genesis=genesis_block(_TIMES, _SATOSHI_PUBKEY, 1296688602, 2, 0x207FFFFF),
    genesis_hash=hash_from_hex("0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"),
    pow_limit=(1 << 255) - 1,
    no_retargeting=True,
    allow_min_difficulty_blocks=True,
    enforce_bip94=False,
)

NETWORKS = {p.name: p for p in (MAINNET, TESTNET4, SIGNET, REGTEST)}
