#!/usr/bin/env bash
# Installs schemathesis (pinned) into a throw-away venv under tests/schemathesis/.venv (ignored
# by git), for the e2e test `schemathesis` (tests/e2e/schemathesis.rs), which runs it against
# both OpenAPI documents. Idempotent: a second run with everything in place takes well under a
# second (a stamp file records the pip packages).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

# Pinned; bump deliberately (a new version brings new checks and new generated cases).
PKGS="schemathesis==4.32.5"

log() { echo "schemathesis/setup.sh: $*" >&2; }

# A Python newer than 3.11 when the machine has one (on PATH, or installed by pyenv without
# being on PATH): CPython 3.11 raises "SystemError: AST constructor recursion depth mismatch"
# when hypothesis parses schemathesis's larger modules (to describe a filter), which ends the
# run with an error. 3.11 is the fallback.
if [ -z "${PYTHON:-}" ]; then
  for c in python3.13 python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3 \
           "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3; do
    if "$c" -c 'import venv' >/dev/null 2>&1; then PYTHON="$c"; break; fi
  done
fi
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || { log "missing python3 (apt-get install -y python3 python3-venv)"; exit 1; }
DIR="$HERE/.venv"
STAMP="$PKGS $("$PY" --version 2>&1)"
if [ ! -f "$DIR/.stamp" ] || [ "$(cat "$DIR/.stamp")" != "$STAMP" ] || [ ! -x "$DIR/bin/schemathesis" ]; then
  log "installing into $DIR: $PKGS"
  rm -rf "$DIR"
  "$PY" -m venv "$DIR"
  # The machine's PIP_* settings (index, cert) are honoured as they are.
  "$DIR/bin/pip" install --disable-pip-version-check -q $PKGS
  echo "$STAMP" > "$DIR/.stamp"
fi
log "ready ($("$DIR/bin/schemathesis" --version 2>/dev/null))"
