#!/usr/bin/env bash
# Benchmark: acr-import's importImage against `skopeo copy --all` and `crane copy` (when
# found; and a plain curl blob copy) between two loopback docker-registry instances, plus the
# API's accept latency and status GET rate. Installs the peers it can (docker-registry, skopeo,
# curl, GNU time) and PostgreSQL when missing, builds the release binaries, runs
# $CARGO_TARGET_DIR/release/acr-import-bench (default target/) and prints the results table
# (see docs/BENCHMARKS.md). crane is not installed by this script: see DEVELOPERS.md.
#
#   scripts/bench.sh [--runs N] [--scenario a|b|c|d|e|builtin|batch|accept|status|api|all] [--out FILE] [--work-dir DIR] [--keep]
#
#   --runs N       timed runs per tool and scenario (default 5)
#   --scenario S   a: 3-platform index, 300 MiB in 12 layers; b: a single 1 GiB layer;
#                  c: Force re-import of an image already at the target;
#                  d: the (a) image imported into docker-registry vs into the built-in registry
#                     (PostgreSQL and SQLite stores) and the peers into the built-in registry;
#                  e: skopeo pulls of it from docker-registry vs from the built-in registry;
#                  builtin: d and e; batch: 50 small 3-platform images, 50 POSTs then all
#                  awaited vs the peers 4 at a time; accept: POSTs at 200/s for 10 s while the
#                  workers copy, latency per POST (PostgreSQL and SQLite); status: status GETs
#                  over 32 keep-alive connections for 5 s; api: accept and status; all (default);
#                  a comma-separated list (e.g. a,b,batch) runs those, in the order of all
#   --out FILE     where the results table is also written (default target/bench/results.md)
#   --work-dir DIR registries' storage (default target/bench/work; needs ~2.7 GiB free)
#   --keep         keep the work dir afterwards
#
#   ACR_TEST_DATABASE_URL  admin URL of the PostgreSQL server the bench creates its database on
#                          (default postgres://postgres@127.0.0.1:5432/postgres)
#   CARGO_TARGET_DIR       where cargo builds (default target/)
#   CRANE                  the crane binary (default: crane on PATH; without it the bench runs
#                          without crane and its table says so)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh

case " $* " in
  *" -h "*|*" --help "*) sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
# Options go to the bench binary as they are (it writes the table to --out, default
# target/bench/results.md, relative to the repository root).
command_line="scripts/bench.sh${*:+ $*}"

command -v cargo >/dev/null 2>&1 || { log "cargo is not installed (https://rustup.rs)"; exit 1; }
command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
apt_install docker-registry skopeo time

if [ -n "${CRANE:-}" ]; then
  [ -x "$CRANE" ] || { log "CRANE=$CRANE is not an executable file"; exit 1; }
  log "crane: $CRANE"
elif command -v crane >/dev/null 2>&1; then
  log "crane: $(command -v crane) (on PATH)"
else
  log "crane not found (set CRANE=/path/to/crane or put it on PATH; DEVELOPERS.md says how to build it): benchmarking without crane"
fi

ACR_TEST_DATABASE_URL=$(ensure_postgres "${ACR_TEST_DATABASE_URL:-}")
export ACR_TEST_DATABASE_URL

avail_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${avail_kib:-0}" -lt $((3 * 1024 * 1024)) ]; then
  log "warning: less than 3 GiB free here; the bench stores up to ~2.7 GiB at once"
fi

log "cargo build --release -p acr-import -p acr-import-bench"
cargo build --release -p acr-import -p acr-import-bench

target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
log "running: $command_line"
ACR_IMPORT_BIN="$target_dir/release/acr-import" \
ACR_BENCH_COMMAND="$command_line" \
  "$target_dir/release/acr-import-bench" "$@"
