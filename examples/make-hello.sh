#!/usr/bin/env bash
# Rebuilds examples/hello.oci.tar, the small image `npm run demo` loads:
# two layers made with umoci (the second deletes a file and adds a
# directory), exported with skopeo as an OCI layout tarball.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
umoci init --layout layout
umoci new --image layout:hello
umoci unpack --image layout:hello bundle
root=bundle/rootfs
mkdir -p "$root/etc" "$root/usr/share/hello"
printf 'NAME="microsandbox example"\nID=hello\n' > "$root/etc/os-release"
printf 'Hello from a microsandbox example image.\n' > "$root/usr/share/hello/greeting.txt"
printf 'scratch file removed by the second layer\n' > "$root/usr/share/hello/draft.txt"
umoci repack --refresh-bundle --image layout:hello bundle
rm "$root/usr/share/hello/draft.txt"
mkdir -p "$root/app"
printf '#!/bin/sh\ncat /usr/share/hello/greeting.txt\n' > "$root/app/hello.sh"
chmod 0755 "$root/app/hello.sh"
ln -s ../usr/share/hello/greeting.txt "$root/app/greeting"
umoci repack --refresh-bundle --image layout:hello bundle
umoci config --image layout:hello \
  --config.env PATH=/usr/local/bin:/usr/bin:/bin --config.env GREETING=hello \
  --config.entrypoint /bin/sh --config.cmd /app/hello.sh \
  --config.workingdir /app --config.user 1000:1000 --config.stopsignal SIGTERM \
  --config.label org.opencontainers.image.title=hello \
  --config.label org.opencontainers.image.description="microsandbox example image"
skopeo copy oci:layout:hello "oci-archive:$here/hello.oci.tar:example.local/microsandbox/hello:1.0"
echo "wrote $here/hello.oci.tar"
