#!/usr/bin/env bash
# Start a throwaway Label Studio (open source) on loopback for the live connector test.
#
#   eval "$(bash .ci/labelstudio.sh)"      # installs (once), starts, prints `export` lines
#   bash .ci/labelstudio.sh stop           # stops the server this script started
#
# Label Studio lives in its own venv (build/labelstudio-venv) so its pins never meet
# crowdloop's; the install is skipped when that venv already has it. Every start uses a
# fresh data dir (build/labelstudio-data), an admin with a known password and legacy
# token, and a personal access token (a JWT refresh token) created through the API the
# way a user does it from the account page. Only the `export KEY=value` lines go to
# stdout; progress goes to stderr, the server's own output to build/labelstudio.log.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT="$PWD"
VENV="$ROOT/build/labelstudio-venv"
DATA="$ROOT/build/labelstudio-data"
TEMPLATE="$ROOT/build/labelstudio-template"
PIDFILE="$ROOT/build/labelstudio.pid"
LOG="$ROOT/build/labelstudio.log"
PORT="${CROWDLOOP_LS_PORT:-8089}"
URL="http://127.0.0.1:${PORT}"
LS_VERSION="${CROWDLOOP_LS_VERSION:-1.23.2}"
ADMIN_EMAIL="admin@crowdloop.test"
ADMIN_PASSWORD="crowdloop-ci-password"
LEGACY_TOKEN="crowdloopci0123456789abcdef0123456789ab"
WAIT_S="${CROWDLOOP_LS_WAIT_S:-180}"

say() { echo "labelstudio.sh: $*" >&2; }

stop_server() {
  if [[ -f "$PIDFILE" ]]; then
    local pid
    pid="$(cat "$PIDFILE")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
  fi
}

if [[ "${1:-start}" == "stop" ]]; then
  stop_server
  exit 0
fi

# --- install (cached) ------------------------------------------------------------------------
t0=$(date +%s)
if [[ -x "$VENV/bin/label-studio" ]] && "$VENV/bin/python" - "$LS_VERSION" <<'EOF'
import sys
from importlib.metadata import version
sys.exit(0 if version("label-studio") == sys.argv[1] else 1)
EOF
then
  say "label-studio $LS_VERSION already installed in $VENV"
else
  say "installing label-studio $LS_VERSION into $VENV (takes a few minutes)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "label-studio==$LS_VERSION" \
    >"$ROOT/build/labelstudio-install.log" 2>&1 \
    || { tail -20 "$ROOT/build/labelstudio-install.log" >&2; exit 1; }
fi
t1=$(date +%s)
say "install step: $((t1 - t0)) s"

# --- a migrated, empty database (cached: migrations take minutes on SQLite) --------------------
# No telemetry, error reporting or version check: this machine reaches no such service.
export SENTRY_DSN="" FRONTEND_SENTRY_DSN="" COLLECT_ANALYTICS=false LATEST_VERSION_CHECK=false
export DJANGO_DB=sqlite LOG_LEVEL=WARNING
if [[ ! -f "$TEMPLATE/.migrated-$LS_VERSION" ]]; then
  say "applying Label Studio's database migrations once into $TEMPLATE"
  rm -rf "$TEMPLATE"
  mkdir -p "$TEMPLATE"
  LABEL_STUDIO_BASE_DATA_DIR="$TEMPLATE" "$VENV/bin/label-studio" version --data-dir "$TEMPLATE" \
    </dev/null >"$ROOT/build/labelstudio-migrate.log" 2>&1 \
    || { tail -20 "$ROOT/build/labelstudio-migrate.log" >&2; exit 1; }
  touch "$TEMPLATE/.migrated-$LS_VERSION"
fi
t2=$(date +%s)
say "migration step: $((t2 - t1)) s"

# --- start -----------------------------------------------------------------------------------
stop_server
if curl -fsS -o /dev/null "$URL/health" 2>/dev/null; then
  say "something already answers on $URL; set CROWDLOOP_LS_PORT to a free port"
  exit 1
fi
rm -rf "$DATA"
cp -a "$TEMPLATE" "$DATA"
export LABEL_STUDIO_BASE_DATA_DIR="$DATA"

setsid "$VENV/bin/label-studio" start \
  --no-browser \
  --internal-host 127.0.0.1 \
  --port "$PORT" \
  --data-dir "$DATA" \
  --username "$ADMIN_EMAIL" \
  --password "$ADMIN_PASSWORD" \
  --user-token "$LEGACY_TOKEN" \
  --enable-legacy-api-token \
  --agree-fix-sqlite \
  </dev/null >"$LOG" 2>&1 &
echo $! >"$PIDFILE"

for _ in $(seq 1 "$WAIT_S"); do
  if curl -fsS -o /dev/null "$URL/health" 2>/dev/null; then break; fi
  if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    say "label-studio exited during start; last lines of $LOG:"
    tail -30 "$LOG" >&2
    exit 1
  fi
  sleep 1
done
if ! curl -fsS -o /dev/null "$URL/health" 2>/dev/null; then
  say "label-studio did not answer on $URL within ${WAIT_S}s; last lines of $LOG:"
  tail -30 "$LOG" >&2
  stop_server
  exit 1
fi
t3=$(date +%s)
say "started on $URL (pid $(cat "$PIDFILE")) in $((t3 - t2)) s"

# --- a personal access token, made as a user makes one: log in, then POST /api/token/ ------
JAR="$DATA/admin.cookies"
curl -fsS -c "$JAR" -b "$JAR" -o /dev/null "$URL/user/login/"
CSRF="$(awk '$6 == "csrftoken" {print $7}' "$JAR")"
curl -fsS -c "$JAR" -b "$JAR" -o /dev/null -H "Referer: $URL/user/login/" \
  --data-urlencode "email=$ADMIN_EMAIL" --data-urlencode "password=$ADMIN_PASSWORD" \
  --data-urlencode "csrfmiddlewaretoken=$CSRF" "$URL/user/login/"
CSRF="$(awk '$6 == "csrftoken" {print $7}' "$JAR")"
PAT="$(curl -fsS -c "$JAR" -b "$JAR" -X POST -H "X-CSRFToken: $CSRF" -H "Referer: $URL/" \
  -H "Content-Type: application/json" -d '{}' "$URL/api/token/" \
  | "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["token"])')"
rm -f "$JAR"
VERSION="$(curl -fsS -H "Authorization: Token $LEGACY_TOKEN" "$URL/api/version" \
  | "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin).get("release", "?"))')"
say "label-studio $VERSION ready; personal access token and legacy token issued"

echo "export CROWDLOOP_LS_URL=$URL"
echo "export CROWDLOOP_LS_TOKEN=$PAT"
echo "export CROWDLOOP_LS_LEGACY_TOKEN=$LEGACY_TOKEN"
echo "export CROWDLOOP_LS_ADMIN_EMAIL=$ADMIN_EMAIL"
echo "export CROWDLOOP_LS_ADMIN_PASSWORD=$ADMIN_PASSWORD"
