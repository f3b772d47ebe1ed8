#!/usr/bin/env bash
# Unpacks Debian's arm64 Node.js (18, N-API 9) and the libraries it needs
# into target/arm64-node, where qemu-aarch64 runs it: the package tests load
# the linux-arm64-gnu binary in a real arm64 Node. Needs the arm64 apt
# architecture (scripts/setup-debian.sh adds it). Prints the root.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/target/arm64-node"
if [ ! -x "$root/usr/bin/node" ]; then
  debs=$(mktemp -d)
  trap 'rm -rf "$debs"' EXIT
  chmod 755 "$debs" # apt fetches as _apt
  (cd "$debs" && apt-get download -q \
    nodejs:arm64 libnode108:arm64 libc6:arm64 libgcc-s1:arm64 libstdc++6:arm64 libicu72:arm64 libssl3:arm64 \
    libuv1:arm64 libc-ares2:arm64 libbrotli1:arm64 libnghttp2-14:arm64 zlib1g:arm64 \
    node-acorn node-cjs-module-lexer node-undici node-xtend >&2)
  rm -rf "$root.tmp" && mkdir -p "$root.tmp"
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$root.tmp"; done
  rm -rf "$root" && mv "$root.tmp" "$root"
fi
echo "$root"
