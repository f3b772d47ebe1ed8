#!/usr/bin/env python3
"""Prints the inotify events of one directory, one line each, in order.

    crash-inotify.py DIR

The soak harness (support/crash-soak.ts) watches the cache's layers/sha256
with it to count conversions honestly: a layer image enters that
directory only by a rename from tmp/ (IN_MOVED_TO), and leaves it by an
unlink (IN_DELETE), so a rename onto a name already present is a layer
converted a second time while it was there. Node's fs.watch cannot tell
these events apart (it reports all of them as "rename"), hence inotify
itself, through ctypes (no package to install).

Lines: "ready" once the watch is set, then "<EVENT> <name>" with EVENT one
of MOVED_TO, MOVED_FROM, CREATE, DELETE, and "OVERFLOW" if the kernel
dropped events (the count is then unreliable and the harness says so).
"""
import ctypes
import os
import struct
import sys

IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_Q_OVERFLOW = 0x4000
NAMES = {IN_MOVED_FROM: "MOVED_FROM", IN_MOVED_TO: "MOVED_TO", IN_CREATE: "CREATE", IN_DELETE: "DELETE"}
HEADER = struct.Struct("iIII")


def main() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(0)
    if fd < 0:
        sys.exit(f"inotify_init1: {os.strerror(ctypes.get_errno())}")
    mask = IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
    if libc.inotify_add_watch(fd, os.fsencode(sys.argv[1]), mask) < 0:
        sys.exit(f"inotify_add_watch {sys.argv[1]}: {os.strerror(ctypes.get_errno())}")
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    while True:
        buf = os.read(fd, 1 << 16)
        offset = 0
        while offset < len(buf):
            _wd, ev, _cookie, length = HEADER.unpack_from(buf, offset)
            name = buf[offset + HEADER.size : offset + HEADER.size + length].rstrip(b"\0").decode()
            offset += HEADER.size + length
            if ev & IN_Q_OVERFLOW:
                out.write("OVERFLOW\n")
            for bit, label in NAMES.items():
                if ev & bit:
                    out.write(f"{label} {name}\n")
        out.flush()


if __name__ == "__main__":
    main()
