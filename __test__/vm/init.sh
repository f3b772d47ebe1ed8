#!/bin/sh
# /init of the VM harness initramfs (see build-initramfs.sh, support/vm.ts).
#
# Console (stdout/stderr) is /dev/console = ttyS0: human-readable progress,
# errors and a dmesg tail on failure. The machine-readable result goes to the
# second UART, /dev/ttyS1, so kernel messages can never interleave with it:
#
#   VMH-BEGIN <section>          sections: names stat sums lnames links
#   <hex lines (xxd -p)>         the section's bytes, gzip -1 compressed and
#                                hex encoded (the UART moves only ~0.5 MB/s)
#   VMH-END <section> <bytes>    uncompressed byte count, checked by the host
#   ...
#   VMH-STATUS ok | VMH-STATUS fail <reason>
#
# names  : `find . -print0` in /mnt (NUL-terminated paths, "." is the root)
# stat   : `stat -c '%f %u %g %h %Y %s %t %T %n'` for every name, same order
#          (raw names: the host parses it against the known names)
# sums   : `sha256sum` output for `find . -type f` (parsed the same way)
# lnames : `find . -type l -print0`; links: per symlink "readlink output\n\0"
export PATH=/bin
DATA=/dev/ttyS1

mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp

status() {
  echo "VMH-STATUS $*" | tr "\n" " " > "$DATA"
  echo > "$DATA"
}

fail() {
  echo "VMH-FAIL: $*"
  echo "---- dmesg tail ----"
  dmesg | tail -n 40
  echo "---- end dmesg ----"
  status "fail $*"
  sync
  poweroff -f
  sleep 5
}

up() { read -r t _ < /proc/uptime; echo "VMH: [$t] $*"; }
up "init started"
while read -r kind ko; do
  if ! out=$(insmod "/lib/modules/$ko" 2>&1); then
    if [ "$kind" = required ]; then
      fail "insmod $ko failed: $out"
    else
      echo "VMH: optional module $ko not loaded: $out"
    fi
  fi
done < /modules.load

i=0
while [ ! -b /dev/vda ]; do
  i=$((i + 1))
  [ $i -gt 200 ] && fail "no /dev/vda after 20s (virtio-blk disk missing?)"
  sleep 0.1
done

# A harness that put /harness.sh in the image (VM_EXTRA_FILES of
# build-initramfs.sh) runs it instead of the manifest below; it powers off.
[ -f /harness.sh ] && . /harness.sh

if ! out=$(mount -t erofs -o ro /dev/vda /mnt 2>&1); then
  fail "mount -t erofs -o ro /dev/vda /mnt failed: $out"
fi
up "mounted /dev/vda as erofs"

cd /mnt || fail "cd /mnt"
# Only `find -exec {} +` hands names to other applets: busybox 1.35's
# `xargs -0` corrupts arguments across batches when the command is itself a
# busybox applet (reproducible with a ~10k-entry tree).
find . -print0 > /tmp/names || fail "find failed"
find . -exec stat -c '%f %u %g %h %Y %s %t %T %n' {} + > /tmp/stat || fail "stat failed"
up "names and stat collected"
find . -type f -exec sha256sum {} + > /tmp/sums || fail "sha256sum failed"
find . -type l -print0 > /tmp/lnames || fail "find -type l failed"
find . -type l -exec sh -c 'for f; do readlink "$f" || exit 1; printf "\0"; done' sh {} + > /tmp/links || fail "readlink failed"
cd /
up "manifest collected"

{
  for s in names stat sums lnames links; do
    echo "VMH-BEGIN $s"
    gzip -1 -c "/tmp/$s" | xxd -p
    echo "VMH-END $s $(wc -c < "/tmp/$s")"
  done
  echo "VMH-STATUS ok"
} > "$DATA" || fail "writing the manifest to $DATA failed"

umount /mnt
up "manifest written, powering off"
sync
poweroff -f
sleep 5
