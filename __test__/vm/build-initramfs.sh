#!/bin/bash
# Build the busybox initramfs used by __test__/support/vm.ts.
#
#   build-initramfs.sh <modules-dir> <output.cpio.gz> [busybox]
#
# <modules-dir> is /lib/modules/<kernel-release> of the kernel that will boot
# the image. The kernel modules needed to read an EROFS filesystem from a
# virtio-blk disk (erofs, virtio_blk and everything they depend on according to
# modules.dep, plus modules.softdep "pre:" dependencies resolved through
# modules.alias) are decompressed (.ko.xz/.ko.zst/.ko.gz -> .ko) into
# /lib/modules of the image, with /modules.load listing them in load order
# (dependencies first). Each line is "<required|optional> <file.ko>": softdeps
# are optional because some alias candidates cannot load on every CPU (e.g.
# crc32c_intel needs SSE4.2, which QEMU's default TCG CPU does not have).
#
# Virtio transport: on Debian's 6.12 kernel CONFIG_VIRTIO, CONFIG_VIRTIO_PCI
# and CONFIG_VIRTIO_CONSOLE are built in (=y); CONFIG_VIRTIO_BLK and
# CONFIG_EROFS_FS are modules. Modules that are built in (modules.builtin) are
# skipped automatically, so the same script works for other kernel configs.
#
# The image contains: /init (init.sh next to this script), a static busybox as
# /bin/busybox plus applet symlinks, the modules, and /dev/console. Must run as
# root (mknod /dev/console; the kernel modules directory is world-readable).
#
# A harness that needs more (support/powerloss.ts: ext4 and a program) names
# it in the environment: VM_EXTRA_MODULES, more modules resolved as above
# (space-separated); VM_EXTRA_FILES, lines "<host path> <path in the image>",
# each copied with the shared libraries `ldd` names for it at their paths.
set -euo pipefail

moddir=${1:?usage: build-initramfs.sh <modules-dir> <output.cpio.gz> [busybox]}
out=${2:?usage: build-initramfs.sh <modules-dir> <output.cpio.gz> [busybox]}
busybox=${3:-/bin/busybox}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Modules the guest needs; everything else is derived from modules.dep.
targets=(virtio_blk erofs ${VM_EXTRA_MODULES:-})

for f in modules.dep modules.alias modules.softdep modules.builtin; do
  [ -r "$moddir/$f" ] || { echo "build-initramfs: missing $moddir/$f" >&2; exit 1; }
done
for cmd in cpio gzip xz; do
  command -v "$cmd" >/dev/null || { echo "build-initramfs: '$cmd' not found in PATH" >&2; exit 1; }
done

stage=$(mktemp -d "${TMPDIR:-/tmp}/vm-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT

declare -A dep_line=() builtin=() state=() optional=()
order=()

# modules.dep: "kernel/fs/erofs/erofs.ko.xz: kernel/lib/libcrc32c.ko.xz"
while IFS= read -r line; do
  path=${line%%:*}
  base=${path##*/}; name=${base%%.ko*}; name=${name//-/_}
  dep_line[$name]=$line
done < "$moddir/modules.dep"
while IFS= read -r path; do
  base=${path##*/}; name=${base%%.ko*}; name=${name//-/_}
  builtin[$name]=1
done < "$moddir/modules.builtin"

# All modules that provide alias $1 (or the module itself when $1 is a name).
resolve() {
  local want=${1//-/_}
  if [ -n "${dep_line[$want]:-}" ] || [ -n "${builtin[$want]:-}" ]; then echo "$want"; return; fi
  awk -v a="$1" '$1 == "alias" && $2 == a { gsub(/-/, "_", $3); print $3 }' "$moddir/modules.alias"
}

softdeps_pre() {
  awk -v m="$1" '$1 == "softdep" && $2 == m {
      pre = 0
      for (i = 3; i <= NF; i++) {
        if ($i == "pre:") { pre = 1; continue }
        if ($i == "post:") { pre = 0; continue }
        if (pre) print $i
      }
    }' "$moddir/modules.softdep"
}

visit() {  # visit <name> <optional 0|1>
  local name=$1 opt=$2
  [ -n "${builtin[$name]:-}" ] && return 0
  if [ -z "${dep_line[$name]:-}" ]; then
    if [ "$opt" = 1 ]; then return 0; fi
    echo "build-initramfs: module '$name' is neither in modules.dep nor modules.builtin of $moddir" >&2
    exit 1
  fi
  case ${state[$name]:-} in
    done) [ "$opt" = 0 ] && optional[$name]=0; return 0 ;;
    busy) return 0 ;;
  esac
  state[$name]=busy
  local alias cand dep
  for alias in $(softdeps_pre "$name"); do
    for cand in $(resolve "$alias"); do visit "$cand" 1; done
  done
  # modprobe loads the dependencies listed in modules.dep from right to left.
  local deps=(${dep_line[$name]#*:})
  local i
  for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
    dep=${deps[$i]##*/}; dep=${dep%%.ko*}; dep=${dep//-/_}
    visit "$dep" "$opt"
  done
  state[$name]=done
  optional[$name]=$opt
  order+=("$name")
}

for t in "${targets[@]}"; do visit "$t" 0; done

mkdir -p "$stage"/{bin,dev,proc,sys,tmp,mnt,lib/modules}
: > "$stage/modules.load"
for name in "${order[@]}"; do
  path=${dep_line[$name]%%:*}
  src="$moddir/$path"
  case $src in
    *.ko.xz) xz -dc "$src" > "$stage/lib/modules/$name.ko" ;;
    *.ko.zst) zstd -dcq "$src" > "$stage/lib/modules/$name.ko" ;;
    *.ko.gz) gzip -dc "$src" > "$stage/lib/modules/$name.ko" ;;
    *.ko) cp "$src" "$stage/lib/modules/$name.ko" ;;
    *) echo "build-initramfs: unexpected module file $src" >&2; exit 1 ;;
  esac
  if [ "${optional[$name]}" = 1 ]; then kind=optional; else kind=required; fi
  echo "$kind $name.ko" >> "$stage/modules.load"
done

cp "$busybox" "$stage/bin/busybox"
chmod 0755 "$stage/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$stage/bin/$applet"
done
install -m 0755 "$here/init.sh" "$stage/init"
while read -r src dst; do
  [ -n "$src" ] || continue
  install -D -m 0755 "$src" "$stage$dst"
  # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)"
  for lib in $(ldd "$src" 2>/dev/null | grep -o '/[^ ]*' || true); do
    [ -e "$stage$lib" ] || install -D -m 0755 "$lib" "$stage$lib"
  done
done <<< "${VM_EXTRA_FILES:-}"
mknod -m 0600 "$stage/dev/console" c 5 1
mknod -m 0666 "$stage/dev/null" c 1 3

tmp_out="$out.tmp.$$"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -6 > "$tmp_out"
mv -f "$tmp_out" "$out"
echo "build-initramfs: wrote $out (modules: ${order[*]})" >&2
