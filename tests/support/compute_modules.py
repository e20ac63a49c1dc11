"""Work-unit modules for the compute tests: the example programs (built from examples/compute/*.c) and hostile
modules written as WebAssembly text, plus pure-Python references for the examples' answers."""

from __future__ import annotations

import cmath
import hashlib
import math
import random
import struct
from pathlib import Path

import wasmtime

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "compute"
SIGNAL_SEARCH = EXAMPLES / "signal_search.wasm"
HASH_SEARCH = EXAMPLES / "hash_search.wasm"

_WASI = "wasi_snapshot_preview1"
_EXIT = f'(import "{_WASI}" "proc_exit" (func $exit (param i32)))'
_WRITE = f'(import "{_WASI}" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))'

INFINITE_LOOP = '(module (func (export "_start") (loop $forever (br $forever))))'

# Grows its memory a page at a time towards 4 GiB (65536 pages); when a grow fails it gives up with a trap, as a
# C program's failed malloc would end in abort().
GROW_TO_4GIB = """(module (memory (export "memory") 1)
  (func (export "_start")
    (loop $more
      (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))
      (br_if $more (i32.lt_u (memory.size) (i32.const 65536))))))"""

# Tries every descriptor 0..9 as the directory to open /etc/passwd for reading and to create a file (rights 66:
# fd_read and fd_write): with no preopened directory each attempt fails. It exits 0 if one succeeds, else 100 + the
# last errno (EBADF is 8).
OPEN_PATHS = f"""(module {_EXIT}
  (import "{_WASI}" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "/etc/passwd")
  (data (i32.const 64) "created-by-sandbox")
  (func (export "_start") (local $fd i32) (local $err i32)
    (loop $next
      (local.set $err (call $open (local.get $fd) (i32.const 1) (i32.const 16) (i32.const 11) (i32.const 0)
                                  (i64.const 66) (i64.const 0) (i32.const 0) (i32.const 8)))
      (if (i32.eqz (local.get $err)) (then (call $exit (i32.const 0))))
      (local.set $err (call $open (local.get $fd) (i32.const 0) (i32.const 64) (i32.const 18) (i32.const 1)
                                  (i64.const 66) (i64.const 0) (i32.const 0) (i32.const 8)))
      (if (i32.eqz (local.get $err)) (then (call $exit (i32.const 0))))
      (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $fd) (i32.const 10))))
    (call $exit (i32.add (i32.const 100) (local.get $err)))))"""
CREATED_NAME = "created-by-sandbox"

# Exits with 10 * (environment variables) + (arguments): a clean sandbox gives 1 (argv[0] only).
COUNT_ENV_AND_ARGS = f"""(module {_EXIT}
  (import "{_WASI}" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
  (import "{_WASI}" "args_sizes_get" (func $args (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $env (i32.const 0) (i32.const 4)))
    (drop (call $args (i32.const 8) (i32.const 12)))
    (call $exit (i32.add (i32.mul (i32.load (i32.const 0)) (i32.const 10)) (i32.load (i32.const 8))))))"""


def write_bytes(fd: int, count: int, then_exit: int = 0) -> str:
    """A module writing `count` bytes of 'x' to `fd` in 1000-byte writes (stopping at the first failed write),
    then exiting with `then_exit`."""
    return f"""(module {_EXIT} {_WRITE}
  (memory (export "memory") 1)
  (func (export "_start") (local $left i32) (local $n i32)
    (memory.fill (i32.const 64) (i32.const 120) (i32.const 1000))
    (local.set $left (i32.const {count}))
    (block $done (loop $more
      (br_if $done (i32.eqz (local.get $left)))
      (local.set $n (select (i32.const 1000) (local.get $left) (i32.gt_u (local.get $left) (i32.const 1000))))
      (i32.store (i32.const 0) (i32.const 64))
      (i32.store (i32.const 4) (local.get $n))
      (br_if $done (call $write (i32.const {fd}) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $left (i32.sub (local.get $left) (local.get $n)))
      (br $more)))
    (call $exit (i32.const {then_exit}))))"""


NO_START = '(module (memory (export "memory") 1) (func (export "main")))'
START_WITH_PARAMS = '(module (func (export "_start") (param i32)))'
FOREIGN_IMPORT = '(module (import "env" "system" (func (param i32))) (func (export "_start")))'
UNKNOWN_WASI_IMPORT = f'(module (import "{_WASI}" "sock_connect" (func)) (func (export "_start")))'
TRAPS = '(module (func (export "_start") unreachable))'


def wasm(text: str) -> bytes:
    return wasmtime.wat2wasm(text)


def noisy_tone(n: int, tone_bin: int, seed: int, amplitude: float = 0.25) -> bytes:
    """`n` float32 samples (little-endian) of Gaussian noise (sigma 1) plus a sine of `amplitude` at `tone_bin`."""
    rng = random.Random(seed)
    samples = [amplitude * math.sin(2 * math.pi * tone_bin * i / n + 0.3) + rng.gauss(0.0, 1.0) for i in range(n)]
    return struct.pack(f"<{n}f", *samples)


def _fft(values: list[complex]) -> list[complex]:
    n = len(values)
    if n == 1:
        return values
    even, odd = _fft(values[0::2]), _fft(values[1::2])
    twiddled = [cmath.exp(-2j * math.pi * k / n) * odd[k] for k in range(n // 2)]
    return [even[k] + twiddled[k] for k in range(n // 2)] + [even[k] - twiddled[k] for k in range(n // 2)]


def signal_peak(chunk: bytes) -> tuple[int, float, float]:
    """The reference answer of signal_search.c: (bin, power, power / mean power of the other bins 1..n/2)."""
    n = len(chunk) // 4
    spectrum = _fft([complex(x) for x in struct.unpack(f"<{n}f", chunk)])
    powers = [abs(spectrum[k]) ** 2 for k in range(1, n // 2 + 1)]
    best = max(range(len(powers)), key=powers.__getitem__)
    floor = sum(p for k, p in enumerate(powers) if k != best) / (len(powers) - 1)
    return best + 1, powers[best], powers[best] / floor


def hash_hits(prefix: bytes, bits: int, first: int, count: int) -> list[int]:
    """The reference answer of hash_search.c: nonces whose SHA-256(prefix || nonce, 8 bytes big-endian) starts
    with `bits` zero bits."""
    return [
        nonce for nonce in range(first, first + count)
        if int.from_bytes(hashlib.sha256(prefix + nonce.to_bytes(8, "big")).digest(), "big") >> (256 - bits) == 0
    ]
