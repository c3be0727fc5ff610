#!/usr/bin/env bash
# The chaos scenarios of issue 5: faults injected while imports run (PostgreSQL restarted,
# SIGKILL and SIGTERM under load, two processes on one database with one frozen, source and
# target registries misbehaving). Installs and starts what they need like scripts/test.sh,
# builds the service, runs every `chaos` test one at a time, and rewrites the results table
# of docs/RELIABILITY.md from the `CHAOS-RESULT` line each test prints.
#
#   ACR_TEST_DATABASE_URL  admin URL of the PostgreSQL server (as for scripts/test.sh); the
#                          PostgreSQL restart scenario starts a private cluster of its own
#   CHAOS_FILTER           test name filter (default `chaos`; e.g. `chaos::faults` or
#                          `chaos_sigkill`): the table keeps the last rows of the others
#   CHAOS_NO_DOC=1         run and print the summary, but leave docs/RELIABILITY.md alone
#   Extra arguments are passed to the test binary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh

command -v cargo >/dev/null 2>&1 || { log "cargo is not installed (https://rustup.rs)"; exit 1; }
apt_install docker-registry apache2-utils
# The private cluster of the restart scenario needs initdb / pg_ctl.
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
    || apt_install postgresql

ACR_TEST_DATABASE_URL=$(ensure_postgres "${ACR_TEST_DATABASE_URL:-}")
export ACR_TEST_DATABASE_URL

log "cargo build -p acr-import"
cargo build -p acr-import

out=$(mktemp)
trap 'rm -f "$out"' EXIT
filter=${CHAOS_FILTER:-chaos}
log "cargo test -p acr-import-tests --test e2e -- $filter --nocapture --test-threads=1"
set +e
cargo test -p acr-import-tests --test e2e -- "$filter" --nocapture --test-threads=1 "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e

results=$(grep -o 'CHAOS-RESULT .*' "$out" || true)
if [[ -z "$results" ]]; then
    log "no CHAOS-RESULT line: nothing to report"
    exit 1
fi
echo
echo "$results"

if [[ "${CHAOS_NO_DOC:-}" != 1 ]]; then
    python3 - "$results" docs/RELIABILITY.md <<'PY'
import datetime, re, sys
results, path = sys.argv[1], sys.argv[2]
# What each scenario injects (keep in step with the tests in tests/e2e/chaos/).
injected = {
    "postgres-restart": "PostgreSQL stopped (immediate) for 4 s and started again while 10 imports run",
    "sigkill-restart": "SIGKILL at 3 seeded random moments of a 20-import batch, restart each time",
    "two-processes": "16 imports over two processes sharing one database",
    "frozen-process-fencing": "SIGSTOP of the process copying until its lease expires, SIGCONT after the takeover",
    "sigterm-under-load": "SIGTERM while 10 imports run (1 s grace), restart",
    "source-5xx-burst": "source answers 503 to the first 3 blob GETs and 502 to the first manifest GET",
    "source-manifest-lies": "source serves other bytes for a child manifest than the digest its index names",
    "target-rejects-manifest": "target answers the manifest PUT with 400 MANIFEST_INVALID",
    "source-slow-drip": "source blob bodies trickle at 128 KiB/s",
    "source-redirect-loop": "source redirects a layer GET to itself, endlessly",
    "target-unavailable": "target answers every request 503 for a whole import, then only briefly",
    "target-disk-full": "target answers blob uploads with 500 'no space left on device', then the fault is removed and the import re-run (Force)",
}
rows = {}
for line in results.splitlines():
    kv = dict(re.findall(r'(\w+)=(\S+)', line))
    name = kv.get("scenario")
    if not name:
        continue
    ops = int(kv.get("operations", 0))
    ok = int(kv.get("succeeded", 0)) + int(kv.get("failed", 0))
    rows[name] = (ops, ok, int(kv.get("lost", 0)), kv.get("succeeded", "0"), kv.get("failed", "0"))
today = datetime.date.today().isoformat()
text = open(path).read()
begin, end = "<!-- chaos-results:begin -->", "<!-- chaos-results:end -->"
head, rest = text.split(begin, 1)
old, tail = rest.split(end, 1)
# Keep the rows of scenarios that did not run this time.
kept = {}
for line in old.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 6 and cells[0].startswith("`"):
        kept[cells[0].strip("`")] = line
table = ["| scenario | injected | operations | survived (succeeded / failed) | lost | last run |",
         "|---|---|---|---|---|---|"]
for name in sorted(set(kept) | set(rows)):
    if name in rows:
        ops, ok, lost, s, f = rows[name]
        table.append(f"| `{name}` | {injected.get(name, '')} | {ops} | {ok} ({s} / {f}) | {lost} | {today} |")
    else:
        table.append(kept[name])
open(path, "w").write(head + begin + "\n" + "\n".join(table) + "\n" + end + tail)
print(f"updated {path}")
PY
fi
exit "$status"
