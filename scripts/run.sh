#!/usr/bin/env bash
# Starts acr-import with everything it needs (README: "Run").
#   DATABASE_URL unset                 → a local PostgreSQL (installed/started if missing), database acr_import
#   ACR_IMPORT_BACKEND_REGISTRY unset → a local docker-registry on 127.0.0.1:${ACR_IMPORT_BACKEND_PORT:-5000}, data in .run/backend
# Extra arguments go to `acr-import serve` (e.g. --listen 127.0.0.1:9090).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates

if [ -z "${DATABASE_URL:-}" ]; then
  admin=$(ensure_postgres "${ACR_ADMIN_DATABASE_URL:-}")
  export DATABASE_URL
  DATABASE_URL=$(db_url "$admin" acr_import)
fi

registry_pid=""
cleanup() { [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
if [ -z "${ACR_IMPORT_BACKEND_REGISTRY:-}" ]; then
  port="${ACR_IMPORT_BACKEND_PORT:-5000}"
  registry_pid=$(start_registry "$PWD/.run/backend" "$port")
  export ACR_IMPORT_BACKEND_REGISTRY="http://127.0.0.1:$port"
fi

cargo build --release -p acr-import
log "ARM API:          http://${ACR_IMPORT_LISTEN:-127.0.0.1:8080}"
log "backend registry: $ACR_IMPORT_BACKEND_REGISTRY"
target/release/acr-import serve "$@" &
svc=$!
trap 'kill -TERM $svc 2>/dev/null; wait $svc; cleanup' INT TERM
wait "$svc"
