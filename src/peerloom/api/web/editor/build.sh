#!/bin/sh
# Rebuilds ../docs-editor.js, the browser editor of documents (editor.js with CodeMirror 6, yjs, y-codemirror.next
# and y-protocols), as one ES module with esbuild, from the exact versions in package-lock.json. The build is
# reproducible: the same lock and sources give the same bytes (tests/integration/apps/docs/test_editor_bundle.py).
# OUT picks the directory of the output (default: the web UI's folder, where the daemon serves it from).
set -eu
cd "$(dirname "$0")"
OUT=${OUT:-..}
npm ci --ignore-scripts --no-audit --no-fund --loglevel=warn
node node_modules/esbuild/bin/esbuild editor.js --bundle --format=esm --platform=browser --target=es2020 \
    --minify --legal-comments=none --charset=utf8 --log-level=warning --outfile="$OUT/docs-editor.js"
