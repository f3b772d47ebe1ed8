#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks need. Idempotent.
# The kernel (6.12) and QEMU come from bookworm-backports: older kernels
# cannot mount a multi-device EROFS image from one flat disk.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  $sudo tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
fi
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends \
  skopeo umoci erofs-utils docker-registry busybox-static cpio xz-utils \
  pigz libdeflate-tools zstd apache2-utils openssl attr ca-certificates
$sudo apt-get install -y -q --no-install-recommends -t bookworm-backports \
  qemu-system-x86 qemu-utils linux-image-amd64
