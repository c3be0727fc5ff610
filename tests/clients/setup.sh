#!/usr/bin/env bash
# Installs the real Azure clients the compatibility suite drives, into throw-away places under
# tests/clients/ (ignored by git). Idempotent: a second run with everything in place takes well
# under a second (stamp files record what was installed).
#
#   tests/clients/setup.sh          # Python SDKs venv (ARM + data plane) + JS SDK (always needed)
#   tests/clients/setup.sh --cli    # also the Azure CLI in its own venv (~70-150 s the first time)
#
# Needs python3 (with venv) and node/npm (Node 20). Only PyPI and npm are contacted.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

WANT_CLI=0
for a in "$@"; do
  case "$a" in
    --cli) WANT_CLI=1 ;;
    *) echo "setup.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done
[ "${ACR_TEST_AZ_CLI:-0}" = "1" ] && WANT_CLI=1

# Pinned so that FINDINGS.md (read from these versions' source) stays true; bump deliberately.
# (The CLI pins its own azure-core and azure-mgmt-containerregistry: it gets its own venv.)
SDK_PKGS="azure-mgmt-containerregistry==15.0.0 azure-containerregistry==1.2.0 azure-identity==1.27.0 pytest==9.2.0"
CLI_PKGS="azure-cli==2.91.0"
# JS versions are pinned in js/package.json (and js/package-lock.json).

log() { echo "setup.sh: $*" >&2; }

need() { command -v "$1" >/dev/null 2>&1 || { log "missing $1 ($2)"; exit 1; }; }
need python3 "apt-get install -y python3 python3-venv"
need node "apt-get install -y nodejs"
need npm "apt-get install -y npm"

PY="${PYTHON:-python3}"

venv_install() { # dir stamp-content packages...
  local dir="$1" stamp="$2"; shift 2
  if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ] && [ -x "$dir/bin/python" ]; then
    return 0
  fi
  log "installing into $dir: $*"
  rm -rf "$dir"
  "$PY" -m venv "$dir"
  # The machine's PIP_* settings (index, cert) are honoured as they are.
  "$dir/bin/pip" install --disable-pip-version-check -q "$@"
  echo "$stamp" > "$dir/.stamp"
}

venv_install "$HERE/.venv-sdk" "$SDK_PKGS" $SDK_PKGS

if [ "$WANT_CLI" = 1 ]; then
  venv_install "$HERE/.venv-cli" "$CLI_PKGS" $CLI_PKGS
fi

js_want() { cat "$HERE/js/package.json" "$HERE/js/package-lock.json" 2>/dev/null | sha256sum | cut -c1-16; }
JS_STAMP="$HERE/js/node_modules/.acr-stamp"
if [ ! -f "$JS_STAMP" ] || [ "$(cat "$JS_STAMP")" != "$(js_want)" ]; then
  log "npm install in js/"
  (cd "$HERE/js" && npm install --no-audit --no-fund --loglevel=error >&2)
  js_want > "$JS_STAMP"
fi
log "ready (sdk$([ "$WANT_CLI" = 1 ] && echo ", cli"), js)"
