#!/usr/bin/env bash
# Builds the addon for every target in package.json's napi.targets, each
# as microsandbox.<platform>.node in the package root (README, "Platforms"):
#   linux-x64-gnu    native (x86_64-unknown-linux-gnu)
#   linux-arm64-gnu  aarch64-unknown-linux-gnu, Debian's aarch64 gcc links
#   darwin-arm64     aarch64-apple-darwin, `napi build -x`: cargo-zigbuild
#                    with zig as C compiler and Mach-O linker, macOS 11.0 on
#   win32-x64-msvc   x86_64-pc-windows-gnu, Debian's MinGW gcc links; the
#                    DLL is named as the loader expects on the official
#                    node.exe (it speaks only N-API's C ABI, so which C
#                    toolchain built it does not matter to Node)
# Then fails if a configured target produced no binary. Needs the tools of
# scripts/setup-debian.sh and scripts/cross-tools.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$PWD/target/tools"
napi=(npx napi build --platform --release)

for t in aarch64-unknown-linux-gnu aarch64-apple-darwin x86_64-pc-windows-gnu; do
  rustup target list --installed | grep -qx "$t" || rustup target add "$t"
done

"${napi[@]}"
"${napi[@]}" --target aarch64-unknown-linux-gnu
# Pinned zig and cargo-zigbuild first on PATH, so napi finds them rather
# than installing a cargo-zigbuild of its own choosing. rustc's default
# minimum for this target is 11.0; zig's own default differs, so both are
# told.
PATH="$tools/zig/ziglang:$tools/cargo-zigbuild/bin:$PATH" MACOSX_DEPLOYMENT_TARGET=11.0 \
  "${napi[@]}" --target aarch64-apple-darwin --cross-compile
"${napi[@]}" --target x86_64-pc-windows-gnu
mv -f microsandbox.win32-x64-gnu.node microsandbox.win32-x64-msvc.node

node -e '
const fs = require("fs");
const { napi } = require("./package.json");
const name = { "x86_64-unknown-linux-gnu": "linux-x64-gnu", "aarch64-unknown-linux-gnu": "linux-arm64-gnu",
  "aarch64-apple-darwin": "darwin-arm64", "x86_64-pc-windows-msvc": "win32-x64-msvc" };
const missing = napi.targets.filter((t) => !name[t] || !fs.existsSync(`microsandbox.${name[t]}.node`));
if (missing.length) { console.error(`configured targets without a binary: ${missing.join(", ")}`); process.exit(1); }
'
