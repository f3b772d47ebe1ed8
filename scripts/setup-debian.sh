#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need. Idempotent.
#   scripts/setup-debian.sh          build tools and test tools
#   scripts/setup-debian.sh --build  build tools only (what `npm run demo` needs)
# The build needs nasm and autotools for ISA-L (gzip inflate). The tests need
# the real components they check against; the kernel (6.12) and QEMU come
# from bookworm-backports, as older kernels cannot mount a multi-device EROFS
# image from one flat disk. The linux-arm64-gnu binary is cross-built with
# Debian's aarch64 gcc and tested under qemu-user with Debian's arm64 Node
# (the arm64 apt architecture; scripts/arm64-node.sh unpacks it). The
# win32-x64 binary is built with Debian's MinGW gcc and run under Debian's
# Wine; the darwin-arm64 one is inspected with LLVM's objdump. Last, the
# pinned tools Debian lacks (zig, cargo-zigbuild, official Node builds) come
# from PyPI wheels: scripts/cross-tools.sh.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
build_tools=(nasm autoconf automake libtool make)
if [ "${1:-}" = "--build" ]; then
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${build_tools[@]}"
  exit 0
fi
dpkg --print-foreign-architectures | grep -qx arm64 || $sudo dpkg --add-architecture arm64
$sudo apt-get update -q
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  $sudo tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  $sudo apt-get update -q
fi
$sudo apt-get install -y -q --no-install-recommends "${build_tools[@]}" \
  skopeo umoci erofs-utils docker-registry busybox-static cpio xz-utils \
  pigz libdeflate-tools zstd apache2-utils openssl attr ca-certificates \
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross tmux \
  gcc-mingw-w64-x86-64 wine wine64 llvm \
  golang-docker-credential-helpers pass gnupg e2fsprogs
python3 -m pip --version >/dev/null 2>&1 || $sudo apt-get install -y -q --no-install-recommends python3-pip
$sudo apt-get install -y -q --no-install-recommends -t bookworm-backports \
  qemu-system-x86 qemu-user qemu-utils linux-image-amd64
"$(dirname "$0")/cross-tools.sh"
