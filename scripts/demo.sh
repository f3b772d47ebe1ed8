#!/usr/bin/env bash
# The main job on embedded defaults: build the addon, load the bundled
# example image into a temporary cache, and show list / inspect / acquire /
# prune. Pass an archive path to load that instead.
set -euo pipefail
cd "$(dirname "$0")/.."
# ISA-L (gzip) builds with nasm and autotools.
if ! command -v nasm >/dev/null || ! command -v autoreconf >/dev/null; then
  scripts/setup-debian.sh --build
fi
[ -d node_modules/@napi-rs/cli ] || npm install --no-audit --no-fund
npx napi build --platform --release
exec node scripts/demo.mjs "$@"
