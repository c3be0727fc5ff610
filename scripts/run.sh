#!/usr/bin/env bash
# Starts acr-import (README: "Run"). Needs only a Rust toolchain: with no DATABASE_URL the
# operations live in an embedded SQLite store, and with no ACR_IMPORT_BACKEND_REGISTRY the
# emulated registries' content is served by the built-in registry, both under
# ${ACR_IMPORT_DATA_DIR:-.acr-import}. Equivalent to `cargo run --release -- serve "$@"`.
#
#   ARM API            http://127.0.0.1:8080   (--listen / ACR_IMPORT_LISTEN)
#   built-in registry  http://127.0.0.1:5000   (--registry-listen / ACR_IMPORT_REGISTRY_LISTEN)
#
# The production shape (PostgreSQL, an external registry) is one setting away:
#   DATABASE_URL=postgres://… ACR_IMPORT_BACKEND_REGISTRY=http://… scripts/run.sh
# Extra arguments go to `acr-import serve` (e.g. --registry-auth, --listen 0.0.0.0:8080).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

command -v cargo >/dev/null 2>&1 || { log "cargo is not installed (https://rustup.rs)"; exit 1; }
cargo build --release -p acr-import
target_dir="${CARGO_TARGET_DIR:-target}"
exec "$target_dir/release/acr-import" serve "$@"
