# Shared helpers for scripts/run.sh, scripts/test.sh and scripts/bench.sh. Source it; do not run it.
# Each helper installs what it needs with apt when it is missing (Debian; root or sudo).

log() { echo "[acr-import] $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_install PACKAGE... — installs the packages that are not installed yet.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_postgres [ADMIN_URL] — makes sure a PostgreSQL server answers on 127.0.0.1:5432
# (installing and starting Debian's cluster when needed) and prints a working admin URL.
ensure_postgres() {
  local url="${1:-postgres://postgres@127.0.0.1:5432/postgres}"
  command -v psql >/dev/null 2>&1 || apt_install postgresql-client
  if psql "$url" -Atqc 'select 1' >/dev/null 2>&1; then
    echo "$url"
    return 0
  fi
  if ! pg_isready -h 127.0.0.1 -p 5432 -q >/dev/null 2>&1; then
    local ver
    ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
    if [ -z "$ver" ]; then
      apt_install postgresql
      ver=$(ls /etc/postgresql | sort -V | tail -1)
    fi
    log "starting PostgreSQL $ver"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start >/dev/null 2>&1 || true
    local i
    for i in $(seq 1 60); do
      pg_isready -h 127.0.0.1 -p 5432 -q >/dev/null 2>&1 && break
      sleep 0.5
    done
  fi
  if psql "$url" -Atqc 'select 1' >/dev/null 2>&1; then
    echo "$url"
    return 0
  fi
  # A fresh Debian cluster wants a password over TCP: give the postgres role one.
  local pw_url="postgres://postgres:postgres@127.0.0.1:5432/postgres"
  if ! psql "$pw_url" -Atqc 'select 1' >/dev/null 2>&1; then
    log "setting a password for the postgres role (local test cluster)"
    as_root su postgres -c "psql -qc \"alter role postgres password 'postgres'\"" >/dev/null
  fi
  psql "$pw_url" -Atqc 'select 1' >/dev/null 2>&1 || { log "PostgreSQL does not answer on 127.0.0.1:5432"; return 1; }
  echo "$pw_url"
}
