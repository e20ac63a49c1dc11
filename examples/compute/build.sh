#!/bin/sh
# Rebuilds the example work-unit modules from their C sources with the ziglang package from PyPI
# (pip install ziglang==0.17.1; no other toolchain needed). The builds are reproducible: the same source and
# ziglang version give the same bytes. PYTHON picks the interpreter, OUT the directory (default: next to the sources).
# -msimd128: wasm SIMD, as native x86-64 builds get SSE2 (the sandbox's engine keeps SIMD deterministic: NaNs
# canonicalised, relaxed SIMD in its deterministic variant). Measured on 2026-12-03: signal_search's FFT barely
# vectorises, so it runs within noise of the scalar build (best CPU time 0.260 vs 0.257 s a unit of 2^20 samples).
set -eu
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python}
OUT=${OUT:-.}
for name in signal_search hash_search; do
    "$PYTHON" -m ziglang cc --target=wasm32-wasi -O2 -msimd128 -s -o "$OUT/$name.wasm" "$name.c" -lm
done
