# /harness.sh of the power-loss initramfs (support/powerloss.ts), sourced by
# init.sh once /dev/vda exists, with its status/fail/up functions.
#
# Mounts /dev/vda (ext4, made by the host) read-write on <root> and runs
# /bin/powerloss-guest (crates/cache/examples/powerloss_guest.rs) on the
# cache <root>/cache with the archives of <root>/images, its operation
# markers going to the data channel. The kernel command line carries the
# workload: pl_root=<path> pl_seed=<n> pl_ops=<n>; <root> is the path the
# host copies the cache to, as a VMDK names its extents by absolute path.
# The host usually kills the VM while it works; if it does not, this
# reports VMH-STATUS and powers off cleanly.
root=/mnt seed=0 ops=10
for arg in $(cat /proc/cmdline); do
  case $arg in
    pl_root=*) root=${arg#pl_root=} ;;
    pl_seed=*) seed=${arg#pl_seed=} ;;
    pl_ops=*) ops=${arg#pl_ops=} ;;
  esac
done
mkdir -p "$root"
if ! out=$(mount -t ext4 -o rw /dev/vda "$root" 2>&1); then
  fail "mount -t ext4 /dev/vda $root failed: $out"
fi
up "mounted /dev/vda as ext4 on $root, workload seed $seed, $ops operations"
if /bin/powerloss-guest "$root/cache" "$seed" "$ops" "$root"/images/* > "$DATA"; then
  umount "$root" || fail "umount $root failed"
  status ok
else
  code=$?
  umount "$root"
  fail "powerloss-guest exited with $code"
fi
sync
poweroff -f
sleep 5
