#!/usr/bin/env bash
# Every test: the Rust engine (cargo test) and the Node API (jest), against
# one release build, for linux-x64-gnu natively and for linux-arm64-gnu
# cross-built and run under qemu-user. Installs missing Debian tools first
# when it can.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=(nasm autoreconf libtoolize skopeo umoci fsck.erofs dump.erofs mkfs.erofs docker-registry qemu-img qemu-system-x86_64 busybox pigz libdeflate-gunzip zstd htpasswd openssl aarch64-linux-gnu-gcc qemu-aarch64 tmux)
missing=()
for tool in "${tools[@]}"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ! compgen -G "/boot/vmlinuz-6.12*" >/dev/null; then missing+=("linux-image-amd64 (6.12, bookworm-backports)"); fi
if ! dpkg --print-foreign-architectures | grep -qx arm64; then missing+=("the arm64 apt architecture"); fi
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
# House rules first, so a formatting slip or a lint fails fast.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
host=$(rustc -vV | sed -n 's/^host: //p')
arm=aarch64-unknown-linux-gnu
rustup target list --installed | grep -qx "$arm" || rustup target add "$arm"
npx napi build --platform --release
npx napi build --platform --release --target "$arm"
scripts/arm64-node.sh >/dev/null
# The generated binding must be committed in sync with the Rust code.
if git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --quiet -- index.js index.d.ts; then
  echo "index.js / index.d.ts differ from the generated ones: commit them" >&2
  git --no-pager diff --stat -- index.js index.d.ts >&2
  exit 1
fi
cargo test --release --target "$host" -p msb-erofs -p msb-oci -p msb-registry -p msb-cache
# The same engine tests on arm64 (runner: qemu-aarch64, .cargo/config.toml),
# but for the one timing assertion, which emulation cannot meet; it ran above.
cargo test --release --target "$arm" -p msb-erofs -p msb-oci -p msb-registry -p msb-cache -- --skip fsmeta_for_ten_layers_of_5000_files_is_fast
npx jest --ci "$@"
