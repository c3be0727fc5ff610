#!/usr/bin/env bash
# Benchmark: acr-import's importImage against `skopeo copy --all` (and a plain curl blob copy)
# between two loopback docker-registry instances. Installs the peers (docker-registry, skopeo,
# curl, GNU time) and PostgreSQL when missing, builds the release binaries, runs
# $CARGO_TARGET_DIR/release/acr-import-bench (default target/) and prints the results table
# (see docs/BENCHMARKS.md).
#
#   scripts/bench.sh [--runs N] [--scenario a|b|c|d|e|builtin|all] [--out FILE] [--work-dir DIR] [--keep]
#
#   --runs N       timed runs per tool and scenario (default 5)
#   --scenario S   a: 3-platform index, 300 MiB in 12 layers; b: a single 1 GiB layer;
#                  c: Force re-import of an image already at the target;
#                  d: the (a) image imported into docker-registry vs into the built-in registry
#                     (PostgreSQL and SQLite stores); e: skopeo pulls of it from docker-registry
#                     vs from the built-in registry; builtin: d and e; all (default)
#   --out FILE     where the results table is also written (default target/bench/results.md)
#   --work-dir DIR registries' storage (default target/bench/work; needs ~2.7 GiB free)
#   --keep         keep the work dir afterwards
#
#   ACR_TEST_DATABASE_URL  admin URL of the PostgreSQL server the bench creates its database on
#                          (default postgres://postgres@127.0.0.1:5432/postgres)
#   CARGO_TARGET_DIR       where cargo builds (default target/)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh

case " $* " in
  *" -h "*|*" --help "*) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
# Options go to the bench binary as they are (it writes the table to --out, default
# target/bench/results.md, relative to the repository root).
command_line="scripts/bench.sh${*:+ $*}"

command -v cargo >/dev/null 2>&1 || { log "cargo is not installed (https://rustup.rs)"; exit 1; }
command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
apt_install docker-registry skopeo time

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
