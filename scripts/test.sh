#!/usr/bin/env bash
# The README's test command, and what CI runs (.ci/run). Installs and starts what the suite
# needs (docker-registry, htpasswd, skopeo, PostgreSQL, chromium + Playwright for Python,
# schemathesis for the OpenAPI contract suite), then
# runs fmt, clippy, the build and every test of the workspace. Works from any directory; on a fresh Debian machine run it as root.
#
#   ACR_TEST_AZ_CLI        1 (default): the client suites include the Azure CLI; 0 leaves it out
#   ACR_TEST_DATABASE_URL  admin URL of the PostgreSQL server the tests create their databases on
#                          (default postgres://postgres@127.0.0.1:5432/postgres)
#   Extra arguments are passed to `cargo test` (e.g. `scripts/test.sh -- --nocapture`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh

command -v cargo >/dev/null 2>&1 || { log "cargo is not installed (https://rustup.rs)"; exit 1; }
command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
apt_install docker-registry apache2-utils skopeo
# The dashboard's browser suite: Debian's chromium and Playwright for Python (in a venv).
apt_install chromium python3-venv
bash tests/portal/setup.sh
# The OpenAPI contract suite: schemathesis (pinned) in a venv.
bash tests/schemathesis/setup.sh

# The Azure CLI suite of tests/e2e/clients.rs (its install is slow the first time: 70-150 s).
export ACR_TEST_AZ_CLI="${ACR_TEST_AZ_CLI:-1}"

ACR_TEST_DATABASE_URL=$(ensure_postgres "${ACR_TEST_DATABASE_URL:-}")
export ACR_TEST_DATABASE_URL

log "cargo fmt --check"
cargo fmt --all --check

log "cargo clippy"
cargo clippy --all-targets --workspace -- -D warnings

log "cargo build -p acr-import"
cargo build -p acr-import

log "cargo test --workspace"
cargo test --workspace "$@"
