"""The sandbox: the example modules give the reference answers, deterministically; each hostile module is stopped
with its own error, and the process running it carries on."""

from __future__ import annotations

import gc
import math
import os
import resource
import struct
import time
from pathlib import Path

import pytest
import wasmtime
from support import compute_modules as mods

from peerloom.apps.compute.sandbox import (
    WASM_MAGIC,
    InvalidModule,
    Limits,
    MemoryLimit,
    NonZeroExit,
    NotWasm,
    OutOfFuel,
    OutputTooLarge,
    Sandbox,
    Timeout,
    Trap,
    WrongExports,
)


@pytest.fixture(scope="module")
def sandbox():
    return Sandbox()


@pytest.fixture(scope="module")
def signal_search(sandbox):
    return sandbox.check(mods.SIGNAL_SEARCH.read_bytes())


@pytest.fixture(scope="module")
def hash_search(sandbox):
    return sandbox.check(mods.HASH_SEARCH.read_bytes())


@pytest.mark.parametrize("tone_bin", [37, 700])
def test_signal_search_finds_the_injected_tone_and_matches_the_reference(sandbox, signal_search, tone_bin):
    chunk = mods.noisy_tone(4096, tone_bin, seed=tone_bin)
    result = sandbox.run(signal_search, chunk, Limits())
    found, power, snr = result.output.split()
    ref_bin, ref_power, ref_snr = mods.signal_peak(chunk)
    assert int(found) == ref_bin == tone_bin
    assert float(power) == pytest.approx(ref_power, rel=1e-6)
    assert float(snr) == pytest.approx(ref_snr, rel=1e-3)
    assert float(snr) > 20  # the tone stands far above the noise floor


def test_signal_search_in_pure_noise_finds_no_strong_peak(sandbox, signal_search):
    chunk = mods.noisy_tone(4096, 100, seed=5, amplitude=0.0)
    found, _, snr = sandbox.run(signal_search, chunk, Limits()).output.split()
    assert (int(found), float(snr)) == pytest.approx(mods.signal_peak(chunk)[::2], rel=1e-3)
    assert float(snr) < 15


def test_signal_search_rejects_a_chunk_that_is_not_a_power_of_two(sandbox, signal_search):
    with pytest.raises(NonZeroExit, match="power-of-two") as caught:
        sandbox.run(signal_search, bytes(4 * 1000), Limits())
    assert caught.value.exit_code == 2


def test_signal_search_takes_chunks_up_to_2_pow_20_samples_and_no_more(sandbox, signal_search):
    n = 1 << 20
    tone = [math.cos(2 * math.pi * 5000 * i / n) for i in range(n)]
    found, _, snr = sandbox.run(signal_search, struct.pack(f"<{n}f", *tone), Limits()).output.split()
    assert int(found) == 5000 and float(snr) > 1e6
    with pytest.raises(NonZeroExit, match="power-of-two"):
        sandbox.run(signal_search, bytes(8 << 20), Limits())  # 2^21 samples


def test_hash_search_finds_every_nonce_the_reference_finds(sandbox, hash_search):
    prefix = b"peerloom work unit 7 " * 5  # 105 bytes: a full block in the midstate, the rest in the tail
    result = sandbox.run(hash_search, b"10 5000 20000\n" + prefix, Limits())
    expected = mods.hash_hits(prefix, 10, 5000, 20000)
    assert [int(line) for line in result.output.split()] == expected
    assert expected  # ~20 hits expected at 10 bits over 20000 nonces


@pytest.mark.parametrize("prefix_len", [0, 47, 55, 56, 64, 119])
def test_hash_search_padding_is_right_at_every_block_boundary(sandbox, hash_search, prefix_len):
    prefix = bytes(range(prefix_len))
    result = sandbox.run(hash_search, b"4 0 300\n" + prefix, Limits())
    assert [int(line) for line in result.output.split()] == mods.hash_hits(prefix, 4, 0, 300)


def test_same_unit_same_output_and_fuel(sandbox, signal_search, hash_search):
    chunk = mods.noisy_tone(2048, 99, seed=1)
    runs = [sandbox.run(signal_search, chunk, Limits()) for _ in range(3)]
    runs += [sandbox.run(sandbox.check(mods.SIGNAL_SEARCH.read_bytes()), chunk, Limits())]  # a fresh compile too
    assert len({(r.output, r.fuel) for r in runs}) == 1
    assert runs[0].fuel > 100_000
    hashes = [sandbox.run(hash_search, b"6 0 3000\nabc", Limits()) for _ in range(2)]
    assert hashes[0].output == hashes[1].output and hashes[0].fuel == hashes[1].fuel


def test_an_infinite_loop_runs_out_of_fuel(sandbox):
    module = sandbox.check(mods.wasm(mods.INFINITE_LOOP))
    with pytest.raises(OutOfFuel, match="50000000 fuel"):
        sandbox.run(module, b"", Limits(fuel=50_000_000))


def test_an_infinite_loop_with_ample_fuel_hits_the_wall_clock_deadline(sandbox):
    module = sandbox.check(mods.wasm(mods.INFINITE_LOOP))
    with pytest.raises(Timeout, match=r"0\.2 s deadline"):
        sandbox.run(module, b"", Limits(fuel=10**15, wall_seconds=0.2))


def test_a_deadline_does_not_leak_into_the_next_unit(sandbox, hash_search):
    """The epoch tick of a unit that timed out must not cut the next unit short."""
    module = sandbox.check(mods.wasm(mods.INFINITE_LOOP))
    with pytest.raises(Timeout):
        sandbox.run(module, b"", Limits(fuel=10**15, wall_seconds=0.05))
    assert sandbox.run(hash_search, b"6 0 20000\nabc", Limits(wall_seconds=5)).output


def test_a_short_deadline_after_a_long_one_is_kept(sandbox, hash_search):
    """The deadline watchdog, asleep until a long deadline of the unit before, is woken for a shorter one."""
    assert sandbox.run(hash_search, b"2 0 10\nabc", Limits(wall_seconds=3600)).output
    module = sandbox.check(mods.wasm(mods.INFINITE_LOOP))
    began = time.monotonic()
    with pytest.raises(Timeout):
        sandbox.run(module, b"", Limits(fuel=10**15, wall_seconds=0.2))
    assert time.monotonic() - began < 30


def test_growing_towards_4_gib_stops_at_the_memory_limit(sandbox):
    module = sandbox.check(mods.wasm(mods.GROW_TO_4GIB))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(MemoryLimit, match="16777216-byte limit"):
        sandbox.run(module, b"", Limits(memory_bytes=16 * 1024 * 1024))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 64 * 1024  # KiB: no 4 GiB committed


def test_the_same_growth_succeeds_when_the_limit_allows_it(sandbox):
    """The control for the test above: with a 4 GiB limit the module gets its memory and exits cleanly."""
    module = sandbox.check(mods.wasm(mods.GROW_TO_4GIB))
    assert sandbox.run(module, b"", Limits(memory_bytes=4 * 1024**3)).output == b""


def test_a_module_whose_initial_memory_is_over_the_limit(sandbox):
    module = sandbox.check(mods.wasm('(module (memory (export "memory") 512) (func (export "_start")))'))
    with pytest.raises(MemoryLimit, match="initial memory"):
        sandbox.run(module, b"", Limits(memory_bytes=16 * 1024 * 1024))


def test_no_path_can_be_opened_and_nothing_is_created(sandbox, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = sandbox.check(mods.wasm(mods.OPEN_PATHS))
    with pytest.raises(NonZeroExit, match="status 108") as caught:  # 100 + EBADF: no descriptor is a directory
        sandbox.run(module, b"", Limits())
    assert caught.value.exit_code == 108
    assert list(tmp_path.iterdir()) == []
    assert not Path("/", mods.CREATED_NAME).exists()


def test_the_path_module_does_open_files_when_given_a_directory(sandbox, tmp_path):
    """The control for the test above: the same module, run by hand with a preopened directory, succeeds (and
    creates its file there), so its failure in the sandbox is the sandbox's doing."""
    store = wasmtime.Store(sandbox.engine)
    store.set_fuel(10**6)
    store.set_epoch_deadline(10**6)
    wasi = wasmtime.WasiConfig()
    wasi.preopen_dir(str(tmp_path), "/")
    store.set_wasi(wasi)
    linker = wasmtime.Linker(sandbox.engine)
    linker.define_wasi()
    instance = linker.instantiate(store, wasmtime.Module(sandbox.engine, mods.wasm(mods.OPEN_PATHS)))
    with pytest.raises(wasmtime.ExitTrap) as caught:
        instance.exports(store)["_start"](store)
    assert caught.value.code == 0
    assert (tmp_path / mods.CREATED_NAME).exists()


def test_no_environment_and_only_argv0(sandbox, monkeypatch):
    monkeypatch.setenv("PEERLOOM_SECRET", "do not leak")
    module = sandbox.check(mods.wasm(mods.COUNT_ENV_AND_ARGS))
    with pytest.raises(NonZeroExit) as caught:
        sandbox.run(module, b"", Limits())
    assert caught.value.exit_code == 1  # 0 variables * 10 + 1 argument


@pytest.mark.parametrize(
    ("wasm", "error", "match"),
    [
        (b"#!/bin/sh\nrm -rf /\n", NotWasm, "not a WebAssembly binary"),
        (b"", NotWasm, "not a WebAssembly binary"),
        (mods.INFINITE_LOOP.encode(), NotWasm, "not a WebAssembly binary"),  # text format is not accepted
        (WASM_MAGIC + b"\x01\xff\xff\xff\xff\x0f", InvalidModule, "does not validate"),
        (mods.NO_START, WrongExports, "no _start"),
        (mods.START_WITH_PARAMS, WrongExports, "no _start"),
        (mods.FOREIGN_IMPORT, WrongExports, "imports env.system"),
        (mods.UNKNOWN_WASI_IMPORT, WrongExports, "WASI preview 1 does not have: .*sock_connect"),
    ],
)
def test_modules_that_are_not_wasi_commands_are_refused_before_running(sandbox, wasm, error, match):
    if isinstance(wasm, str):
        wasm = mods.wasm(wasm)
    with pytest.raises(error, match=match):
        sandbox.check(wasm)


def test_a_trap_carries_wasmtime_s_message(sandbox):
    with pytest.raises(Trap, match="trapped: wasm `unreachable` instruction executed"):
        sandbox.run(sandbox.check(mods.wasm(mods.TRAPS)), b"", Limits())


def test_output_over_the_cap_is_an_error_not_a_truncation(sandbox):
    module = sandbox.check(mods.wasm(mods.write_bytes(1, 5000)))
    assert sandbox.run(module, b"", Limits(max_output=5000)).output == b"x" * 5000
    with pytest.raises(OutputTooLarge, match="4999-byte output cap"):
        sandbox.run(module, b"", Limits(max_output=4999))


def test_stderr_is_kept_up_to_its_cap(sandbox):
    module = sandbox.check(mods.wasm(mods.write_bytes(2, 5000, then_exit=3)))
    with pytest.raises(NonZeroExit, match=r"status 3: x+$") as caught:
        sandbox.run(module, b"", Limits(max_stderr=1500))
    assert caught.value.stderr == b"x" * 1500


def test_hostile_modules_leave_the_process_usable(sandbox, hash_search):
    """After every kind of failure, in one process, a good unit still runs and no descriptor has leaked (the
    store of each unit, which owns its stdin, is freed when the unit ends)."""
    hostile = [
        (sandbox.check(mods.wasm(text)), limits)
        for text, limits in [
            (mods.INFINITE_LOOP, Limits(fuel=10**6)),
            (mods.GROW_TO_4GIB, Limits(memory_bytes=8 * 1024 * 1024)),
            (mods.OPEN_PATHS, Limits()),
            (mods.TRAPS, Limits()),
            (mods.write_bytes(1, 3000), Limits(max_output=10)),
        ]
    ]
    fds_before = 0
    for round_ in range(4):
        if round_ == 1:  # after a first round: wasmtime's runtime and each module's memory image are set up once
            gc.collect()
            fds_before = len(os.listdir("/proc/self/fd"))
        for module, limits in hostile:
            with pytest.raises((OutOfFuel, MemoryLimit, NonZeroExit, Trap, OutputTooLarge)):
                sandbox.run(module, b"", limits)
    assert sandbox.run(hash_search, b"4 0 100\nok", Limits()).output.split()
    assert len(os.listdir("/proc/self/fd")) <= fds_before  # fewer: objects of earlier tests collected meanwhile
