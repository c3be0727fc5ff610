#!/usr/bin/env bash
# Installs what the browser suite needs: Debian's chromium (apt, when /usr/bin/chromium is
# missing) and Playwright for Python in a throw-away venv under tests/portal/.venv (ignored by
# git). Playwright drives the system chromium (no browser download). Idempotent: a second run
# with everything in place takes well under a second (a stamp file records the pip packages).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

# Pinned; bump deliberately.
PKGS="playwright==1.65.3 pytest==9.2.0"

log() { echo "portal/setup.sh: $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x /usr/bin/chromium ]; then
  log "installing chromium (apt)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || { log "missing python3 (apt-get install -y python3 python3-venv)"; exit 1; }
DIR="$HERE/.venv"
if [ ! -f "$DIR/.stamp" ] || [ "$(cat "$DIR/.stamp")" != "$PKGS" ] || [ ! -x "$DIR/bin/python" ]; then
  log "installing into $DIR: $PKGS"
  rm -rf "$DIR"
  "$PY" -m venv "$DIR"
  # The machine's PIP_* settings (index, cert) are honoured as they are.
  "$DIR/bin/pip" install --disable-pip-version-check -q $PKGS
  echo "$PKGS" > "$DIR/.stamp"
fi
log "ready (chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'), playwright)"
