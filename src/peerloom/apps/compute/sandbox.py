"""The sandbox a work unit runs in: one WebAssembly module (a WASI preview 1 command) on one input, under limits.

A stranger's code gets nothing but its input and a place to write its answer: WASI with no preopened directory
(so no path can be opened), no environment, a fixed `argv[0]`, no sockets; stdin is the unit's input, stdout and
stderr are captured and capped. Every resource is bounded: fuel (wasmtime's count of executed instructions, the
same on every machine, so a unit's cost is deterministic and can be credited), the linear memory (a store limit:
`memory.grow` fails past it), and wall-clock time (an epoch deadline, for the time fuel cannot see). A module is
checked before it runs: a wasm binary, valid, exporting `_start` and importing only WASI preview 1 functions.

Each way a unit can fail has its own error, with a message fit to show a user; a unit that succeeds gives a
`UnitResult`. The engine is configured for bit-identical results across machines (NaN canonicalisation, the
deterministic relaxed-SIMD variant, no threads), since volunteers' replies are compared by hash.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass

import wasmtime

from peerloom.errors import PeerloomError

WASI_MODULE = "wasi_snapshot_preview1"
WASM_MAGIC = b"\0asm\x01\0\0\0"  # the binary format's magic and version 1 (WebAssembly core spec 5.5.16)
WASM_PAGE = 65536
ARGV0 = "unit"


@dataclass(frozen=True)
class Limits:
    """What one unit may use. `fuel` counts wasm instructions (roughly one per instruction); the memory limit is on
    the module's linear memory; the output caps are on what it writes to stdout and stderr."""

    fuel: int = 10_000_000_000
    memory_bytes: int = 256 * 1024 * 1024
    wall_seconds: float = 60.0
    max_output: int = 1024 * 1024
    max_stderr: int = 64 * 1024

    def __post_init__(self) -> None:
        if self.fuel < 1 or self.memory_bytes < WASM_PAGE or self.wall_seconds <= 0:
            raise ValueError("limits must allow some fuel, at least one page of memory and some time")
        if self.max_output < 0 or self.max_stderr < 0:
            raise ValueError("output caps cannot be negative")


@dataclass(frozen=True)
class UnitResult:
    """A unit that ran to completion and exited with status 0: what it wrote and what it cost. `output` is what
    volunteers compare; `fuel` is deterministic (the same module and input always consume the same fuel), the wall
    time is not."""

    output: bytes
    fuel: int
    wall_seconds: float
    stderr: bytes = b""


class SandboxError(PeerloomError):
    """A work unit failed; the subclass says how. Each takes only its message, so it crosses a process boundary
    (pickle) unchanged."""


class NotWasm(SandboxError):
    """The module is not a WebAssembly binary (no `\\0asm` version 1 header)."""


class InvalidModule(SandboxError):
    """The module has the header of a wasm binary but does not validate, or cannot be instantiated."""


class WrongExports(SandboxError):
    """The module is not a WASI command: no `_start() -> ()` export, or an import outside WASI preview 1."""


class OutOfFuel(SandboxError):
    """The unit executed its whole instruction budget without finishing."""


class MemoryLimit(SandboxError):
    """The unit needed more linear memory than its limit allows."""


class Timeout(SandboxError):
    """The unit ran past its wall-clock deadline."""


class Trap(SandboxError):
    """The module trapped (an unreachable, an out-of-bounds access, a stack overflow, …); the message is wasmtime's."""


class OutputTooLarge(SandboxError):
    """The unit wrote more than its cap to stdout: an error, never a silently truncated answer."""


class NonZeroExit(SandboxError):
    """The module exited with a non-zero status (its own way of saying it failed)."""

    def __init__(self, message: str, exit_code: int = 1, stderr: bytes = b"") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.stderr = stderr

    def __reduce__(self) -> tuple:
        return (NonZeroExit, (str(self), self.exit_code, self.stderr))


def make_engine() -> wasmtime.Engine:
    """An engine that meters fuel, honours epoch deadlines and computes bit-identical results everywhere."""
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    config.cranelift_nan_canonicalization = True  # NaN bit patterns otherwise depend on the CPU (SIMD lanes too)
    # SIMD (the examples are built with -msimd128) is deterministic but for NaN bits, canonicalised above; relaxed
    # SIMD's instructions may differ between CPUs unless pinned to their deterministic variant
    config.wasm_simd = True
    config.wasm_relaxed_simd_deterministic = True
    config.wasm_threads = False
    config.shared_memory = False
    config.wasm_memory64 = False  # the memory limit and the page arithmetic below assume 32-bit memories
    config.parallel_compilation = False  # a worker process owns one core; compile threads would steal the other
    return wasmtime.Engine(config)


class _Capture:
    """A capped sink for stdout or stderr: keeps at most `cap` bytes and remembers whether more was written.
    Past the cap it reports an I/O error to the module (a negative errno), which stops most writers early."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflowed = False

    def write(self, data: bytes) -> int:
        if self.size + len(data) > self.cap:
            self.overflowed = True
            room = self.cap - self.size
            if room > 0:
                self.chunks.append(data[:room])
                self.size = self.cap
            return -27  # EFBIG: the module's write fails rather than being dropped unseen
        self.chunks.append(data)
        self.size += len(data)
        return len(data)

    def value(self) -> bytes:
        return b"".join(self.chunks)


class _Watchdog:
    """Ends the running unit at its wall-clock deadline by bumping the engine's epoch, from one thread kept for the
    sandbox's life (a timer thread started and joined per unit took half of a no-op unit's time).

    `arm` and `disarm` bracket a unit; the epoch is only ever bumped under the lock while a deadline is armed, so once
    `disarm` returns, a late deadline can no longer cut the next unit short."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self._engine = engine
        self._cond = threading.Condition()
        self._due: float | None = None
        self._wakes_at = math.inf  # when the thread wakes next by itself
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float) -> None:
        with self._cond:
            self._due = time.monotonic() + seconds
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="peerloom-unit-deadline", daemon=True)
                self._thread.start()
            if self._due < self._wakes_at:  # else it wakes before the deadline anyway: no switch to it per unit
                self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._due = None

    def _watch(self) -> None:
        with self._cond:
            while True:
                if self._due is None:
                    self._wakes_at = math.inf
                    self._cond.wait()
                    continue
                left = self._due - time.monotonic()
                if left > 0:
                    self._wakes_at = self._due
                    self._cond.wait(left)
                else:
                    self._due = None
                    self._engine.increment_epoch()


class Sandbox:
    """Checks and runs WASI command modules, one unit at a time, on one engine (one per worker process)."""

    def __init__(self) -> None:
        self.engine = make_engine()
        self._linker = wasmtime.Linker(self.engine)
        self._linker.define_wasi()
        self._watchdog = _Watchdog(self.engine)

    def check(self, wasm: bytes) -> wasmtime.Module:
        """Compile `wasm` after checking that it is a valid binary and a WASI preview 1 command."""
        if not wasm.startswith(WASM_MAGIC):
            raise NotWasm("the module is not a WebAssembly binary (no \\0asm version 1 header)")
        try:
            wasmtime.Module.validate(self.engine, wasm)
            module = wasmtime.Module(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise InvalidModule(f"the module does not validate: {_describe(exc)}") from None
        for imp in module.imports:
            if imp.module != WASI_MODULE or not isinstance(imp.type, wasmtime.FuncType):
                raise WrongExports(f"the module imports {imp.module}.{imp.name}: only {WASI_MODULE} functions are "
                                   "provided")
        start = [e for e in module.exports if e.name == "_start"]
        if not start or not isinstance(start[0].type, wasmtime.FuncType) or start[0].type.params \
                or start[0].type.results:
            raise WrongExports("the module exports no _start() function: it is not a WASI command")
        try:
            self._linker.instantiate_pre(module)  # resolves every import against the WASI functions we define
        except wasmtime.WasmtimeError as exc:
            raise WrongExports(f"the module imports a function WASI preview 1 does not have: {_describe(exc)}") \
                from None
        return module

    def run(self, module: wasmtime.Module, stdin: bytes, limits: Limits) -> UnitResult:
        """Run a checked module's `_start` on `stdin` under `limits`; raise the `SandboxError` that says why not."""
        outcome = self._execute(module, stdin, limits)
        if isinstance(outcome, SandboxError):
            # Raised here, not inside _execute: the traceback then keeps no frame holding the store, whose WASI
            # context owns the stdin descriptor, so that is freed as soon as the unit is over.
            raise outcome
        return outcome

    def _execute(self, module: wasmtime.Module, stdin: bytes, limits: Limits) -> UnitResult | SandboxError:
        store = wasmtime.Store(self.engine)
        try:
            return self._execute_in(store, module, stdin, limits)
        finally:
            # Freed now, not whenever the garbage collector gets to it: the store's WASI context owns the stdin
            # descriptor and the output callbacks, which must not be called while the interpreter shuts down.
            store.close()

    def _execute_in(self, store: wasmtime.Store, module: wasmtime.Module, stdin: bytes,
                    limits: Limits) -> UnitResult | SandboxError:
        store.set_limits(memory_size=limits.memory_bytes, instances=1, tables=1, memories=1)
        store.set_fuel(limits.fuel)
        stdout, stderr = _Capture(limits.max_output), _Capture(limits.max_stderr)
        # WASI takes stdin from a file: a temporary one, unlinked as soon as wasmtime has opened it.
        fd, stdin_path = tempfile.mkstemp(prefix="peerloom-unit-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(stdin)
            wasi = wasmtime.WasiConfig()  # no preopen_dir, no env, no inherit_*: nothing of the host is visible
            wasi.argv = [ARGV0]
            wasi.stdin_file = stdin_path
            wasi.stdout_custom = stdout.write
            wasi.stderr_custom = stderr.write
            store.set_wasi(wasi)
        finally:
            os.unlink(stdin_path)  # wasmtime opened it: the data stays readable through its descriptor
        try:
            instance = self._linker.instantiate(store, module)
        except wasmtime.WasmtimeError as exc:
            return _instantiation_error(exc)
        start = instance.exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)  # check() made sure
        store.set_epoch_deadline(1)
        began = time.perf_counter()
        self._watchdog.arm(limits.wall_seconds)
        exit_code = 0
        failure: Exception | None = None
        try:
            start(store)
        except wasmtime.ExitTrap as exc:
            exit_code = exc.code
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            failure = exc
        finally:
            # A deadline that fires after this point must not cut the next unit short (its store sets its own
            # deadline relative to the epoch at that moment): disarmed, the watchdog bumps the epoch no more.
            self._watchdog.disarm()
        wall = time.perf_counter() - began
        fuel = limits.fuel - store.get_fuel()
        if failure is not None:
            return _run_error(failure, instance, store, limits)
        if stdout.overflowed:
            return OutputTooLarge(f"the unit wrote more than its {limits.max_output}-byte output cap")
        if exit_code != 0:
            if _memory_exhausted(instance, store, limits):
                return MemoryLimit(f"the unit exited with status {exit_code} with its memory at the "
                                   f"{limits.memory_bytes}-byte limit")
            tail = stderr.value()[-200:].decode("utf-8", "replace").strip()
            return NonZeroExit(f"the module exited with status {exit_code}" + (f": {tail}" if tail else ""),
                               exit_code, stderr.value())
        return UnitResult(stdout.value(), fuel, wall, stderr.value())


def _describe(exc: Exception) -> str:
    """wasmtime's message without its backtrace: the chain of causes ("memory fault at …; wasm trap: out of bounds
    memory access"), or the first line when there is no chain."""
    text = str(exc).strip()
    if "Caused by:" in text:
        causes = [line.strip().split(": ", 1)[-1] for line in text.split("Caused by:", 1)[1].splitlines()]
        return "; ".join(cause for cause in causes if cause)
    return text.splitlines()[0] if text else type(exc).__name__


def _instantiation_error(exc: wasmtime.WasmtimeError) -> SandboxError:
    message = _describe(exc)
    if "memory" in message and ("limit" in message or "exceeds" in message):
        return MemoryLimit(f"the module's initial memory is over the limit: {message}")
    return InvalidModule(f"the module cannot be instantiated: {message}")


def _memory_exhausted(instance: wasmtime.Instance, store: wasmtime.Store, limits: Limits) -> bool:
    """Whether the module's memory is within a page of its limit: a store limit makes `memory.grow` return -1 and
    wasmtime's C API does not say that it did, so a unit that fails with no room left to grow failed for memory."""
    memory = instance.exports(store).get("memory")
    if not isinstance(memory, wasmtime.Memory):
        return False
    return (memory.size(store) + 1) * WASM_PAGE > limits.memory_bytes


def _run_error(exc: Exception, instance: wasmtime.Instance, store: wasmtime.Store,
               limits: Limits) -> SandboxError:
    code = exc.trap_code if isinstance(exc, wasmtime.Trap) else None
    if code is wasmtime.TrapCode.OUT_OF_FUEL:
        return OutOfFuel(f"the unit used all of its {limits.fuel} fuel without finishing")
    if code is wasmtime.TrapCode.INTERRUPT:
        return Timeout(f"the unit ran past its {limits.wall_seconds:g} s deadline")
    if _memory_exhausted(instance, store, limits):
        return MemoryLimit(f"the unit trapped with its memory at the {limits.memory_bytes}-byte limit: "
                           f"{_describe(exc)}")
    return Trap(f"the module trapped: {_describe(exc)}")
