#!/usr/bin/env bash
# acr-import driven by the real Azure CLI (az 2.91, tests/clients/.venv-cli).
#
# Run through run.sh (same environment as python/test_sdk.py, plus IDENTITY_ENDPOINT /
# IDENTITY_HEADER for the managed-identity login and REQUESTS_CA_BUNDLE pointing at a bundle
# that holds the emulator's CA; like the dataplane suite, HTTPS_PROXY=$PROXY_URL with
# NO_PROXY=127.0.0.1,localhost, so that https://<name>.azurecr.io reaches the login servers
# through the service's CONNECT proxy). ARM: cloud register, login --identity, acr create /
# update / check-name, every form of acr import; data plane (cli/dp): acr login --expose-token
# (+ skopeo with that token), repository list / show-tags / show / untag / delete, manifest
# list-metadata / show / show-metadata; imports from an emulated login server with admin
# credentials or an Entra token; ACR's retention policy (az acr config retention update / show,
# then the service's sweep); resource groups (create / show / exists / delete with a
# registry in it). Every step prints "ok - …" or "not ok - …" with its duration;
# the script ends with "N passed, N failed" and exits non-zero on any failure.
# ACR_CLIENTS_DEBUG=1 adds --debug to every az call (the HTTP exchanges, Authorization redacted);
# the full stdout/stderr of every call goes to $ACR_CLIENTS_LOG_DIR/cli.log.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
AZ="$HERE/.venv-cli/bin/az"
[ -x "$AZ" ] || { echo "not ok - az is not installed: run tests/clients/setup.sh --cli"; echo "0 passed, 1 failed"; exit 1; }

: "${ARM_ENDPOINT:?}" "${AZ_SUBSCRIPTION:?}" "${SRC_HOST:?}" "${SRC_ANON_HOST:?}" "${SRC_USER:?}" "${SRC_PASS:?}"
: "${SRC_SINGLE:?}" "${SRC_SINGLE_DIGEST:?}" "${SRC_MULTI:?}" "${SRC_MULTI_DIGEST:?}" "${IDENTITY_ENDPOINT:?}"
# The data-plane steps: the CA (skopeo's --cert-dir), the proxy run.sh puts in HTTPS_PROXY, and the
# children of SRC_MULTI's index (digests, os/arch[/variant]) in the index's order.
: "${ARM_CA:?}" "${PROXY_URL:?}" "${DP_CHILD_DIGESTS:?}" "${DP_PLATFORMS:?}"
RUN="${ACR_CLIENTS_RUN:-0}"
RG="${AZ_RESOURCE_GROUP:-clients-rg}"
TARGET="clitarget$RUN"
SECOND="clisecond$RUN"
LOGIN_SERVER="" # $TARGET's, from az acr show
export TARGET SECOND LOGIN_SERVER
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

# check_json NAME PYTHON : runs the Python statements with `d` = json.loads($OUT) and `E` =
# os.environ; ok (with what they print) when they raise nothing, else not ok with the assertion.
check_json() {
  local name="$1" code="$2" msg
  if msg="$(OUT_JSON="$OUT" python3 -c "import json, os
E = os.environ
d = json.loads(E['OUT_JSON'])
$code" 2>&1)"; then ok "$name${msg:+: $msg}"
  else notok "$name: $(echo "$msg" | tail -n 2 | tr '\n' ' ') | output: $(echo "$OUT" | tr -d '\n' | cut -c1-400)"; fi
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

# 5. The data plane: https://<loginServer> through the emulator's CONNECT proxy (run.sh sets
#    HTTPS_PROXY=$PROXY_URL, NO_PROXY=127.0.0.1,localhost and the CA bundle, as for the dataplane
#    suite). cli/multi:v1 was moved to the single image above: a fresh repository cli/dp gets the
#    3-platform index as v1, then (a second import, so a newer tag) as v2.
DP=cli/dp
expect_import "import $DP:v1 (3-platform index)" \
  acr import -n "$TARGET" -g "$RG" --source "$SRC_ANON_HOST/$SRC_MULTI" -t "$DP:v1"
sleep 1 # distinct lastUpdateTime values, whatever the clock's resolution
expect_import "import $DP:v2 (same index, later)" \
  acr import -n "$TARGET" -g "$RG" --source "$SRC_ANON_HOST/$SRC_MULTI" -t "$DP:v2"

# 5a. az acr login --expose-token: GET /v2/ (challenge) + POST /oauth2/exchange; prints the
#     refresh token (accessToken == refreshToken) without Docker. skopeo then uses it as the
#     password of 00000000-0000-0000-0000-000000000000 (GET /oauth2/token, Basic).
ACR_TOKEN=""
if expect "acr login --expose-token" acr login -n "$TARGET" --expose-token -o json; then
  check_json "  loginServer and a refresh-token JWT for it" '
import base64, time
assert d["loginServer"] == E["LOGIN_SERVER"], d
assert d["username"] == "00000000-0000-0000-0000-000000000000", d
assert d["accessToken"] == d["refreshToken"], "accessToken != refreshToken"
parts = d["accessToken"].split(".")
assert len(parts) == 3, "not a JWT"
c = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
assert c.get("grant_type") == "refresh_token", c
assert c.get("aud") == E["LOGIN_SERVER"], c
assert c["exp"] > time.time() + 600, c
print("grant_type", c["grant_type"], "aud", c["aud"])'
  ACR_TOKEN="$(echo "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')"
fi
CERTS="$CFG/certs"; mkdir -p "$CERTS"; cp "$ARM_CA" "$CERTS/ca.crt"
command -v skopeo >/dev/null || notok "  skopeo is not installed (apt-get install -y skopeo): the token checks below fail"
if skopeo inspect --raw --cert-dir "$CERTS" --creds "00000000-0000-0000-0000-000000000000:$ACR_TOKEN" \
     "docker://$LOGIN_SERVER/$DP:v1" >"$CFG/raw" 2>"$CFG/raw.err"; then
  got="sha256:$(sha256sum <"$CFG/raw" | cut -d' ' -f1)"
  if [ "$got" = "$SRC_MULTI_DIGEST" ]; then ok "  skopeo inspect --raw with the exposed token: the index $got"
  else notok "  skopeo inspect --raw: digest $got, expected $SRC_MULTI_DIGEST"; fi
else
  notok "  skopeo inspect --raw with the exposed token: $(tail -n 3 "$CFG/raw.err")"
fi
{ echo "=== skopeo inspect --raw docker://$LOGIN_SERVER/$DP:v1"; cat "$CFG/raw" "$CFG/raw.err"; echo; } >>"$LOG"
if skopeo inspect --raw --cert-dir "$CERTS" --creds "00000000-0000-0000-0000-000000000000:not-a-token" \
     "docker://$LOGIN_SERVER/$DP:v1" >/dev/null 2>"$CFG/raw.err"; then
  notok "  skopeo with a bogus refresh token succeeded"
elif grep -Eqi 'unauthorized|authentication required|401' "$CFG/raw.err"; then
  ok "  a bogus refresh token is refused: $(tail -n 1 "$CFG/raw.err" | cut -c1-160)"
else notok "  skopeo with a bogus refresh token: $(tail -n 2 "$CFG/raw.err")"; fi

# 5b. az acr repository list: GET /v2/_catalog?n=100.
if expect "acr repository list" acr repository list -n "$TARGET" -o json; then
  check_json "  every imported repository, sorted" '
want = {"cli/dp", "cli/multi", "cli/nogroup", "cli/nowait", "cli/untagged", E["SRC_SINGLE"].split(":")[0]}
assert want <= set(d), sorted(want - set(d))
assert d == sorted(d), d
print(len(d), "repositories")'
fi

# 5c. az acr repository show-tags: GET /acr/v1/{repo}/_tags?n=100[&orderby=timedesc].
if expect "acr repository show-tags --detail --orderby time_desc" \
     acr repository show-tags -n "$TARGET" --repository "$DP" --detail --orderby time_desc -o json; then
  check_json "  v2 before v1, both on the index, with times and attributes" '
assert [t["name"] for t in d] == ["v2", "v1"], [t["name"] for t in d]
for t in d:
    assert t["digest"] == E["SRC_MULTI_DIGEST"], t
    assert t["createdTime"] <= t["lastUpdateTime"], t
    a = t["changeableAttributes"]
    assert (a["deleteEnabled"], a["writeEnabled"], a["readEnabled"], a["listEnabled"]) == (True,) * 4, t
assert d[0]["lastUpdateTime"] > d[1]["lastUpdateTime"], d'
fi
if expect "acr repository show-tags --orderby time_asc" \
     acr repository show-tags -n "$TARGET" --repository "$DP" --orderby time_asc -o json; then
  check_json "  names only, v1 before v2" 'assert d == ["v1", "v2"], d'
fi
if expect "acr repository show-tags" acr repository show-tags -n "$TARGET" --repository "$DP" -o json; then
  check_json "  names only: v1, v2" 'assert sorted(d) == ["v1", "v2"], d'
fi
if expect "acr repository show-tags --top 1 --orderby time_desc" \
     acr repository show-tags -n "$TARGET" --repository "$DP" --top 1 --orderby time_desc -o json; then
  check_json "  only the newest" 'assert d == ["v2"], d'
fi

# 5d. az acr repository show: GET /acr/v1/{repo} and GET /acr/v1/{repo}/_tags/{tag}.
if expect "acr repository show --repository" acr repository show -n "$TARGET" --repository "$DP" -o json; then
  check_json "  tagCount 2, manifestCount 1 + one per platform" '
n = len(E["DP_CHILD_DIGESTS"].split(","))
assert d["imageName"] == "cli/dp", d
assert d["registry"] == E["LOGIN_SERVER"], d
assert d["tagCount"] == 2, d
assert d["manifestCount"] == 1 + n, (d["manifestCount"], n)
print("manifestCount", d["manifestCount"])'
fi
if expect "acr repository show --image $DP:v1" acr repository show -n "$TARGET" --image "$DP:v1" -o json; then
  check_json "  the tag v1 on the index" '
assert d["name"] == "v1" and d["digest"] == E["SRC_MULTI_DIGEST"], d
assert d["changeableAttributes"]["writeEnabled"] is True, d'
fi
expect_fail "acr repository show --image $DP:nosuch (404)" "not found|does not exist|TAG_UNKNOWN|MANIFEST_UNKNOWN|NAME_UNKNOWN" \
  acr repository show -n "$TARGET" --image "$DP:nosuch"

# 5e. Manifests: GET /acr/v1/{repo}/_manifests (list-metadata; show-manifests is hidden and
#     deprecated in 2.91 but still there), GET /v2/{repo}/manifests/{ref} (manifest show).
MANIFESTS_CHECK='
children = E["DP_CHILD_DIGESTS"].split(",")
platforms = [p.split("/") for p in E["DP_PLATFORMS"].split(",")]
by = {m["digest"]: m for m in d}
assert set(by) == {E["SRC_MULTI_DIGEST"], *children}, sorted(by)
for digest, p in zip(children, platforms):
    m = by[digest]
    assert (m.get("os"), m.get("architecture")) == (p[0], p[1]), (digest, m, p)
    assert m.get("imageSize", 0) > 0, m
    assert not m.get("tags"), m
index = by[E["SRC_MULTI_DIGEST"]]
assert sorted(index["tags"]) == ["v1", "v2"], index
assert index["mediaType"] in ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"), index
assert [r["digest"] for r in index.get("references", [])] == children, index.get("references")
print(", ".join("/".join(p) for p in platforms), "+ the index")'
if expect "acr manifest list-metadata" acr manifest list-metadata -r "$TARGET" -n "$DP" -o json; then
  check_json "  every platform (os/architecture) and the index with v1, v2" "$MANIFESTS_CHECK"
fi
if expect "acr repository show-manifests --detail (deprecated)" \
     acr repository show-manifests -n "$TARGET" --repository "$DP" --detail -o json; then
  check_json "  every platform and the index" "$MANIFESTS_CHECK"
fi
if expect "acr repository show-manifests" acr repository show-manifests -n "$TARGET" --repository "$DP" -o json; then
  check_json "  digests, tags and timestamps" '
by = {m["digest"]: m for m in d}
assert set(by) == {E["SRC_MULTI_DIGEST"], *E["DP_CHILD_DIGESTS"].split(",")}, sorted(by)
assert sorted(by[E["SRC_MULTI_DIGEST"]]["tags"]) == ["v1", "v2"], by[E["SRC_MULTI_DIGEST"]]
assert all(m["timestamp"] for m in d), d'
fi
if expect "acr manifest show $DP:v1" acr manifest show -r "$TARGET" -n "$DP:v1" -o json; then
  check_json "  the index, its children in order" '
assert [m["digest"] for m in d["manifests"]] == E["DP_CHILD_DIGESTS"].split(","), d
assert [m["platform"]["architecture"] for m in d["manifests"]] == [p.split("/")[1] for p in E["DP_PLATFORMS"].split(",")], d'
fi
CHILD1="${DP_CHILD_DIGESTS%%,*}" PLATFORM1="${DP_PLATFORMS%%,*}"
if expect "acr manifest show-metadata $DP@<child>" acr manifest show-metadata -r "$TARGET" -n "$DP@$CHILD1" -o json; then
  PLATFORM1="$PLATFORM1" CHILD1="$CHILD1" check_json "  $PLATFORM1" '
assert d["digest"] == E["CHILD1"], d
assert "/".join([d["os"], d["architecture"]]) == "/".join(E["PLATFORM1"].split("/")[:2]), d'
fi

# 5f. Deletes: untag (DELETE /acr/v1/{repo}/_tags/{tag}), delete --image (GET the tag, list the
#     tags, DELETE /v2/{repo}/manifests/{digest}), delete --repository (DELETE /acr/v1/{repo}).
expect "acr repository untag $DP:v2" acr repository untag -n "$TARGET" --image "$DP:v2"
if expect "acr repository show-tags after untag" acr repository show-tags -n "$TARGET" --repository "$DP" -o json; then
  check_json "  only v1 left" 'assert d == ["v1"], d'
fi
check_backend "  backend: $DP:v2 is gone" "$TARGET" "$DP" v2 ""
check_backend "  backend: $DP:v1 still on the index" "$TARGET" "$DP" v1 "$SRC_MULTI_DIGEST"
expect "acr repository delete --image $DP:v1 --yes (the index manifest)" \
  acr repository delete -n "$TARGET" --image "$DP:v1" --yes
if [ $RC = 0 ]; then
  echo "$ERR" | grep -q "$SRC_MULTI_DIGEST" && ok "  it named the index it deleted" \
    || notok "  delete --image did not name $SRC_MULTI_DIGEST: $(errtail 2)"
fi
if expect "acr manifest list-metadata after the delete" acr manifest list-metadata -r "$TARGET" -n "$DP" -o json; then
  check_json "  the index is gone (and with it v1)" '
assert E["SRC_MULTI_DIGEST"] not in {m["digest"] for m in d}, d
assert not any(m.get("tags") for m in d), d'
fi
check_backend "  backend: the index is gone from $DP" "$TARGET" "$DP" "$SRC_MULTI_DIGEST" ""
expect "acr repository delete --repository $DP --yes" acr repository delete -n "$TARGET" --repository "$DP" --yes
if expect "acr repository list after the delete" acr repository list -n "$TARGET" -o json; then
  check_json "  $DP is gone, the others stay" '
assert "cli/dp" not in d, d
assert {"cli/multi", "cli/nogroup"} <= set(d), d'
fi
expect_fail "acr repository show --repository $DP after the delete (404)" "not known to registry|NAME_UNKNOWN|not found|does not exist" \
  acr repository show -n "$TARGET" --repository "$DP"
for c in ${DP_CHILD_DIGESTS//,/ }; do
  check_backend "  backend: $DP@${c:7:12} is gone" "$TARGET" "$DP" "$c" ""
done

# 6. Imports from an emulated login server by registryUri with explicit credentials (no lookup:
#    with -p the CLI sends {registryUri, sourceImage, credentials{username, password}},
#    acr/import.py l.76-81). The source is cli/nogroup:v1 (the index) of $TARGET.
expect "acr update --admin-enabled true" acr update -n "$TARGET" -g "$RG" --admin-enabled true -o json
if [ $RC = 0 ]; then check_json "  adminUserEnabled" 'assert d["adminUserEnabled"] is True, d'; fi
ADMIN_USER="" ADMIN_PASS=""
if expect "acr credential show" acr credential show -n "$TARGET" -g "$RG" -o json; then
  check_json "  username $TARGET and two passwords" '
assert d["username"] == E["TARGET"], d["username"]
assert [p["name"] for p in d["passwords"]] == ["password", "password2"], d["passwords"]
assert all(len(p["value"]) >= 16 for p in d["passwords"])
assert d["passwords"][0]["value"] != d["passwords"][1]["value"]'
  ADMIN_USER="$(echo "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["username"])')"
  ADMIN_PASS="$(echo "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["passwords"][0]["value"])')"
fi
expect_import "import --source <login server>/repo:tag -u admin -p password" \
  acr import -n "$SECOND" -g "$RG" --source "$LOGIN_SERVER/cli/nogroup:v1" -u "$ADMIN_USER" -p "$ADMIN_PASS" -t cred/ok:v1
check_backend "  content cred/ok:v1" "$SECOND" cred/ok v1 "$SRC_MULTI_DIGEST"
expect_fail "import --source <login server>/… with a wrong admin password fails (SourceRegistryUnauthorized)" \
  "SourceRegistryUnauthorized" \
  acr import -n "$SECOND" -g "$RG" --source "$LOGIN_SERVER/cli/nogroup:v1" -u "$ADMIN_USER" -p "wrong-$ADMIN_PASS" -t cred/bad:v1
if [ $RC != 0 ]; then
  echo "$ERR" | grep -qi "unauthorized" && ok "  the error says unauthorized" || notok "  the error does not say unauthorized: $(errtail 3)"
fi
check_backend "  nothing copied: no cred/bad:v1" "$SECOND" cred/bad v1 ""
# --password alone (an Entra access token, the cross-tenant way): credentials{password} with no
# username (import.py l.80); the service exchanges it at the source's /oauth2/exchange.
ARM_TOKEN=""
if expect "account get-access-token" account get-access-token --query accessToken -o tsv; then ARM_TOKEN="$OUT"; fi
expect_import "import --source <login server>/repo:tag --password <Entra access token>" \
  acr import -n "$SECOND" -g "$RG" --source "$LOGIN_SERVER/cli/nogroup:v1" --password "$ARM_TOKEN" -t cred/token:v1
check_backend "  content cred/token:v1" "$SECOND" cred/token v1 "$SRC_MULTI_DIGEST"
expect_fail "import --password <not a token> fails (SourceRegistryUnauthorized)" "SourceRegistryUnauthorized" \
  acr import -n "$SECOND" -g "$RG" --source "$LOGIN_SERVER/cli/nogroup:v1" --password "not-a-token" -t cred/badtoken:v1
check_backend "  nothing copied: no cred/badtoken:v1" "$SECOND" cred/badtoken v1 ""

# 6b. ACR's retention policy (Premium): az acr config retention update/show (GET + PATCH of
#     properties.policies with every policy it read), and the service's sweep (the runner starts
#     it with --retention-interval-seconds 1) deleting untagged manifests older than `days`.
#     $TARGET holds: cli/multi, whose v1 moved from the 3-platform index to the single image
#     (--force above), leaving the index and its children untagged; cli/nogroup:v1, a tagged
#     index (its children are untagged but referenced); cli/untagged, the single image by
#     digest only, which `az acr repository update --delete-enabled false` locks first.
if expect "acr manifest list-metadata cli/multi before the policy" acr manifest list-metadata -r "$TARGET" -n cli/multi -o json; then
  check_json "  the untagged index and its children are there, next to the tagged single image" '
by = {m["digest"]: m for m in d}
want = {E["SRC_MULTI_DIGEST"], E["SRC_SINGLE_DIGEST"], *E["DP_CHILD_DIGESTS"].split(",")}
assert set(by) == want, sorted(by)
assert not by[E["SRC_MULTI_DIGEST"]].get("tags"), by[E["SRC_MULTI_DIGEST"]]
assert by[E["SRC_SINGLE_DIGEST"]]["tags"] == ["v1"], by[E["SRC_SINGLE_DIGEST"]]'
fi
if expect "acr repository update cli/untagged@digest --delete-enabled false" \
     acr repository update -n "$TARGET" --image "cli/untagged@$SRC_SINGLE_DIGEST" --delete-enabled false -o json; then
  check_json "  deleteEnabled false" 'assert d["changeableAttributes"]["deleteEnabled"] is False, d'
fi
if expect "acr config retention show (the default)" acr config retention show -r "$TARGET" -o json; then
  check_json "  disabled, 7 days" 'assert (d["status"], d["days"]) == ("disabled", 7), d'
fi
expect_fail "acr config retention update on a Basic registry fails" "Premium|not supported" \
  acr config retention update -r "$SECOND" --status enabled --days 0 --type UntaggedManifests
if expect "acr config retention update --status enabled --days 0 --type UntaggedManifests" \
     acr config retention update -r "$TARGET" --status enabled --days 0 --type UntaggedManifests -o json; then
  check_json "  enabled, 0 days, lastUpdatedTime set" '
assert (d["status"], d["days"]) == ("enabled", 0), d
assert d.get("lastUpdatedTime"), d'
fi
if expect "acr config retention show" acr config retention show -r "$TARGET" -o json; then
  check_json "  enabled, 0 days" 'assert (d["status"], d["days"]) == ("enabled", 0), d'
fi
if expect "acr show: the other policies are unchanged" acr show -n "$TARGET" -g "$RG" -o json; then
  check_json "  quarantine disabled, export enabled, retention enabled" '
p = d["policies"]
assert p["quarantinePolicy"]["status"] == "disabled", p
assert p["exportPolicy"]["status"] == "enabled", p
assert p["retentionPolicy"]["status"] == "enabled", p'
fi
# The sweep runs every second: wait (up to 30 s) for the untagged index to go.
swept=""
for _ in $(seq 1 30); do
  if az_run "manifest list-metadata cli/multi (waiting for the sweep)" acr manifest list-metadata -r "$TARGET" -n cli/multi -o json \
     && ! echo "$OUT" | grep -q "$SRC_MULTI_DIGEST"; then swept=1; break; fi
  sleep 1
done
if [ -n "$swept" ]; then
  check_json "  the sweep deleted the untagged index and its children; the tagged image stays" '
assert [m["digest"] for m in d] == [E["SRC_SINGLE_DIGEST"]], d
assert d[0]["tags"] == ["v1"], d'
else notok "  the retention sweep did not delete cli/multi's untagged index within 30 s: $(echo "$OUT" | tr -d '\n' | cut -c1-300)"; fi
check_backend "  backend: the untagged index is gone from cli/multi" "$TARGET" cli/multi "$SRC_MULTI_DIGEST" ""
check_backend "  backend: cli/multi:v1 stays" "$TARGET" cli/multi v1 "$SRC_SINGLE_DIGEST"
if expect "acr manifest list-metadata cli/nogroup after the sweep" acr manifest list-metadata -r "$TARGET" -n cli/nogroup -o json; then
  check_json "  a tagged index keeps its (untagged) children" '
assert {m["digest"] for m in d} == {E["SRC_MULTI_DIGEST"], *E["DP_CHILD_DIGESTS"].split(",")}, d'
fi
if expect "acr manifest list-metadata cli/untagged after the sweep" acr manifest list-metadata -r "$TARGET" -n cli/untagged -o json; then
  check_json "  the deleteEnabled=false manifest is kept" '
assert [m["digest"] for m in d] == [E["SRC_SINGLE_DIGEST"]], d
assert d[0]["changeableAttributes"]["deleteEnabled"] is False, d'
fi
if expect "acr config retention update --status disabled" acr config retention update -r "$TARGET" --status disabled --type UntaggedManifests -o json; then
  # (--days defaults to 7 in az itself: _params.py, `acr config retention`.)
  check_json "  disabled, 7 days (az sends its --days default)" 'assert (d["status"], d["days"]) == ("disabled", 7), d'
fi

# 7. Resource groups: PUT/GET/HEAD, a registry in one, DELETE (a long-running operation that
#    deletes the group's registries and their content).
GROUP="clirg$RUN" GREG="cligroup$RUN"
if expect "group create $GROUP" group create -n "$GROUP" -l eastus -o json; then
  GROUP="$GROUP" check_json "  Succeeded in eastus" '
assert d["name"] == E["GROUP"] and d["location"] == "eastus", d
assert d["properties"]["provisioningState"] == "Succeeded", d'
fi
if expect "group show $GROUP" group show -n "$GROUP" -o json; then
  GROUP="$GROUP" check_json "  provisioningState Succeeded" '
assert d["id"].endswith("/resourceGroups/" + E["GROUP"]), d
assert d["properties"]["provisioningState"] == "Succeeded", d'
fi
if expect "group exists $GROUP" group exists -n "$GROUP" -o json; then
  [ "$OUT" = true ] && ok "  true" || notok "  group exists printed '$OUT'"
fi
expect "acr create $GREG in $GROUP" acr create -n "$GREG" -g "$GROUP" --sku Basic -o json
expect_import "import into $GREG" \
  acr import -n "$GREG" -g "$GROUP" --source "$SRC_ANON_HOST/$SRC_SINGLE" -t grp/single:v1
check_backend "  content grp/single:v1" "$GREG" grp/single v1 "$SRC_SINGLE_DIGEST"
expect "group delete $GROUP --yes" group delete -n "$GROUP" --yes
if expect "group exists $GROUP after the delete" group exists -n "$GROUP" -o json; then
  [ "$OUT" = false ] && ok "  false" || notok "  group exists printed '$OUT'"
fi
expect_fail "acr show $GREG after the group delete (not found)" "could not be found|ResourceNotFound|ResourceGroupNotFound|was not found" \
  acr show -n "$GREG" -o json
expect_fail "acr show $GREG -g $GROUP after the group delete (not found)" "could not be found|ResourceNotFound|ResourceGroupNotFound|was not found" \
  acr show -n "$GREG" -g "$GROUP" -o json
check_backend "  backend: grp/single:v1 of $GREG is gone" "$GREG" grp/single v1 ""

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
