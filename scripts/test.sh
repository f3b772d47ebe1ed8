#!/usr/bin/env bash
# Every test: the Rust engine (cargo test) and the Node API (jest), against
# one release build. Installs missing Debian tools first when it can.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=(nasm autoreconf libtoolize skopeo umoci fsck.erofs dump.erofs mkfs.erofs docker-registry qemu-img qemu-system-x86_64 busybox pigz libdeflate-gunzip zstd htpasswd openssl)
missing=()
for tool in "${tools[@]}"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ! compgen -G "/boot/vmlinuz-6.12*" >/dev/null; then missing+=("linux-image-amd64 (6.12, bookworm-backports)"); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing test tools: ${missing[*]}"
  if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || command -v sudo >/dev/null; }; then
    scripts/setup-debian.sh
  else
    echo "install them with scripts/setup-debian.sh (Debian) and run again" >&2
    exit 1
  fi
fi
[ -d node_modules/@napi-rs/cli ] || npm install --no-audit --no-fund
host=$(rustc -vV | sed -n 's/^host: //p')
npx napi build --platform --release
# The generated binding must be committed in sync with the Rust code.
if git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --quiet -- index.js index.d.ts; then
  echo "index.js / index.d.ts differ from the generated ones: commit them" >&2
  git --no-pager diff --stat -- index.js index.d.ts >&2
  exit 1
fi
cargo test --release --target "$host" -p msb-erofs -p msb-cache
npx jest --ci "$@"
