#!/usr/bin/env bash
# acr-import driven by the real Azure CLI (az 2.91, tests/clients/.venv-cli).
#
# Run through run.sh (same environment as python/test_sdk.py, plus IDENTITY_ENDPOINT /
# IDENTITY_HEADER for the managed-identity login and REQUESTS_CA_BUNDLE pointing at a bundle
# that holds the emulator's CA). Every step prints "ok - …" or "not ok - …" with its duration;
# the script ends with "N passed, N failed" and exits non-zero on any failure.
# ACR_CLIENTS_DEBUG=1 adds --debug to every az call (the HTTP exchanges, Authorization redacted);
# the full stdout/stderr of every call goes to $ACR_CLIENTS_LOG_DIR/cli.log.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
AZ="$HERE/.venv-cli/bin/az"
[ -x "$AZ" ] || { echo "not ok - az is not installed: run tests/clients/setup.sh --cli"; echo "0 passed, 1 failed"; exit 1; }

: "${ARM_ENDPOINT:?}" "${AZ_SUBSCRIPTION:?}" "${SRC_HOST:?}" "${SRC_ANON_HOST:?}" "${SRC_USER:?}" "${SRC_PASS:?}"
: "${SRC_SINGLE:?}" "${SRC_SINGLE_DIGEST:?}" "${SRC_MULTI:?}" "${SRC_MULTI_DIGEST:?}" "${IDENTITY_ENDPOINT:?}"
RUN="${ACR_CLIENTS_RUN:-0}"
RG="${AZ_RESOURCE_GROUP:-clients-rg}"
TARGET="clitarget$RUN"
SECOND="clisecond$RUN"
# Import steps of these small images must finish in well under the SDK's 30 s fallback poll
# interval; a step slower than this fails (it means a poll response lacked Retry-After).
SLOW="${ACR_CLIENTS_SLOW_IMPORT_SECS:-20}"
export IDENTITY_HEADER="${IDENTITY_HEADER:-acr-import-tests}"
export AZURE_CORE_COLLECT_TELEMETRY=0 AZURE_CORE_NO_COLOR=1 AZURE_CORE_SURVEY_MESSAGE=0
export AZURE_CORE_DISABLE_PROGRESS_BAR=1 AZURE_CORE_ONLY_SHOW_ERRORS=0
CFG="$(mktemp -d "${TMPDIR:-/tmp}/acr-clients-azcfg.XXXXXX")"
export AZURE_CONFIG_DIR="$CFG"
trap 'rm -rf "$CFG"' EXIT
LOG="${ACR_CLIENTS_LOG_DIR:-$CFG}/cli.log"
DEBUG=()
[ "${ACR_CLIENTS_DEBUG:-0}" = 1 ] && DEBUG=(--debug)

PASS=0 FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok - $*"; }
notok() { FAIL=$((FAIL + 1)); echo "not ok - $*"; }
errtail() { echo "$ERR" | grep -v '^DEBUG\|^INFO\|^urllib3\|^cli\.' | tail -n "${1:-8}"; }

# az_run NAME args... : runs az; stdout in $OUT, stderr in $ERR, duration in $SECS; logs both.
az_run() {
  local name="$1"; shift
  local so se t0
  so="$(mktemp)"; se="$(mktemp)"
  t0=$(date +%s.%N)
  "$AZ" "$@" "${DEBUG[@]}" >"$so" 2>"$se"
  RC=$?
  SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  OUT="$(cat "$so")"; ERR="$(cat "$se")"
  { echo "=== $name: az $* (rc=$RC, ${SECS}s)"; echo "--- stdout"; cat "$so"; echo "--- stderr"; cat "$se"; } >>"$LOG"
  rm -f "$so" "$se"
  return $RC
}
# expect NAME args... : az must succeed.
expect() {
  local name="$1"; shift
  if az_run "$name" "$@"; then ok "$name (${SECS}s)"; return 0; fi
  notok "$name (rc=$RC, ${SECS}s): $(errtail)"
  return 1
}
# expect_import NAME args... : az must succeed within $SLOW seconds.
expect_import() {
  local name="$1"; shift
  if ! az_run "$name" "$@"; then notok "$name (rc=$RC, ${SECS}s): $(errtail)"; return 1; fi
  if awk -v s="$SECS" -v m="$SLOW" 'BEGIN { exit !(s > m) }'; then
    notok "$name succeeded but took ${SECS}s (> ${SLOW}s: some poll answered 'running' without Retry-After, so azure-core waited its 30 s default)"
    return 1
  fi
  ok "$name (${SECS}s)"
}
# expect_fail NAME PATTERN args... : az must fail and stderr must match PATTERN (grep -E).
expect_fail() {
  local name="$1" pattern="$2"; shift 2
  if az_run "$name" "$@"; then notok "$name: az succeeded, expected a failure matching /$pattern/"; return 1; fi
  if echo "$ERR" | grep -Eq "$pattern"; then ok "$name (${SECS}s): $(errtail 1)"; return 0; fi
  notok "$name (rc=$RC): stderr does not match /$pattern/: $(errtail)"
  return 1
}

# backend_digest REGISTRY REPO REF -> digest ("" when absent, "unchecked" without BACKEND_URL)
backend_digest() {
  [ -n "${BACKEND_URL:-}" ] || { echo unchecked; return; }
  curl -sS --noproxy '*' -I \
    -H 'Accept: application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.list.v2+json,application/vnd.docker.distribution.manifest.v2+json' \
    "$BACKEND_URL/v2/$(echo "$1" | tr 'A-Z' 'a-z')/$2/manifests/$3" \
    | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}'
}
check_backend() { # NAME REGISTRY REPO REF DIGEST
  local got; got="$(backend_digest "$2" "$3" "$4")"
  if [ "$got" = unchecked ] || [ "$got" = "$5" ]; then ok "$1"; else notok "$1: $2/$3:$4 is '$got', expected $5"; fi
}

# 1. Register the emulator as a cloud (GET <endpoint>/metadata/endpoints?api-version=2022-09-01;
#    with the trailing slash the CLI really requests //metadata/endpoints).
expect "cloud register" cloud register -n AcrImportTest --endpoint-resource-manager "$ARM_ENDPOINT"
expect "cloud set" cloud set -n AcrImportTest
if az_run "cloud show" cloud show -n AcrImportTest -o json; then
  if python3 - "$OUT" <<'EOF'
import json, sys
c = json.loads(sys.argv[1])
e, s = c["endpoints"], c["suffixes"]
assert e["resourceManager"] and e["activeDirectory"] and e["activeDirectoryResourceId"], e
assert s.get("acrLoginServerEndpoint", "").startswith("."), s
EOF
  then ok "cloud show: endpoints and acrLoginServer suffix from /metadata/endpoints"
  else notok "cloud show: $OUT"; fi
else notok "cloud show (rc=$RC): $(errtail)"; fi

# 2. Managed-identity login (GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=…, then GET /subscriptions).
if expect "login --identity" login --identity -o json; then
  echo "  subscriptions: $(echo "$OUT" | python3 -c 'import json,sys; print([(s["id"], s["name"], s["state"]) for s in json.load(sys.stdin)])')"
fi
SUB="$AZ_SUBSCRIPTION"
if az_run "account set" account set -s "$AZ_SUBSCRIPTION"; then ok "account set $AZ_SUBSCRIPTION"
else
  notok "account set: subscription $AZ_SUBSCRIPTION is not listed by GET /subscriptions: $(errtail)"
  # Go on in the default subscription so that the other checks still say something.
  az_run "account show" account show --query id -o tsv && SUB="$OUT"
  echo "  continuing in subscription $SUB"
fi

# 3. Registries (PUT, LRO) and reads.
expect "acr create $TARGET (Premium)" acr create -n "$TARGET" -g "$RG" -l eastus --sku Premium -o json
expect "acr create $SECOND (Basic)" acr create -n "$SECOND" -g "$RG" -l eastus --sku Basic -o json
LOGIN_SERVER=""
if expect "acr show" acr show -n "$TARGET" -g "$RG" -o json; then
  LOGIN_SERVER="$(echo "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["loginServer"])')"
  echo "  loginServer $LOGIN_SERVER"
fi
expect "acr list" acr list -o table

# PATCH (az acr update = GET + PATCH) and checkNameAvailability.
expect "acr update --tags (PATCH)" acr update -n "$SECOND" -g "$RG" --tags suite=cli patched=yes -o json
if [ $RC = 0 ] && ! echo "$OUT" | grep -q '"patched": "yes"'; then notok "  acr update: tags not in the answer"; fi
if expect "acr check-name (taken)" acr check-name -n "$TARGET" -o json; then
  echo "$OUT" | grep -q '"nameAvailable": false' && ok "  $TARGET is not available" || notok "  check-name $TARGET: $OUT"
fi
if expect "acr check-name (free)" acr check-name -n "clifree${RUN}x" -o json; then
  echo "$OUT" | grep -q '"nameAvailable": true' && ok "  clifree${RUN}x is available" || notok "  check-name clifree${RUN}x: $OUT"
fi

# 4. az acr import, every way the brief names.
# --source <loginserver>/repo:tag + -t, anonymous source (the CLI first lists registries to see
# whether the login server is one of ours).
expect_import "import --source -t (anonymous registryUri)" \
  acr import -n "$TARGET" -g "$RG" --source "$SRC_ANON_HOST/$SRC_MULTI" -t cli/multi:v1
check_backend "  content cli/multi:v1" "$TARGET" cli/multi v1 "$SRC_MULTI_DIGEST"

# -u/-p (htpasswd source), default target tag = the source image.
expect_import "import -u/-p (htpasswd registryUri, default tag)" \
  acr import -n "$TARGET" -g "$RG" --source "$SRC_HOST/$SRC_SINGLE" -u "$SRC_USER" -p "$SRC_PASS"
check_backend "  content default tag" "$TARGET" "${SRC_SINGLE%%:*}" "${SRC_SINGLE##*:}" "$SRC_SINGLE_DIGEST"

# --registry NAME (source is an emulated registry: the CLI sends its resourceId).
expect_import "import --registry NAME" \
  acr import -n "$SECOND" -g "$RG" --registry "$TARGET" --source cli/multi:v1 -t copied/multi:v1
check_backend "  content copied/multi:v1" "$SECOND" copied/multi v1 "$SRC_MULTI_DIGEST"

# --registry RESOURCE_ID.
TARGET_ID="/subscriptions/$SUB/resourceGroups/$RG/providers/Microsoft.ContainerRegistry/registries/$TARGET"
expect_import "import --registry RESOURCE_ID" \
  acr import -n "$SECOND" -g "$RG" --registry "$TARGET_ID" --source cli/multi:v1 -t copied/byid:v1
check_backend "  content copied/byid:v1" "$SECOND" copied/byid v1 "$SRC_MULTI_DIGEST"

# --source <emulated login server>/repo:tag: the CLI turns it into a resourceId source.
if [ -n "$LOGIN_SERVER" ]; then
  expect_import "import --source <emulated login server>/repo:tag" \
    acr import -n "$SECOND" -g "$RG" --source "$LOGIN_SERVER/cli/multi:v1" -t copied/bylogin:v1
  check_backend "  content copied/bylogin:v1" "$SECOND" copied/bylogin v1 "$SRC_MULTI_DIGEST"
fi

# --repository (untagged only).
expect_import "import --repository" \
  acr import -n "$TARGET" -g "$RG" --source "$SRC_ANON_HOST/$SRC_SINGLE" --repository cli/untagged
check_backend "  content cli/untagged@digest" "$TARGET" cli/untagged "$SRC_SINGLE_DIGEST" "$SRC_SINGLE_DIGEST"

# NoForce conflict, then --force.
expect_fail "import onto an existing tag without --force fails (Conflict)" "Conflict.*already exists in target registry|already exists in target registry" \
  acr import -n "$TARGET" -g "$RG" --source "$SRC_ANON_HOST/$SRC_SINGLE" -t cli/multi:v1
check_backend "  the conflict left cli/multi:v1 alone" "$TARGET" cli/multi v1 "$SRC_MULTI_DIGEST"
expect_import "import --force" \
  acr import -n "$TARGET" -g "$RG" --source "$SRC_ANON_HOST/$SRC_SINGLE" -t cli/multi:v1 --force
check_backend "  --force moved cli/multi:v1" "$TARGET" cli/multi v1 "$SRC_SINGLE_DIGEST"

# Without -g: the CLI finds the resource group through GET /subscriptions/{sub}/resources.
expect_import "import without -g (ARM Resources - List)" \
  acr import -n "$TARGET" --source "$SRC_ANON_HOST/$SRC_MULTI" -t cli/nogroup:v1
check_backend "  content cli/nogroup:v1" "$TARGET" cli/nogroup v1 "$SRC_MULTI_DIGEST"

# --no-wait returns after the 202; the import still happens.
expect_import "import --no-wait" \
  acr import -n "$TARGET" -g "$RG" --source "$SRC_ANON_HOST/$SRC_MULTI" -t cli/nowait:v1 --no-wait
got=""
for _ in $(seq 1 60); do
  got="$(backend_digest "$TARGET" cli/nowait v1)"
  if [ "$got" = "$SRC_MULTI_DIGEST" ] || [ "$got" = unchecked ]; then break; fi
  sleep 0.5
done
if [ "$got" = "$SRC_MULTI_DIGEST" ] || [ "$got" = unchecked ]; then ok "  the --no-wait import landed"; else notok "  the --no-wait import never landed ($got)"; fi

# Client- and server-side failures.
expect_fail "import with -u but no -p (client side)" "Please provide password" \
  acr import -n "$TARGET" -g "$RG" --source "$SRC_HOST/$SRC_SINGLE" -u "$SRC_USER"
expect_fail "import with a wrong password" "SourceRegistryUnauthorized|denied|nauthorized" \
  acr import -n "$TARGET" -g "$RG" --source "$SRC_HOST/$SRC_SINGLE" -u "$SRC_USER" -p wrong-password -t cli/denied:v1
expect_fail "import into a missing registry" "ResourceNotFound|could not be found|was not found" \
  acr import -n "nosuch$RUN" -g "$RG" --source "$SRC_ANON_HOST/$SRC_SINGLE"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
