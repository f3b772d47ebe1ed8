#!/usr/bin/env bash
# Runs a Windows program under Wine (Debian's wine64 8.0) in this checkout's
# own prefix, target/wine, and passes on its output and exit status: the
# cargo runner for x86_64-pc-windows-gnu and how the package tests start the
# official node.exe. The program's stdout and stderr go to files, then are
# printed: under Wine, Node cannot write to a pipe (libuv's pipe check
# fails), and a file works for every program. WINEDEBUG=-all keeps Wine's
# own diagnostics out of the program's stderr; mscoree and mshtml are
# disabled so a new prefix does not try to install Mono or Gecko. Wine 8
# lacks bcryptprimitives.dll, which Rust programs need on Windows 10+; the
# prefix gets one built from scripts/wine/bcryptprimitives.c (why: there).
#   scripts/wine-run.sh PROGRAM.exe ARGS...
#   scripts/wine-run.sh --init   create the prefix (quietly) and start a
#                                persistent wineserver for it, nothing else
#   scripts/wine-run.sh --stop   stop that wineserver
# (Without a running wineserver, each program's wine starts one that
# outlives it by seconds, holding the caller's output open.)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export WINEPREFIX="${WINEPREFIX:-$root/target/wine}"
export WINEDEBUG="${WINEDEBUG:--all}"
export WINEDLLOVERRIDES="${WINEDLLOVERRIDES:-mscoree,mshtml=}"
if [ "${1:-}" != "--stop" ] && [ ! -f "$WINEPREFIX/system.reg" ]; then
  mkdir -p "$WINEPREFIX"
  wineboot --init >/dev/null 2>&1
  wineserver --wait
fi
prng="$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
if [ ! -f "$prng" ] || [ "$root/scripts/wine/bcryptprimitives.c" -nt "$prng" ]; then
  x86_64-w64-mingw32-gcc-win32 -shared -O2 -o "$prng" \
    "$root/scripts/wine/bcryptprimitives.c" "$root/scripts/wine/bcryptprimitives.def" -lbcrypt
fi
if [ "${1:-}" = "--stop" ]; then
  wineserver -k 2>/dev/null || true
  exit 0
fi
if [ "${1:-}" = "--init" ]; then
  # Fails when one already runs for this prefix, which is as good.
  wineserver -p </dev/null >/dev/null 2>&1 || true
  exit 0
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
wine "$@" >"$out/stdout" 2>"$out/stderr" </dev/null || status=$?
cat "$out/stdout"
cat "$out/stderr" >&2
exit "$status"
