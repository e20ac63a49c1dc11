"""The header chain: Core's retarget vectors (mainnet heights 2016, 32256, 68544, 46368), headers mined here on
regtest-difficulty chains connected with every contextual check (proof of work, expected bits, median time past,
2-hour future limit), most-work tip selection across forks, and getheaders locators."""

from __future__ import annotations

import dataclasses

import pytest

from peerloom.apps.btc.block import BlockHeader, bits_to_target, target_to_bits
from peerloom.apps.btc.headers import HeaderChain, HeaderEntry, HeaderError, retarget
from peerloom.apps.btc.params import MAINNET, REGTEST, TARGET_TIMESPAN, genesis_block

NOW = REGTEST.genesis.header.time + 10_000_000


@pytest.mark.parametrize(
    ("first_time", "last_time", "bits", "expected"),
    [  # Bitcoin Core src/test/pow_tests.cpp: the period's first block time, its last block's time and bits
        (1261130161, 1262152739, 0x1D00FFFF, 0x1D00D86A),  # get_next_work: the retarget at height 32256
        (1231006505, 1233061996, 0x1D00FFFF, 0x1D00FFFF),  # get_next_work_pow_limit: capped at the limit (2016)
        (1279008237, 1279297671, 0x1C05A3F4, 0x1C0168FD),  # get_next_work_lower_limit_actual: clamped to 1/4
        (1263163443, 1269211443, 0x1C387F6F, 0x1D00E1FD),  # get_next_work_upper_limit_actual: clamped to 4x
    ],
)
def test_retarget_matches_cores_mainnet_vectors(first_time: int, last_time: int, bits: int, expected: int) -> None:
    assert retarget(bits, last_time - first_time, MAINNET.pow_limit) == expected


def mine(prev: HeaderEntry | BlockHeader, time: int, bits: int = 0x207FFFFF, salt: int = 0) -> BlockHeader:
    """A header on top of `prev` that meets `bits` (a few hashes at regtest difficulty)."""
    parent = prev.header if isinstance(prev, HeaderEntry) else prev
    root = bytes([salt % 256]) * 32
    for nonce in range(1 << 20):
        header = BlockHeader(4, parent.hash, root, time, bits, nonce)
        if header.check_proof_of_work((1 << 256) - 1) and header.check_proof_of_work(bits_to_target(bits) or 0):
            return header
    raise AssertionError("no nonce found")


def extend(chain: HeaderChain, tip: HeaderEntry, count: int, spacing: int = 600, salt: int = 0) -> HeaderEntry:
    for _ in range(count):
        tip = chain.connect(mine(tip, tip.header.time + spacing, salt=salt), NOW)
    return tip


def test_headers_connect_and_the_tip_follows() -> None:
    chain = HeaderChain(REGTEST)
    assert chain.tip.hash == REGTEST.genesis_hash and chain.height == 0
    tip = extend(chain, chain.tip, 30)
    assert chain.tip is tip and chain.height == 30 and len(chain) == 31
    assert chain.at_height(10).height == 10 and chain.ancestor(tip, 5) is chain.at_height(5)
    assert chain.connect(tip.header, NOW) is tip  # already known: the same entry


def test_the_locator_is_dense_then_exponential_down_to_genesis() -> None:
    chain = HeaderChain(REGTEST)
    extend(chain, chain.tip, 30)
    heights = [chain.get(h).height for h in chain.locator()]  # type: ignore[union-attr]
    # Core's LocatorEntries: the step doubles after each entry past the tenth.
    assert heights == [30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 17, 13, 5, 0]
    assert HeaderChain(REGTEST).locator() == [REGTEST.genesis_hash]


def test_headers_breaking_a_rule_are_refused_with_cores_reason() -> None:
    chain = HeaderChain(REGTEST)
    tip = extend(chain, chain.tip, 11)
    mtp = chain.median_time_past(tip)
    cases = {
        "prev-blk-not-found": mine(BlockHeader(4, b"\x01" * 32, bytes(32), 0, 0x207FFFFF, 0), tip.header.time + 1),
        "time-too-old": mine(tip, mtp),
        "time-too-new": mine(tip, NOW + 2 * 3600 + 1),
        "bad-diffbits": mine(tip, tip.header.time + 600, bits=0x2000FFFF),
    }
    for reason, header in cases.items():
        with pytest.raises(HeaderError) as err:
            chain.connect(header, NOW)
        assert err.value.reason == reason
    unworked = mine(tip, tip.header.time + 600)
    while unworked.check_proof_of_work(REGTEST.pow_limit):
        unworked = dataclasses.replace(unworked, nonce=unworked.nonce + 1)
    with pytest.raises(HeaderError, match="high-hash"):
        chain.connect(unworked, NOW)
    # Just above the median and exactly at the future limit are fine.
    chain.connect(mine(tip, mtp + 1), NOW)
    chain.connect(mine(tip, NOW + 2 * 3600, salt=1), NOW)
    assert chain.height == 12


def test_a_headers_message_must_be_continuous() -> None:
    chain = HeaderChain(REGTEST)
    a = mine(chain.tip, chain.tip.header.time + 600)
    b = mine(a, a.time + 600)
    orphan = mine(REGTEST.genesis.header, REGTEST.genesis.header.time + 900, salt=3)
    with pytest.raises(HeaderError, match="non-continuous"):
        chain.connect_headers([a, orphan, b], NOW)
    assert chain.connect_headers([a, b], NOW).height == 2  # type: ignore[union-attr]


def test_the_most_work_chain_wins_and_a_tie_keeps_the_first_seen() -> None:
    chain = HeaderChain(REGTEST)
    fork = extend(chain, chain.tip, 5)
    first = extend(chain, fork, 3, salt=1)
    second = extend(chain, fork, 3, salt=2)
    assert chain.tip is first  # equal work: the first seen stays
    longer = extend(chain, second, 1, salt=2)
    assert chain.tip is longer and chain.height == 9
    assert chain.at_height(8) is longer.prev and chain.at_height(6) is chain.ancestor(second, 6)
    assert chain.ancestor(first, 5) is fork
    assert chain.locator()[0] == longer.hash


def test_mainnet_style_retarget_at_the_period_boundary() -> None:
    """A chain with regtest's limit but mainnet's rules: 2016 blocks 5 minutes apart halve the target."""
    params = dataclasses.replace(REGTEST, name="retarget-test", no_retargeting=False, allow_min_difficulty_blocks=False)
    chain = HeaderChain(params)
    tip = extend(chain, chain.tip, params.interval - 1, spacing=300)
    assert tip.height == 2015
    elapsed = tip.header.time - chain.at_height(0).header.time  # type: ignore[union-attr]
    assert elapsed == 2015 * 300  # the period spans 2015 intervals (Core measures first to last block)
    expected = target_to_bits(bits_to_target(0x207FFFFF) * elapsed // TARGET_TIMESPAN)  # type: ignore[operator]
    assert chain.next_work_required(tip, tip.header) == expected != 0x207FFFFF
    with pytest.raises(HeaderError, match="bad-diffbits"):
        chain.connect(mine(tip, tip.header.time + 300), NOW)
    assert chain.connect(mine(tip, tip.header.time + 300, bits=expected), NOW).height == 2016
    # Regtest itself never retargets.
    regtest = HeaderChain(REGTEST)
    last = extend(regtest, regtest.tip, 2015, spacing=300)
    assert regtest.next_work_required(last, last.header) == 0x207FFFFF


def test_getheaders_is_answered_from_the_first_locator_hash_on_the_active_chain() -> None:
    chain = HeaderChain(REGTEST)
    fork = extend(chain, chain.tip, 10)
    side = extend(chain, fork, 2, salt=1)
    best = extend(chain, fork, 5, salt=2)
    after = chain.headers_after([side.hash, chain.at_height(7).hash], bytes(32), 2000)  # type: ignore[union-attr]
    assert [h.hash for h in after] == [chain.at_height(i).hash for i in range(8, 16)]  # type: ignore[union-attr]
    assert chain.headers_after([b"\x09" * 32], bytes(32), 3)[0].prev_hash == REGTEST.genesis_hash  # unknown: genesis
    stop = chain.at_height(12).hash  # type: ignore[union-attr]
    assert len(chain.headers_after([fork.hash], stop, 2000)) == 2
    assert chain.headers_after([best.hash], bytes(32), 2000) == []


def _testnet_like() -> tuple[HeaderChain, int]:
    """A testnet4-style chain (min-difficulty exception, BIP 94) whose genesis is 256x harder than its limit."""
    hard = 0x2000FFFF
    for nonce in range(1 << 16):
        genesis = genesis_block(b"peerloom testnet-like", bytes(33), 1_300_000_000, nonce, hard)
        if genesis.header.check_proof_of_work(REGTEST.pow_limit):
            break
    params = dataclasses.replace(
        REGTEST, name="testnet-like", genesis=genesis, genesis_hash=genesis.hash,
        no_retargeting=False, allow_min_difficulty_blocks=True, enforce_bip94=True,
    )
    return HeaderChain(params), hard


def test_the_testnet_min_difficulty_exception_and_the_walk_back() -> None:
    chain, hard = _testnet_like()
    on_time = chain.connect(mine(chain.tip, chain.tip.header.time + 600, bits=hard), NOW)
    late_header = mine(on_time, on_time.header.time + 1201)
    assert chain.next_work_required(on_time, late_header) == 0x207FFFFF  # 20 minutes late: the limit
    late = chain.connect(late_header, NOW)
    # The next on-time block returns to the last difficulty not set by the exception.
    nxt = mine(late, late.header.time + 60, bits=hard)
    assert chain.next_work_required(late, nxt) == hard
    with pytest.raises(HeaderError, match="bad-diffbits"):
        chain.connect(mine(late, late.header.time + 60), NOW)
    assert chain.connect(nxt, NOW).height == 3


def test_bip94_retargets_from_the_periods_first_block_and_guards_the_timewarp() -> None:
    chain, hard = _testnet_like()
    tip = chain.tip
    for _ in range(2015):  # every block 1300 s late, mined at the limit under the exception
        tip = chain.connect(mine(tip, tip.header.time + 1300), NOW)
    probe = BlockHeader(4, tip.hash, bytes(32), tip.header.time - 600, 0, 0)
    expected = chain.next_work_required(tip, probe)
    assert expected == retarget(hard, 2015 * 1300, chain.params.pow_limit)  # the first block's bits, not the last's
    assert expected != retarget(0x207FFFFF, 2015 * 1300, chain.params.pow_limit)
    with pytest.raises(HeaderError, match="timewarp"):
        chain.connect(mine(tip, tip.header.time - 601, bits=expected), NOW)
    assert chain.connect(mine(tip, tip.header.time - 600, bits=expected), NOW).height == 2016
