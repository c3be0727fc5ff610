#!/usr/bin/env bash
# Runs the browser suite (test_portal.py: Playwright for Python driving /usr/bin/chromium)
# against running acr-import services. tests/e2e/portal_browser.rs sets everything up:
#
#   PORTAL_URL         http://127.0.0.1:PORT of a service in the default mode (--auth none)
#   PORTAL_RBAC_URL    http://127.0.0.1:PORT of a service with --auth arm-rbac
#   PORTAL_RBAC_TOKEN  a token of that service whose principal is only a Reader
#   SRC_HOST SRC_IMAGE an anonymous source registry and a multi-platform image in it
#   SRC_PLATFORMS      that image's platforms, os/arch[/variant], comma-separated
# Optional:
#   PORTAL_SCREENSHOTS a directory: screenshots of the main views are saved there
#   PORTAL_HEADED=1    show the browser
#
# Needs tests/portal/setup.sh to have run. Exit 0 iff every test passes.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${PORTAL_URL:?}" "${PORTAL_RBAC_URL:?}" "${PORTAL_RBAC_TOKEN:?}" "${SRC_HOST:?}" "${SRC_IMAGE:?}" "${SRC_PLATFORMS:?}"
# Nothing may leave the machine: a dead proxy for everything but loopback.
export HTTPS_PROXY="http://127.0.0.1:9" HTTP_PROXY="http://127.0.0.1:9"
export https_proxy="$HTTPS_PROXY" http_proxy="$HTTP_PROXY"
export NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost"
cd "$HERE"
export PYTHONDONTWRITEBYTECODE=1
exec "$HERE/.venv/bin/python" -m pytest -p no:cacheprovider -v -rA test_portal.py
