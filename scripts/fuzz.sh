#!/usr/bin/env bash
# Runs the libFuzzer targets in fuzz/ (image references, WWW-Authenticate challenges) for a
# while each. Not part of scripts/test.sh: the same parsers get property tests there
# (crates/acr-core/src/reference.rs, crates/acr-oci/src/client/transport/challenge.rs).
#
#   scripts/fuzz.sh [--seconds N] [TARGET...]     (default: 60 s per target, every target)
#
# Installs the nightly toolchain and cargo-fuzz when missing. Crashes land in
# fuzz/artifacts/<target>/ and make the script exit non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

seconds=60
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ "${#targets[@]}" -gt 0 ] || targets=(image_reference www_authenticate)

command -v cargo >/dev/null || { log "cargo is missing: install Rust (rustup) first"; exit 1; }
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

for t in "${targets[@]}"; do
  work=$(mktemp -d)
  cp fuzz/corpus/"$t"/* "$work"/
  log "fuzzing $t for ${seconds}s"
  (cd fuzz && cargo +nightly fuzz run "$t" "$work" -- -max_total_time="$seconds" -max_len=4096)
  rm -rf "$work"
done
log "no crash in: ${targets[*]}"
