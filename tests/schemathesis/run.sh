#!/usr/bin/env bash
# Runs schemathesis (installed by setup.sh) against one running service, with every check,
# a fixed seed and a bounded number of examples. Called by tests/e2e/schemathesis.rs; can be
# run by hand against any service:
#
#   tests/schemathesis/run.sh arm      http://127.0.0.1:8080
#   tests/schemathesis/run.sh registry http://127.0.0.1:5000 myregistry.azurecr.io
#
# arm: openapi/acr-import.json against the ARM listener, with `Authorization: Bearer x` (any
#      bearer token is a caller in the default `--auth none` mode; without one the caller is
#      anonymous, which that mode allows too).
# registry: openapi/registry.json against the login servers' plain listener (no
#      `--registry-auth`: anyone may read and write), `Host: <registry>.<suffix>` choosing the
#      login server of an existing registry.
#
#   SCHEMATHESIS_EXAMPLES  examples per operation (default 25); SCHEMATHESIS_SEED (default 18)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
KIND="$1"
URL="$2"
ST="$HERE/.venv/bin/schemathesis"
# schemathesis keeps a cache in .schemathesis/ of its working directory (ignored by git here).
cd "$HERE"
EXAMPLES="${SCHEMATHESIS_EXAMPLES:-25}"
SEED="${SCHEMATHESIS_SEED:-18}"

# Nothing may leave the machine, whatever its proxy settings say.
unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy
export NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost"
case "$URL" in
  http://127.0.0.1:*) ;;
  *) echo "run.sh: only http://127.0.0.1 services are tested (got $URL)" >&2; exit 2 ;;
esac

common=(--checks all --seed "$SEED" --max-examples "$EXAMPLES" --no-shrink
        --request-timeout 10 --workers 1 --warnings off)
case "$KIND" in
  arm)
    exec "$ST" --config-file "$HERE/schemathesis.toml" run "$ROOT/openapi/acr-import.json" \
      --url "$URL" "${common[@]}" \
      -H 'Authorization: Bearer x' \
      --exclude-path /_acr-import/operations/events
    ;;
  registry)
    # No stateful phase here: its "created resource not found" check reads an upload session
    # that a failed finishing PUT (wrong digest) cancelled, as distribution does, as a lost
    # resource, and schemathesis lets no configuration exempt one check of one operation when
    # `--checks all` is given.
    exec "$ST" --config-file "$HERE/schemathesis.toml" run "$ROOT/openapi/registry.json" \
      --url "$URL" "${common[@]}" --phases examples,coverage,fuzzing \
      -H "Host: $3"
    ;;
  *) echo "run.sh: arm or registry" >&2; exit 2 ;;
esac
