#!/bin/sh
# Rebuilds the example work-unit modules from their C sources with the ziglang package from PyPI
# (pip install ziglang==0.17.1; no other toolchain needed). Run from anywhere; PYTHON picks the interpreter.
set -eu
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python}
for name in signal_search hash_search; do
    "$PYTHON" -m ziglang cc --target=wasm32-wasi -O2 -s -o "$name.wasm" "$name.c" -lm
done
