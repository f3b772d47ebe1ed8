#!/usr/bin/env bash
# Fuzzes the format code (msb-erofs) and what the sources parse from a
# published image or a registry (manifests, indexes, configs, references,
# platforms, WWW-Authenticate, Retry-After, a docker archive's
# manifest.json through a whole load): runs each cargo-fuzz target of fuzz/
# for SECONDS (default 60) and prints executions, exec/s and findings per
# target. Findings (inputs that crashed, hung or ran out of memory) are
# left in fuzz/artifacts/TARGET/ (a target stops at its first); once
# fixed, each goes to crates/erofs/tests/fuzz/TARGET/, where
# tests/fuzz_regressions.rs replays it. The corpus grows in
# fuzz/corpus/TARGET/ from the committed seeds in fuzz/seeds/: tar/
# (GNU tar and Python tarfile archives, for tar_reader and
# layer_roundtrip), erofs_reader/ (layer and fsmeta images the crate
# wrote), framing_decode/ (the framing of fuzz/fixtures/framing.tar), and
# oci_documents/, registry_headers/, docker_archive/ (hand-written
# documents and headers). Findings of those three are replayed by hand
# (cargo fuzz run TARGET FILE) until they get a regression test of their
# own crate.
#
# usage: bench/fuzz.sh [SECONDS] [TARGET...]
#   targets: tar_reader framing_decode erofs_reader layer_roundtrip
#            oci_documents registry_headers docker_archive (default: all)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tar_reader framing_decode erofs_reader layer_roundtrip oci_documents registry_headers docker_archive)

if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked
fi

cd "$root/fuzz"
# Debug assertions (and so overflow checks) on: a wrapped size is a
# finding. No sanitizer: msb-erofs forbids unsafe code, so AddressSanitizer
# would only slow the search down.
flags=(--debug-assertions --sanitizer none)
cargo +nightly fuzz build "${flags[@]}"
printf '%-16s %12s %8s %9s\n' target executions exec/s findings
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  log=$(mktemp)
  status=0
  case $t in
    tar_reader | layer_roundtrip) seeds=seeds/tar ;;
    *) seeds=seeds/$t ;;
  esac
  cargo +nightly fuzz run "${flags[@]}" "$t" "corpus/$t" "$seeds" -- \
    -max_total_time="$secs" -print_final_stats=1 -timeout=20 -rss_limit_mb=2048 -max_len=65536 \
    >"$log" 2>&1 || status=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  findings=$(($(find "artifacts/$t" -type f | wc -l) - before))
  printf '%-16s %12s %8s %9s\n' "$t" "${execs:-0}" "${rate:-0}" "$findings"
  if [ "$status" -ne 0 ]; then
    echo "  $t stopped (exit $status); see $log and fuzz/artifacts/$t/" >&2
    grep -m3 -E 'panicked|ERROR: libFuzzer|SUMMARY' "$log" | sed 's/^/  /' >&2 || true
  else
    rm -f "$log"
  fi
done
