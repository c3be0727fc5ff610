#!/usr/bin/env bash
# Runs the real-client suites against a running acr-import HTTPS endpoint.
#
# Required environment (tests/e2e/clients.rs sets all of it):
#   ARM_ENDPOINT      https://127.0.0.1:PORT/      ARM_CA   PEM of the CA to trust
#   AZ_SUBSCRIPTION   subscription id              AZ_RESOURCE_GROUP (default clients-rg)
#   SRC_HOST SRC_USER SRC_PASS    htpasswd source registry   SRC_ANON_HOST  anonymous source
#   SRC_SINGLE SRC_SINGLE_DIGEST SRC_MULTI SRC_MULTI_DIGEST  images present in both sources
# For the dataplane suite (azure-containerregistry against a login server, over HTTPS through the
# emulator's CONNECT proxy; the runner prepares the registry through ARM beforehand) and the cli
# suite (its data-plane steps, through the same proxy; it uses PROXY_URL, DP_CHILD_DIGESTS and
# DP_PLATFORMS, which describe SRC_MULTI):
#   PROXY_URL         http://127.0.0.1:PORT, the service's --proxy-listen (CONNECT <name>.azurecr.io:443)
#   DP_REGISTRY       the registry's name             LOGIN_SERVER  its login server (<name>.azurecr.io)
#   DP_REPO           repository holding the 3-platform index SRC_MULTI under every tag of DP_TAGS
#   DP_TAGS           those tags, comma-separated, oldest first (imported one after the other)
#   DP_INDEX_DIGEST   the index's digest            DP_CHILD_DIGESTS  its children's, comma-separated
#   DP_PLATFORMS      os/arch[/variant] of each child, in the same order
#   DP_BLOB_DIGESTS   every config and layer digest of the image, comma-separated
#   DP_DELETE_REPO    a second repository (tag v1 of the same index) that the suite deletes
#   DP_BIG_REPO DP_BIG_DIGEST   a repository whose v1 (that digest) has a layer over 4 MiB
# Optional:
#   BACKEND_URL       the service's backend registry: the suites check imported digests there
#   IDENTITY_ENDPOINT managed-identity token URL (default ${ARM_ENDPOINT}metadata/identity/oauth2/token)
#   ACR_CLIENTS_RUN   suffix of the registry names each suite creates (default: random)
#   ACR_CLIENTS_SUITES  which suites: "python js dataplane cli" (default "python js dataplane", plus cli
#                     when ACR_TEST_AZ_CLI=1)
#   ACR_CLIENTS_LOG_DIR where each suite's full output goes (default: a temp dir, printed)
#   ACR_CLIENTS_DEBUG=1 client HTTP logging (az --debug, azure-core DEBUG log, JS AZURE_LOG_LEVEL=verbose)
#
# Prints each suite's result; the last line is "clients: N passed, N failed" (suites); exit 0
# iff all pass.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${ARM_ENDPOINT:?}" "${ARM_CA:?}" "${AZ_SUBSCRIPTION:?}"
case "$ARM_ENDPOINT" in */) ;; *) ARM_ENDPOINT="$ARM_ENDPOINT/" ;; esac
export ARM_ENDPOINT
export AZ_RESOURCE_GROUP="${AZ_RESOURCE_GROUP:-clients-rg}"
export ACR_CLIENTS_RUN="${ACR_CLIENTS_RUN:-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
export IDENTITY_ENDPOINT="${IDENTITY_ENDPOINT:-${ARM_ENDPOINT}metadata/identity/oauth2/token}"
export IDENTITY_HEADER="${IDENTITY_HEADER:-acr-import-tests}"
unset IDENTITY_SERVER_THUMBPRINT MSI_ENDPOINT MSI_SECRET IMDS_ENDPOINT

SUITES="${ACR_CLIENTS_SUITES:-python js dataplane$([ "${ACR_TEST_AZ_CLI:-0}" = 1 ] && echo " cli")}"
LOGS="${ACR_CLIENTS_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/acr-clients-logs.XXXXXX")}"
mkdir -p "$LOGS"
export ACR_CLIENTS_LOG_DIR="$LOGS"

# Nothing may leave the machine: a dead proxy for everything but loopback (the dataplane and cli
# suites swap in the emulator's proxy for HTTPS, which tunnels only to its own login servers).
export HTTPS_PROXY="http://127.0.0.1:9" HTTP_PROXY="http://127.0.0.1:9"
export https_proxy="$HTTPS_PROXY" http_proxy="$HTTP_PROXY"
export NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost"
unset ALL_PROXY all_proxy

# Trust our CA next to the system's (the machine points these at the system bundle).
BUNDLE="$LOGS/ca-bundle.pem"
SYSTEM_BUNDLE=/etc/ssl/certs/ca-certificates.crt
{ if [ -f "$SYSTEM_BUNDLE" ]; then cat "$SYSTEM_BUNDLE"; fi; echo; cat "$ARM_CA"; } >"$BUNDLE"
export REQUESTS_CA_BUNDLE="$BUNDLE" SSL_CERT_FILE="$BUNDLE" CURL_CA_BUNDLE="$BUNDLE"
export NODE_EXTRA_CA_CERTS="$ARM_CA"
unset SSL_CERT_DIR

# (AZURE_LOG_LEVEL means different things to azure-core (Python: DEBUG…) and the JS SDK
# (verbose…): set it per suite only.)
unset AZURE_LOG_LEVEL
PYTEST_DEBUG=() JS_LOG_LEVEL=""
if [ "${ACR_CLIENTS_DEBUG:-0}" = 1 ]; then
  PYTEST_DEBUG=(-s -p no:logging)  # azure-core's DEBUG log straight into python.out
  JS_LOG_LEVEL=verbose
fi

echo "run.sh: endpoint $ARM_ENDPOINT, subscription $AZ_SUBSCRIPTION, run id $ACR_CLIENTS_RUN, suites: $SUITES, logs in $LOGS"
PASSED=0 FAILED=0
for suite in $SUITES; do
  log="$LOGS/$suite.out"
  start=$(date +%s)
  case "$suite" in
    python)
      (cd "$HERE/python" && "$HERE/.venv-sdk/bin/python" -m pytest -p no:cacheprovider -v -rA "${PYTEST_DEBUG[@]}" test_sdk.py) >"$log" 2>&1 ;;
    dataplane)
      (: "${PROXY_URL:?the dataplane suite needs PROXY_URL (the --proxy-listen of the service)}"
       cd "$HERE/python" && HTTPS_PROXY="$PROXY_URL" https_proxy="$PROXY_URL" \
        NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost" \
        "$HERE/.venv-sdk/bin/python" -m pytest -p no:cacheprovider -v -rA "${PYTEST_DEBUG[@]}" test_dataplane.py) >"$log" 2>&1 ;;
    js)
      (cd "$HERE/js" && AZURE_LOG_LEVEL="$JS_LOG_LEVEL" node --test --test-reporter=spec import.mjs) >"$log" 2>&1 ;;
    cli)
      (: "${PROXY_URL:?the cli suite needs PROXY_URL (the --proxy-listen of the service)}"
       HTTPS_PROXY="$PROXY_URL" https_proxy="$PROXY_URL" \
        NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost" \
        bash "$HERE/cli.sh") >"$log" 2>&1 ;;
    *) echo "run.sh: unknown suite $suite" >"$log"; false ;;
  esac
  rc=$?
  secs=$(( $(date +%s) - start ))
  summary="$(grep -E '^(=+ .*(passed|failed|error).* =+|ℹ (pass|fail) [0-9]+|[0-9]+ passed, [0-9]+ failed)' "$log" | tr '\n' ' ')"
  if [ $rc = 0 ]; then
    PASSED=$((PASSED + 1)); echo "run.sh: suite $suite PASSED in ${secs}s: $summary"
  else
    FAILED=$((FAILED + 1)); echo "run.sh: suite $suite FAILED (exit $rc) in ${secs}s: $summary"
    echo "----- $suite output (last 150 lines of $log) -----"
    tail -n 150 "$log"
    echo "----- end of $suite output -----"
  fi
done
echo "clients: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
