#!/usr/bin/env bash
# Every test: the Rust engine (cargo test) and the Node API (jest), against
# one release build of every configured target (scripts/build-targets.sh):
# linux-x64-gnu natively, linux-arm64-gnu under qemu-user, win32-x64-msvc
# under Wine, darwin-arm64 checked as a file (__test__/platforms.spec.ts).
# Installs missing Debian tools and the pinned cross tools first when it can.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=(nasm autoreconf libtoolize skopeo umoci fsck.erofs dump.erofs mkfs.erofs docker-registry qemu-img qemu-system-x86_64 busybox pigz libdeflate-gunzip zstd htpasswd openssl aarch64-linux-gnu-gcc qemu-aarch64 tmux x86_64-w64-mingw32-gcc-win32 wine wineboot llvm-objdump python3 docker-credential-pass pass gpg mkfs.ext4 e2fsck debugfs)
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
scripts/cross-tools.sh
host=$(rustc -vV | sed -n 's/^host: //p')
arm=aarch64-unknown-linux-gnu
mac=aarch64-apple-darwin
win=x86_64-pc-windows-gnu
scripts/build-targets.sh
scripts/arm64-node.sh >/dev/null
scripts/wine-run.sh --init
trap 'scripts/wine-run.sh --stop' EXIT
# The generated binding must be committed in sync with the Rust code.
if git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --quiet -- index.js index.d.ts; then
  echo "index.js / index.d.ts differ from the generated ones: commit them" >&2
  git --no-pager diff --stat -- index.js index.d.ts >&2
  exit 1
fi
# Both foreign targets lint clean (release, so the C libraries built above
# are reused); the darwin one through cargo-zigbuild, as it was built.
crates=(-p msb-erofs -p msb-oci -p msb-registry -p msb-cache -p microsandbox-node)
PATH="$PWD/target/tools/zig/ziglang:$PWD/target/tools/cargo-zigbuild/bin:$PATH" MACOSX_DEPLOYMENT_TARGET=11.0 \
  cargo-zigbuild clippy --release --target "$mac" "${crates[@]}" -- -D warnings
cargo clippy --release --target "$win" "${crates[@]}" -- -D warnings
engine=(-p msb-erofs -p msb-oci -p msb-registry -p msb-cache)
cargo test --release --target "$host" "${engine[@]}"
# What differs between systems (crates/cache/src/os.rs), the store built on
# it and the gzip decoder Windows uses (zlib-rs), as Windows code, under
# Wine (runner: scripts/wine-run.sh).
cargo test --release --target "$win" -p msb-cache --lib -- os:: store:: compression::
# The same engine tests on arm64 (runner: qemu-aarch64, .cargo/config.toml),
# but for the one timing assertion, which emulation cannot meet; it ran above.
cargo test --release --target "$arm" "${engine[@]}" -- --skip fsmeta_for_ten_layers_of_5000_files_is_fast
npx jest --ci "$@"
